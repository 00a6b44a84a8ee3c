"""The surrogate: one-vs-rest shallow trees per segment, their best leaf tuned into a rule, scored.

See :mod:`segmentation.insights.rules` for the method.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from segmentation.clustering.base import NOISE
from segmentation.contract.schema import ColumnKind, TableSchema
from segmentation.data.chunks import sample_positions
from segmentation.insights.rules.conditions import Condition, nice_threshold, render_conditions
from segmentation.insights.rules.encoding import EncodedColumn, Encoder, level_order
from segmentation.insights.rules.result import RuleSet, SegmentRule

_MIN_LEAF_SHARE = 0.005  # a leaf holds at least this share of the training rows (and 5 rows)
_MIN_LEAF_ROWS = 5
_TREE_ROWS = 6_000  # rows a tree grows on at most (its thresholds are then tuned on every training row)
_REFINE_PASSES = 2  # passes of threshold refinement over a rule's conditions
_NO_RULE = "no rule: no rows of this segment in the sample"


# --------------------------------------------------------------------------------- paths to conditions
@dataclass
class _Bounds:
    """Everything a tree path says about one column: an interval, or a set of group ranks."""

    low: float = -math.inf
    high: float = math.inf


def _leaf_paths(tree: DecisionTreeClassifier) -> dict[int, dict[int, _Bounds]]:
    """Each leaf's path as per-feature bounds (``low < x ≤ high``)."""
    structure = tree.tree_
    paths: dict[int, dict[int, _Bounds]] = {}
    stack: list[tuple[int, dict[int, _Bounds]]] = [(0, {})]
    while stack:
        node, bounds = stack.pop()
        left, right = int(structure.children_left[node]), int(structure.children_right[node])
        if left < 0:
            paths[node] = bounds
            continue
        feature, threshold = int(structure.feature[node]), float(structure.threshold[node])
        current = bounds.get(feature, _Bounds())
        stack.append((right, {**bounds, feature: _Bounds(max(current.low, threshold), current.high)}))
        stack.append((left, {**bounds, feature: _Bounds(current.low, min(current.high, threshold))}))
    return paths


def _conditions(
    bounds: dict[int, _Bounds], columns: list[EncodedColumn], ranks: dict[int, np.ndarray], ref: pd.Timestamp
) -> list[Condition]:
    """Displayable conditions of one path (thresholds rounded as they will be shown)."""
    out: list[Condition] = []
    for j in sorted(bounds):
        column, b = columns[j], bounds[j]
        spec = column.spec
        if spec.kind == "categorical":
            inside = (ranks[j] > b.low) & (ranks[j] <= b.high)  # group 0 is missing, then the levels
            chosen = tuple(level for level, keep in zip(column.levels, inside[1:], strict=True) if keep)
            out.append(Condition(spec.name, "categorical", "in", chosen, bool(inside[0])))
        elif spec.kind == "boolean":
            value = not math.isinf(b.low)  # 0/1 split at 0.5: a lower bound means "true"
            out.append(Condition(spec.name, "boolean", "is", value, (column.fill > 0.5) == value))
        elif spec.kind == "datetime":
            # days <= t  <=>  date >= reference - t; moved up to the next midnight (exact for plain dates)
            if not math.isinf(b.high):
                day = _boundary_day(ref, b.high)
                out.append(Condition(spec.name, "datetime", ">=", day, column.fill <= _days(ref, day)))
            if not math.isinf(b.low):
                day = _boundary_day(ref, b.low)
                out.append(Condition(spec.name, "datetime", "<", day, column.fill > _days(ref, day)))
        elif spec.kind == "ordinal":
            out.extend(_ordinal_conditions(column, b))
        else:
            out.extend(_numeric_conditions(column, b))
    return out


def _ordinal_conditions(column: EncodedColumn, b: _Bounds) -> list[Condition]:
    """Rank bounds as levels: ``>=`` the lowest level kept, ``<=`` the highest one."""
    name, fill, out = column.spec.name, column.fill, []
    if not math.isinf(b.low):
        lowest = math.floor(b.low) + 1
        out.append(Condition(name, "ordinal", ">=", column.levels[lowest], fill >= lowest))
    if not math.isinf(b.high):
        highest = math.floor(b.high)
        out.append(Condition(name, "ordinal", "<=", column.levels[highest], fill <= highest))
    return out


def _numeric_conditions(column: EncodedColumn, b: _Bounds) -> list[Condition]:
    name, fill = column.spec.name, column.fill
    out = []
    if not math.isinf(b.low):
        out.append(Condition(name, "numeric", ">", b.low, fill > b.low))
    if not math.isinf(b.high):
        out.append(Condition(name, "numeric", "<=", b.high, fill <= b.high))
    return out


def _boundary_day(ref: pd.Timestamp, days: float) -> str:
    return (ref - pd.Timedelta(days=days)).ceil("D").date().isoformat()


def _days(ref: pd.Timestamp, day: str) -> float:
    return float((ref - pd.Timestamp(day)) / pd.Timedelta(days=1))


def _matches(
    conditions: Iterable[Condition],
    x: np.ndarray,
    index: Mapping[str, int],
    columns: list[EncodedColumn],
    ref: pd.Timestamp,
) -> np.ndarray:
    """Rows of the encoded matrix ``x`` that satisfy every condition."""
    hit = np.ones(len(x), dtype=bool)
    for c in conditions:
        j = index[c.column]
        values = x[:, j]
        if c.kind == "categorical":
            codes = [columns[j].levels.index(level) for level in c.value]  # type: ignore[union-attr]
            hit &= np.isin(values, codes) | ((values < 0) & c.missing)
        elif c.kind == "boolean":
            hit &= (values > 0.5) == bool(c.value)
        elif c.kind == "ordinal":
            rank = columns[j].levels.index(str(c.value))
            hit &= values >= rank if c.op == ">=" else values <= rank
        elif c.kind == "datetime":
            days = _days(ref, str(c.value))
            hit &= values <= days if c.op == ">=" else values > days
        else:
            hit &= values <= float(c.value) if c.op == "<=" else values > float(c.value)  # type: ignore[arg-type]
    return hit


def _always(condition: Condition, column: EncodedColumn) -> bool:
    """A level set that holds every level and missing values says nothing."""
    if condition.kind != "categorical" or not condition.missing:
        return False
    return isinstance(condition.value, tuple) and len(condition.value) == len(column.levels)


def _f1(hit: np.ndarray, target: np.ndarray) -> float:
    tp = int((hit & target).sum())
    return 2 * tp / (int(hit.sum()) + int(target.sum())) if tp else 0.0


# ------------------------------------------------------------------------------------------- fitting
@dataclass
class _Fit:
    """The encoded sample, split into training and held-out rows."""

    encoder: Encoder
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def index(self) -> dict[str, int]:
        return {c.spec.name: j for j, c in enumerate(self.encoder.columns)}


def _split(labels: np.ndarray, holdout: float, seed: int) -> np.ndarray:
    """Held-out mask: ``holdout`` of every label's rows (at least one row of each stays for training)."""
    order = np.random.default_rng(seed).permutation(len(labels))
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = order[labels[order] == label]
        k = min(round(holdout * len(members)), len(members) - 1)
        mask[members[:k]] = True
    return mask


def _best_rule(fit: _Fit, segment: int, max_depth: int, seed: int) -> list[Condition]:
    """The conditions of the best-F1 leaf of a one-vs-rest tree for ``segment``, simplified."""
    columns = fit.encoder.columns
    target = fit.y_train == segment
    x = fit.x_train.copy()
    ranks: dict[int, np.ndarray] = {}
    for j, column in enumerate(columns):
        if column.spec.kind == "categorical":
            ranks[j] = level_order(x[:, j], target, len(column.levels))
            x[:, j] = ranks[j][x[:, j].astype(np.int64) + 1]
    grow = _tree_rows(target, seed + segment)
    min_leaf = max(_MIN_LEAF_ROWS, math.ceil(_MIN_LEAF_SHARE * len(grow)))
    tree = DecisionTreeClassifier(
        max_depth=max_depth, min_samples_leaf=min_leaf, random_state=seed, class_weight="balanced"
    )
    tree.fit(x[grow], target[grow])
    leaves = tree.apply(x)
    paths = _leaf_paths(tree)
    best = max(sorted(paths), key=lambda leaf: _f1(leaves == leaf, target))  # the first of equals
    ref = fit.encoder.reference
    place = [_placement(c.spec.kind, ref) for c in columns]
    bounds = _refine(paths[best], x, target, place)
    return _simplify(_conditions(bounds, columns, ranks, ref), fit, target)


def _placement(kind: ColumnKind, ref: pd.Timestamp) -> Callable[[float, float], float]:
    """How a threshold is placed in its gap: a round number, a round date, or the midpoint."""
    if kind == "numeric":
        return nice_threshold
    if kind == "datetime":
        return functools.partial(_nice_days, ref)
    return lambda lo, hi: (lo + hi) / 2


def _tree_rows(target: np.ndarray, seed: int) -> np.ndarray:
    """Rows the tree grows on: every row up to ``_TREE_ROWS``, else a seeded draw of that many.

    The draw keeps up to half of the budget for the segment's rows, so a small segment is well
    represented. The tree only chooses the columns and a leaf; the thresholds are then tuned on every
    training row (:func:`_refine`), so fewer rows cost little and make each tree several times faster.
    """
    if len(target) <= _TREE_ROWS:
        return np.arange(len(target))
    rng = np.random.default_rng(seed)
    inside, outside = np.flatnonzero(target), np.flatnonzero(~target)
    n_in = min(len(inside), _TREE_ROWS // 2)
    n_out = min(len(outside), _TREE_ROWS - n_in)
    chosen = [rng.choice(inside, n_in, replace=False), rng.choice(outside, n_out, replace=False)]
    return np.sort(np.concatenate(chosen))


def _inside(bounds: Mapping[int, _Bounds], x: np.ndarray) -> np.ndarray:
    hit = np.ones(len(x), dtype=bool)
    for j, b in bounds.items():
        hit &= (x[:, j] > b.low) & (x[:, j] <= b.high)
    return hit


def _refine(
    bounds: dict[int, _Bounds],
    x: np.ndarray,
    target: np.ndarray,
    place: Sequence[Callable[[float, float], float]],
) -> dict[int, _Bounds]:
    """Move each threshold of a path, one at a time, to where the rule's F1 on the training rows peaks.

    The tree chose its thresholds for node purity (class-weighted), not for the F1 of one leaf; with the
    other conditions fixed, the best threshold of one condition is found exactly by sorting the rows
    that satisfy the others. A threshold whose best place is past every row is dropped. Two passes.
    ``place[j]`` puts column ``j``'s threshold between the two values it separates: the roundest number
    (:func:`nice_threshold`), the roundest date, or the midpoint (as the tree's own splits).
    """
    bounds = dict(bounds)
    positives = int(target.sum())
    for _ in range(_REFINE_PASSES):
        for j in sorted(bounds):
            for side in ("high", "low"):
                b = bounds[j]
                if math.isinf(getattr(b, side)):
                    continue
                loose = _Bounds(b.low, math.inf) if side == "high" else _Bounds(-math.inf, b.high)
                rows = _inside({**bounds, j: loose}, x)
                gap = _best_gap(x[rows, j], target[rows], positives, upper=side == "high")
                cut = math.inf if side == "high" else -math.inf
                if gap is not None:
                    cut = place[j](*gap)
                    if (cut <= b.low) if side == "high" else (cut >= b.high):  # rounding closed the interval
                        cut = (gap[0] + gap[1]) / 2
                bounds[j] = _Bounds(b.low, cut) if side == "high" else _Bounds(cut, b.high)
    return {j: b for j, b in bounds.items() if not (math.isinf(b.low) and math.isinf(b.high))}


def _best_gap(
    values: np.ndarray, target: np.ndarray, positives: int, *, upper: bool
) -> tuple[float, float] | None:
    """Where the best-F1 threshold of ``x <= t`` (``upper``) or ``x > t`` may lie: ``lo <= t < hi``.

    ``positives`` counts every row of the segment (those the other conditions exclude are misses).
    ``None`` when the best is to keep every row (no condition).
    """
    if not len(values):
        return None
    sign = 1.0 if upper else -1.0
    order = np.argsort(sign * values, kind="stable")
    ordered = sign * values[order]
    tp = np.cumsum(target[order])
    last = np.r_[ordered[1:] != ordered[:-1], True]  # the last row of each distinct value
    f1 = np.where(last, 2 * tp / (np.arange(1, len(ordered) + 1) + positives), -1.0)
    k = int(np.argmax(f1))  # the first of equals: the tightest threshold
    if k == len(ordered) - 1:
        return None
    inside, outside = float(sign * ordered[k]), float(sign * ordered[k + 1])
    return (inside, outside) if upper else (outside, inside)


def _nice_days(ref: pd.Timestamp, lo: float, hi: float) -> float:
    """A days-before threshold in ``[lo, hi)`` whose date boundary is a round date.

    A 1 January, else a first of the month, else the day nearest the middle (the midpoint itself when no
    midnight lies in between). ``days <= t`` reads as "on or after ``reference - t``", so any midnight
    ``d`` with ``reference - hi < d <= reference - lo`` splits the rows the same way.
    """
    first, last = ref - pd.Timedelta(days=hi), ref - pd.Timedelta(days=lo)
    days = pd.date_range(first.floor("D"), last.floor("D"), freq="D")
    days = days[(days > first) & (days <= last)]
    if not len(days):
        return (lo + hi) / 2
    middle = first + (last - first) / 2
    distance = np.abs((days - middle) / pd.Timedelta(days=1))
    key = np.lexsort((distance, ~days.is_month_start, ~days.is_year_start))
    return float((ref - days[key[0]]) / pd.Timedelta(days=1))


def _simplify(conditions: list[Condition], fit: _Fit, target: np.ndarray) -> list[Condition]:
    """Drop conditions whose removal does not lower the rule's F1 on the training rows (first one first)."""
    args = (fit.index, fit.encoder.columns, fit.encoder.reference)
    kept = [c for c in conditions if not _always(c, fit.encoder.columns[fit.index[c.column]])]
    score = _f1(_matches(kept, fit.x_train, *args), target)
    changed = True
    while changed and kept:
        changed = False
        for i in range(len(kept)):
            trial = kept[:i] + kept[i + 1 :]
            trial_score = _f1(_matches(trial, fit.x_train, *args), target)
            if trial_score >= score:
                kept, score, changed = trial, trial_score, True
                break
    return kept


def segment_rules(
    frame: pd.DataFrame,
    labels: np.ndarray,
    schema: TableSchema,
    *,
    max_depth: int = 3,
    sample: int = 20_000,
    holdout: float = 0.3,
    seed: int = 0,
) -> RuleSet:
    """A short rule per segment from one-vs-rest depth-limited trees, scored on held-out rows.

    Args:
        frame: the feature columns in original units (the schema's names; other columns are ignored).
        labels: the segment of every row of ``frame`` (-1: noise, which gets no rule).
        schema: the table's schema (kinds, categorical levels, the reference date of date columns).
        max_depth: the most conditions a rule has (the trees' depth).
        sample: rows used at most (a seeded sample, :func:`segmentation.data.chunks.sample_positions`).
        holdout: share of the sampled rows of every segment held out to measure the rules.
        seed: seed of the sample, the split and the trees; identical inputs give identical rules.

    Returns:
        The :class:`RuleSet`: a rule per segment (ascending IDs), its held-out precision and recall, and
        the rules' fidelity.

    Raises:
        ValueError: mismatched lengths, a missing feature column, or an argument out of range.
    """
    labels = np.asarray(labels).astype(np.int64, copy=False)
    _check(frame, labels, schema, max_depth, sample, holdout)
    idx = sample_positions(len(frame), sample, seed)
    rows, y = frame.iloc[idx], labels[idx]
    test = _split(y, holdout, seed)
    encoder = Encoder(schema)
    x_train = encoder.fit_transform(rows[~test])
    fit = _Fit(encoder, x_train, y[~test], encoder.transform(rows[test]), y[test])
    levels = {c.spec.name: c.levels for c in encoder.columns if c.spec.kind == "categorical"}
    found: list[tuple[SegmentRule, float | None]] = []
    for segment in sorted(int(s) for s in np.unique(labels) if s != NOISE):
        found.append(_segment_rule(fit, segment, max_depth, seed, levels))
    fidelity, unmatched = _fidelity(found, fit)
    return RuleSet(
        rules=tuple(rule for rule, _ in found),
        fidelity=fidelity,
        unmatched=unmatched,
        max_depth=max_depth,
        train_rows=len(fit.y_train),
        holdout_rows=len(fit.y_test),
        noise_rows=int((labels == NOISE).sum()),
        seed=seed,
        levels=levels,
    )


def _check(
    frame: pd.DataFrame, labels: np.ndarray, schema: TableSchema, max_depth: int, sample: int, holdout: float
) -> None:
    if len(labels) != len(frame):
        raise ValueError(f"{len(labels)} labels for {len(frame)} rows")
    missing = [name for name in schema.feature_names if name not in frame.columns]
    if missing:
        raise ValueError(f"feature columns missing from the frame: {', '.join(missing)}")
    if max_depth < 1:
        raise ValueError(f"max_depth must be >= 1, got {max_depth}")
    if sample < 2:
        raise ValueError(f"sample must be >= 2, got {sample}")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")


def _segment_rule(
    fit: _Fit, segment: int, max_depth: int, seed: int, levels: Mapping[str, Sequence[str]]
) -> tuple[SegmentRule, float | None]:
    """One segment's rule, its held-out scores, and its training precision (the surrogate's tie-break).

    A segment without training rows (absent from the sample) gets no rule: no conditions, a text that
    says so, no scores (it matches no row), and ``None`` for the training precision.
    """
    target = fit.y_train == segment
    truth = fit.y_test == segment
    if not target.any():
        absent = SegmentRule(segment, _NO_RULE, (), None, None, support=0, segment_rows=int(truth.sum()))
        return absent, None
    args = (fit.index, fit.encoder.columns, fit.encoder.reference)
    conditions = _best_rule(fit, segment, max_depth, seed)
    train_hit = _matches(conditions, fit.x_train, *args)
    hit = _matches(conditions, fit.x_test, *args)
    tp = int((hit & truth).sum())
    rule = SegmentRule(
        segment=segment,
        text=render_conditions(conditions, levels),
        conditions=tuple(conditions),
        precision=tp / int(hit.sum()) if hit.any() else None,
        recall=tp / int(truth.sum()) if truth.any() else None,
        support=int(hit.sum()),
        segment_rows=int(truth.sum()),
    )
    return rule, float(target[train_hit].mean()) if train_hit.any() else 0.0


def _fidelity(found: list[tuple[SegmentRule, float | None]], fit: _Fit) -> tuple[float | None, float | None]:
    """Share of held-out rows the rules label as their segment, and the share no rule matches."""
    if not len(fit.y_test):
        return None, None
    args = (fit.index, fit.encoder.columns, fit.encoder.reference)
    surrogate = np.full(len(fit.y_test), NOISE, dtype=np.int64)
    best = np.full(len(fit.y_test), -1.0)
    for rule, train_precision in found:
        if train_precision is None:
            continue
        hit = _matches(rule.conditions, fit.x_test, *args) & (train_precision > best)
        surrogate[hit], best[hit] = rule.segment, train_precision
    return float((surrogate == fit.y_test).mean()), float((best < 0).mean())
