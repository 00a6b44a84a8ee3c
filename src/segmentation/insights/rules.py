"""Rules an analyst can act on: one short condition list per segment, in the table's own units.

A shallow surrogate model explains the segment labels: for every segment ``s`` a one-vs-rest decision tree
of depth ``max_depth`` is fitted to "in ``s``" on a seeded sample of rows, and the leaf with the best F1
for ``s`` becomes the rule, a conjunction of at most ``max_depth`` conditions such as
``CASH_ADVANCE > 1,210 and PURCHASES ≤ 310``. Precision and recall are measured on held-out rows the trees
never saw, with the rule as it is displayed (rounded thresholds), and the rules together are scored by
their *fidelity*: the share of held-out rows that the rules put in the row's own segment.

Why one tree per segment rather than one multiclass tree: a depth-3 tree has at most 8 leaves, so with
more segments than that some segment gets no leaf at all, and even with fewer its splits serve the large
segments first. A one-vs-rest tree spends all of its depth on separating one segment from the rest, so
every segment gets the best single path the depth allows, whatever the number of segments.

How rows are read (:mod:`segmentation.contract.values`, as preprocessing reads them):

* numeric: as numbers; a missing value is imputed with the training median, so a row with a missing
  value satisfies a condition exactly when the median does (``Condition.missing`` records which).
* boolean: 0/1, rendered ``flag is true`` / ``flag is false``; missing values as for numbers.
* datetime: days before the schema's reference date inside the tree; rendered as ISO dates
  (``signup_date before 2023-04-01``, ``signup_date on or after 2023-04-01``), thresholds moved to a day
  boundary, which is exact for dates without a time of day.
* ordinal: the rank of the level in the schema's order (missing values as for numbers), rendered with
  the levels: ``size ≥ medium``, ``size between low and medium``.
* categorical: the schema's levels; a missing value or a level outside them is one more group,
  "missing". For each segment the groups are ordered by their share of the segment (the optimal subset
  split of a binary CART tree), so a threshold on that order is a set of levels: ``channel = web``,
  ``channel in {web, app}``, ``channel not in {store}`` (which includes missing values).

Each tree grows on at most 6,000 of the training rows (up to half of them the segment's); the chosen
leaf is then tuned on all the training rows: each threshold in turn moves to where the rule's F1 peaks
(the tree placed it for node purity, not for one leaf's F1), and conditions whose removal does not lower
the F1 are dropped. A threshold is shown as the roundest value that splits the training rows the same
way: a number with at most three significant digits (``nice_threshold``: ``1,210`` rather than
``1,213.37``; the midpoint rounded to three digits when no such number fits), a 1 January or a first of
the month for dates. Precision and recall are measured with the thresholds as shown. Conditions on one
column read as one (``1,000 < BALANCE ≤ 5,000``).

Noise (label -1, from density models) gets no rule: it is what no dense region describes. Noise rows
count as "not in the segment" for every rule, and a held-out noise row agrees with the surrogate when it
satisfies no rule.

Example:
    >>> rules = segment_rules(frame, labels, schema, max_depth=3)  # doctest: +SKIP
    >>> rules.lines()  # doctest: +SKIP
    ['segment 0: CASH_ADVANCE > 1,210 and PURCHASES ≤ 310 (precision 0.91, recall 0.84)', ...]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from segmentation.clustering.base import NOISE
from segmentation.contract.schema import ColumnKind, ColumnSpec, TableSchema
from segmentation.contract.values import boolean_values, category_text, level_codes, parse_dates
from segmentation.data.chunks import sample_positions

Op = Literal["<=", ">", "<", ">=", "in", "is"]

_DIGITS = 3  # significant digits of a displayed threshold
_MAX_DIGITS = 8  # more digits only where two bounds of one column would otherwise print the same
_MIN_LEAF_SHARE = 0.005  # a leaf holds at least this share of the training rows (and 5 rows)
_MIN_LEAF_ROWS = 5
_TREE_ROWS = 6_000  # rows a tree grows on at most (its thresholds are then tuned on every training row)
_REFINE_PASSES = 2  # passes of threshold refinement over a rule's conditions
_EPOCH = "1970-01-01"  # reference of date columns when the schema has none
_NS_PER_DAY = 86_400 * 10**9
_NO_RULE = "no rule: no rows of this segment in the sample"


# ------------------------------------------------------------------------------------------ rendering
def round_significant(value: float, digits: int = _DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (0 stays 0)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    return float(f"{value:.{digits - 1}e}")


def format_number(value: float, digits: int = _DIGITS) -> str:
    """A threshold as an analyst reads it: ``digits`` significant digits, thousands separators.

    ``1213.7 -> "1,210"``, ``0.45678 -> "0.457"``, ``3.0 -> "3"``, ``1234567 -> "1,230,000"``.
    """
    rounded = round_significant(value, digits)
    if rounded == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    text = f"{rounded:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _level_set(levels: Sequence[str]) -> str:
    return levels[0] if len(levels) == 1 else "{" + ", ".join(levels) + "}"


# ----------------------------------------------------------------------------------------- conditions
@dataclass(frozen=True)
class Condition:
    """One condition of a rule, in the table's own units.

    ``op`` and ``value`` by column kind: numeric ``<=`` / ``>`` a number; datetime ``<`` (before) /
    ``>=`` (on or after) an ISO date; boolean ``is`` ``True`` / ``False``; categorical ``in`` a tuple of
    levels; ordinal ``>=`` / ``<=`` a level (by the schema's order, lowest first). ``missing`` says
    whether a row whose value is missing satisfies the condition (for a categorical or an ordinal, a
    level outside the schema's counts as missing).
    """

    column: str
    kind: ColumnKind
    op: Op
    value: float | str | bool | tuple[str, ...]
    missing: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: ``{"column", "kind", "op", "value", "missing"}`` (a level set as a list)."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {
            "column": self.column,
            "kind": self.kind,
            "op": self.op,
            "value": value,
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Condition:
        """Inverse of :meth:`to_dict`."""
        value = data["value"]
        return cls(
            column=str(data["column"]),
            kind=data["kind"],
            op=data["op"],
            value=tuple(value) if isinstance(value, list) else value,
            missing=bool(data.get("missing", False)),
        )


def render_conditions(
    conditions: Sequence[Condition], levels: Mapping[str, Sequence[str]] | None = None
) -> str:
    """The conditions as one readable line, conditions on one column merged: ``a > 1 and 2 < b ≤ 5``.

    Args:
        conditions: the conditions of one rule.
        levels: every level of each categorical column (from the schema); with it a set that holds most
            levels and missing values reads as its complement (``channel ≠ phone``).
    """
    if not conditions:
        return "all customers"
    parts: list[str] = []
    for column in dict.fromkeys(c.column for c in conditions):
        group = [c for c in conditions if c.column == column]
        parts.append(_render_column(group, (levels or {}).get(column, ())))
    return " and ".join(parts)


def _render_column(group: list[Condition], levels: Sequence[str]) -> str:
    column, kind = group[0].column, group[0].kind
    by_op = {c.op: c for c in group}
    if kind == "boolean":
        return f"{column} is {'true' if by_op['is'].value else 'false'}"
    if kind == "categorical":
        return _render_levels(by_op["in"], levels)
    if kind == "ordinal":
        least, most = by_op.get(">="), by_op.get("<=")
        if least and most:
            same = least.value == most.value
            return f"{column} = {least.value}" if same else f"{column} between {least.value} and {most.value}"
        return f"{column} ≥ {least.value}" if least else f"{column} ≤ {most.value}"  # type: ignore[union-attr]
    if kind == "datetime":
        after, before = by_op.get(">="), by_op.get("<")
        if after and before:
            return f"{column} on or after {after.value} and before {before.value}"
        return f"{column} on or after {after.value}" if after else f"{column} before {before.value}"  # type: ignore[union-attr]
    low, high = by_op.get(">"), by_op.get("<=")
    if low and high:
        return f"{_fmt(low)} < {column} ≤ {_fmt(high)}"
    return f"{column} > {_fmt(low)}" if low else f"{column} ≤ {_fmt(high)}"  # type: ignore[arg-type]


def _fmt(condition: Condition) -> str:
    value = float(condition.value)  # type: ignore[arg-type]
    digits = _DIGITS
    while round_significant(value, digits) != value and digits < _MAX_DIGITS:
        digits += 1
    return format_number(value, digits)


def _render_levels(condition: Condition, levels: Sequence[str]) -> str:
    chosen = tuple(condition.value)  # type: ignore[arg-type]
    others = tuple(level for level in levels if level not in chosen)
    if not chosen:
        return f"{condition.column} is missing"
    if condition.missing and levels and len(others) <= len(chosen):
        symbol = "≠" if len(others) == 1 else "not in"
        return f"{condition.column} {symbol} {_level_set(others)}"
    symbol = "=" if len(chosen) == 1 else "in"
    tail = " or missing" if condition.missing else ""
    return f"{condition.column} {symbol} {_level_set(chosen)}{tail}"


# -------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class SegmentRule:
    """The rule of one segment and how well it matches the segment on held-out rows.

    ``precision``: share of the held-out rows matching the rule that are in the segment; ``recall``: share
    of the segment's held-out rows that match the rule (``None`` without held-out rows of the segment, or
    none matching). ``support``: held-out rows matching the rule; ``segment_rows``: held-out rows of the
    segment.
    """

    segment: int
    text: str
    conditions: tuple[Condition, ...]
    precision: float | None
    recall: float | None
    support: int
    segment_rows: int

    @property
    def f1(self) -> float | None:
        """Harmonic mean of precision and recall on the held-out rows."""
        if self.precision is None or self.recall is None or self.precision + self.recall == 0:
            return None
        return 2 * self.precision * self.recall / (self.precision + self.recall)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "segment": self.segment,
            "text": self.text,
            "conditions": [c.to_dict() for c in self.conditions],
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
            "segment_rows": self.segment_rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentRule:
        """Inverse of :meth:`to_dict`."""
        return cls(
            segment=int(data["segment"]),
            text=str(data["text"]),
            conditions=tuple(Condition.from_dict(c) for c in data["conditions"]),
            precision=data["precision"],
            recall=data["recall"],
            support=int(data["support"]),
            segment_rows=int(data["segment_rows"]),
        )


@dataclass(frozen=True)
class RuleSet:
    """One rule per segment (noise has none) and the surrogate's fidelity on held-out rows.

    ``fidelity``: share of held-out rows whose surrogate label equals their segment. The surrogate label
    of a row is the segment whose rule it satisfies (the one with the most precise rule on the training
    rows when it satisfies several), or noise when it satisfies none. ``unmatched``: share of held-out
    rows that satisfy no rule.
    """

    rules: tuple[SegmentRule, ...]
    fidelity: float | None
    unmatched: float | None
    max_depth: int
    train_rows: int
    holdout_rows: int
    noise_rows: int = 0
    seed: int = 0
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def rule(self, segment: int) -> SegmentRule | None:
        """The rule of one segment (``None`` for noise or an unknown segment)."""
        return next((r for r in self.rules if r.segment == segment), None)

    def texts(self) -> dict[int, str]:
        """Segment ID -> rule text (a ``profile.csv`` column)."""
        return {r.segment: r.text for r in self.rules}

    def lines(self, names: Mapping[int, str] | None = None) -> list[str]:
        """One line per segment for the report: ``<name>: <rule> (precision 0.91, recall 0.84)``.

        Args:
            names: segment ID -> name; without it (or for a missing ID) "segment N".
        """
        out = []
        for r in self.rules:
            label = (names or {}).get(r.segment, f"segment {r.segment}")
            out.append(
                f"{label}: {r.text} ({_score('precision', r.precision)}, {_score('recall', r.recall)})"
            )
        return out

    def summary(self) -> dict[str, Any]:
        """Flat numbers for metrics and the W&B summary: fidelity, depth, rows, mean precision/recall."""
        precision = [r.precision for r in self.rules if r.precision is not None]
        recall = [r.recall for r in self.rules if r.recall is not None]
        return {
            "rules_fidelity": self.fidelity,
            "rules_unmatched": self.unmatched,
            "rules_max_depth": self.max_depth,
            "rules_train_rows": self.train_rows,
            "rules_holdout_rows": self.holdout_rows,
            "rules_mean_precision": float(np.mean(precision)) if precision else None,
            "rules_mean_recall": float(np.mean(recall)) if recall else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for ``segments.json``, metrics and W&B)."""
        return {
            "fidelity": self.fidelity,
            "unmatched": self.unmatched,
            "max_depth": self.max_depth,
            "train_rows": self.train_rows,
            "holdout_rows": self.holdout_rows,
            "noise_rows": self.noise_rows,
            "seed": self.seed,
            "levels": {k: list(v) for k, v in self.levels.items()},
            "rules": [r.to_dict() for r in self.rules],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleSet:
        """Inverse of :meth:`to_dict`."""
        return cls(
            rules=tuple(SegmentRule.from_dict(r) for r in data["rules"]),
            fidelity=data["fidelity"],
            unmatched=data["unmatched"],
            max_depth=int(data["max_depth"]),
            train_rows=int(data["train_rows"]),
            holdout_rows=int(data["holdout_rows"]),
            noise_rows=int(data.get("noise_rows", 0)),
            seed=int(data.get("seed", 0)),
            levels={k: tuple(v) for k, v in (data.get("levels") or {}).items()},
        )


def _score(name: str, value: float | None) -> str:
    return f"{name} {value:.2f}" if value is not None else f"{name} n/a"


# ------------------------------------------------------------------------------------------- encoding
@dataclass
class _Column:
    """One feature column encoded for the trees: a float per row (codes for categoricals)."""

    spec: ColumnSpec
    levels: tuple[str, ...] = ()  # categorical: the levels, code -1 is "missing"; ordinal: lowest first
    fill: float = 0.0  # not categorical: the training median missing values take


class _Encoder:
    """Columns in original units as floats: numbers, 0/1, days before the reference date, level codes."""

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.reference = pd.Timestamp(schema.reference_date or _EPOCH)
        self.columns: list[_Column] = []

    def raw(self, series: pd.Series, spec: ColumnSpec, levels: tuple[str, ...] = ()) -> np.ndarray:
        """Float values (NaN missing); categoricals as level codes (-1 missing or another level)."""
        if spec.kind == "categorical":
            return level_codes(series, list(levels)).astype(np.float64)
        if spec.kind == "ordinal":  # the rank of the level; not a level (or missing): NaN
            ranks = level_codes(series, list(levels)).astype(np.float64)
            return np.where(ranks >= 0, ranks, np.nan)
        if spec.kind == "datetime":
            stamps = parse_dates(series).to_numpy(dtype="datetime64[ns]")  # NaT where missing
            values = (self.reference.as_unit("ns").value - stamps.view(np.int64)) / _NS_PER_DAY
            values[np.isnat(stamps)] = np.nan
        elif spec.kind == "boolean":
            values = boolean_values(series).to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        values = np.array(values, dtype=np.float64)
        values[~np.isfinite(values)] = np.nan
        return values

    def fit_transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode the training rows and learn the medians (rows x columns)."""
        out = np.empty((len(frame), len(self.schema.columns)))
        for j, spec in enumerate(self.schema.columns):
            levels: tuple[str, ...] = ()
            if spec.kind in ("categorical", "ordinal"):
                levels = spec.categories or _observed_levels(frame[spec.name])
            values = self.raw(frame[spec.name], spec, levels)
            column = _Column(spec, levels=levels)
            if spec.kind != "categorical":
                present = values[~np.isnan(values)]
                column.fill = float(np.median(present)) if len(present) else 0.0
                if spec.kind == "boolean":  # the more common value, so the column stays 0/1
                    column.fill = float(column.fill > 0.5)
                values = np.where(np.isnan(values), column.fill, values)
            self.columns.append(column)
            out[:, j] = values
        return out

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode other rows with the training medians and levels."""
        out = np.empty((len(frame), len(self.columns)))
        for j, column in enumerate(self.columns):
            values = self.raw(frame[column.spec.name], column.spec, column.levels)
            out[:, j] = (
                values
                if column.spec.kind == "categorical"
                else np.where(np.isnan(values), column.fill, values)
            )
        return out


def _observed_levels(series: pd.Series) -> tuple[str, ...]:
    counts = category_text(series.dropna()).value_counts()
    return tuple(sorted(str(v) for v in counts.index))


def _level_order(codes: np.ndarray, target: np.ndarray, n_levels: int) -> np.ndarray:
    """Rank of each group (index 0: missing, then the levels) by its share of the target, ascending.

    Groups without training rows take the overall share, so every group lies on a definite side of
    every threshold. Ties keep the schema's order.
    """
    groups = codes.astype(np.int64) + 1
    rows = np.bincount(groups, minlength=n_levels + 1)
    hits = np.bincount(groups, weights=target.astype(np.float64), minlength=n_levels + 1)
    prior = float(target.mean()) if len(target) else 0.0
    share = np.where(rows > 0, hits / np.maximum(rows, 1), prior)
    order = np.argsort(share, kind="stable")
    rank = np.empty(n_levels + 1, dtype=np.int64)
    rank[order] = np.arange(n_levels + 1)
    return rank


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
    bounds: dict[int, _Bounds], columns: list[_Column], ranks: dict[int, np.ndarray], ref: pd.Timestamp
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


def _ordinal_conditions(column: _Column, b: _Bounds) -> list[Condition]:
    """Rank bounds as levels: ``>=`` the lowest level kept, ``<=`` the highest one."""
    name, fill, out = column.spec.name, column.fill, []
    if not math.isinf(b.low):
        lowest = math.floor(b.low) + 1
        out.append(Condition(name, "ordinal", ">=", column.levels[lowest], fill >= lowest))
    if not math.isinf(b.high):
        highest = math.floor(b.high)
        out.append(Condition(name, "ordinal", "<=", column.levels[highest], fill <= highest))
    return out


def _numeric_conditions(column: _Column, b: _Bounds) -> list[Condition]:
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
    columns: list[_Column],
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


def _always(condition: Condition, column: _Column) -> bool:
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

    encoder: _Encoder
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
            ranks[j] = _level_order(x[:, j], target, len(column.levels))
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


def nice_threshold(lo: float, hi: float, digits: int = _DIGITS) -> float:
    """The roundest number ``t`` with ``lo <= t < hi``: 0 if it fits, else the fewest significant digits.

    Every such ``t`` splits the rows the same way (``x <= t`` keeps ``lo`` and not ``hi``), so the rule
    shows a round number without changing what it selects: ``(1,207.3, 1,221.9) -> 1,210``,
    ``(3, 4) -> 3``. Among equally round numbers the one nearest the midpoint wins. When no number of
    at most ``digits`` significant digits lies in the gap, the midpoint rounded to ``digits`` (a few
    rows move to the other side; the held-out scores are measured with the rounded threshold).
    """
    mid = (lo + hi) / 2
    if lo <= 0 < hi:
        return 0.0
    magnitude = math.floor(math.log10(max(abs(lo), abs(hi))))
    for width in range(1, digits + 1):
        step = 10.0 ** (magnitude - width + 1)
        candidate = round(mid / step) * step
        for near in (candidate, candidate - step, candidate + step):
            value = round_significant(near, width + 1)
            if lo <= value < hi:
                return value
    return round_significant(mid, digits)


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
    encoder = _Encoder(schema)
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


__all__ = [
    "Condition",
    "RuleSet",
    "SegmentRule",
    "format_number",
    "nice_threshold",
    "render_conditions",
    "round_significant",
    "segment_rules",
]
