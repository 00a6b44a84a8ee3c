"""Segment profiles: what distinguishes each segment, as effect sizes on one scale, and the profile table.

What distinguishes a segment (:func:`segment_effects`) is read as a standardized effect size, so numeric and
categorical features rank together:

* numeric, boolean and date columns: Cohen's d, the segment mean minus the population mean over the
  population standard deviation, in the preprocessed space (imputed, clipped, unskewed; dates as days before
  the reference date);
* a categorical level: Cohen's h, ``2 asin(sqrt(p_segment)) - 2 asin(sqrt(p_overall))``, from the level's
  share of the segment's and of all customers in the *original* values (never from the one-hot columns,
  whose scale is the preprocessing's business). The two levels of a binary column get opposite signs.

A feature is *distinguishing* when ``|effect| >= effect_floor(n, N, m)`` (:func:`effect_floor`): at least
Cohen's "small" effect (0.2), and far enough above sampling noise that no pure-noise feature passes. A
categorical level must also pass an exact test (:func:`level_p_values`): h's error is ``sqrt(1/n - 1/N)``
only when the segment holds a fair number of the level's customers, and a rare level (1 % of customers)
missing from a segment by chance has h = -0.2. Names
and descriptions (:mod:`segmentation.insights.naming`) are built from the distinguishing features, so the
same model always gets the same names.

The profile (:func:`build_profile`) describes each segment in the units of the original table (mean, median
and an index vs the population: segment mean / population mean x 100; level shares and their index).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, cast

import numpy as np
import pandas as pd

from segmentation.clustering import NOISE
from segmentation.contract.schema import TableSchema
from segmentation.contract.values import category_text, level_codes
from segmentation.data.chunks import map_chunks
from segmentation.errors import ConfigError
from segmentation.insights.naming import (
    MIN_EFFECT,
    Feature,
    describe_segment,
    is_yes_no,
    needs_column,
    rank,
    segment_names,
)

#: Family-wise error rate of the noise floor: the chance that any pure-noise feature of any segment of a
#: model is called distinguishing (Bonferroni over every segment x feature tested).
FAMILY_ERROR = 0.05
#: The most distinguishing features kept per segment (``segments.json``, names, descriptions, report).
MAX_FEATURES = 20

_CHUNK_ROWS = 65_536


def standardized_differences(x: np.ndarray, labels: np.ndarray, feature_names: list[str]) -> pd.DataFrame:
    """Mean of every preprocessed feature per segment (rows: segments, columns: features).

    These are each segment's centroid in the preprocessed space (segment-ID alignment and the bundle use
    them). With ``preprocess.scale: standard`` a numeric column's mean is its standardized difference from
    the population; a one-hot column's is *not* (it depends on how levels are encoded): compare segments
    with :func:`segment_effects` instead.
    """
    segments, codes = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(segments), x.shape[1]))
    # Row chunks: never a copy of a whole segment's rows, so a memory-mapped matrix of millions of rows
    # is read once, a chunk at a time (sums in float64).
    for start in range(0, len(x), _CHUNK_ROWS):
        block = np.asarray(x[start : start + _CHUNK_ROWS])
        chunk_codes = codes[start : start + len(block)]
        for i in range(len(segments)):
            sums[i] += block[chunk_codes == i].sum(axis=0, dtype=np.float64)
    means = sums / np.bincount(codes, minlength=len(segments))[:, None]
    index = pd.Index([int(seg) for seg in segments], name="segment")
    return pd.DataFrame(means, index=index, columns=feature_names)


def row(frame: pd.DataFrame, key: Any) -> pd.Series:
    """One row of a frame by label, as a Series."""
    return cast(pd.Series, frame.loc[key])


def top_features(diffs: pd.Series, n: int = 3) -> list[tuple[str, float]]:
    """The ``n`` features with the largest absolute value (ties broken by name)."""
    ordered = sorted(diffs.items(), key=lambda item: (-abs(float(item[1])), str(item[0])))
    return [(str(name), float(value)) for name, value in ordered[:n]]


def effect_floor(n_segment: int, n_rows: int, n_tests: int) -> float:
    """The least |effect| (Cohen's d or h) that counts as distinguishing in a segment of ``n_segment`` rows.

    ``max(MIN_EFFECT, z * sqrt(1/n - 1/N))`` with ``z`` the two-sided normal quantile at
    ``FAMILY_ERROR / n_tests`` (Bonferroni). Why: for a feature independent of the segment, both d and h
    estimated on ``n`` of ``N`` rows have a standard error of about ``sqrt(1/n - 1/N)`` (h is
    variance-stabilized: its error does not depend on the share); so with ``m`` segment x feature tests,
    a pure-noise feature passes the floor anywhere in the model with probability at most 5%. The 0.2 (Cohen's
    "small") keeps tiny but precisely measured differences of large segments out of the names. For
    ``m = 500`` (z = 3.9): n = 100 -> 0.39, n = 400 -> 0.2; n = 25 -> 0.78.
    """
    if n_segment <= 0:
        return math.inf
    z = NormalDist().inv_cdf(1.0 - FAMILY_ERROR / (2.0 * max(n_tests, 1)))
    noise = math.sqrt(max(1.0 / n_segment - 1.0 / max(n_rows, 1), 0.0))
    return max(MIN_EFFECT, z * noise)


def level_p_values(counts: np.ndarray, sizes: np.ndarray, totals: np.ndarray, n_rows: int) -> np.ndarray:
    """Two-sided exact p-values of each segment's count of each level, if segments were random draws.

    A segment of ``n`` of the ``N`` customers, ``K`` of whom hold the level, holds a hypergeometric
    number of them when the level has nothing to do with the segments; the p-value is twice the smaller
    tail at the observed count (at most 1).

    Args:
        counts: customers at each level in each segment (``segments x levels``).
        sizes: customers per segment.
        totals: customers at each level overall.
        n_rows: all customers.
    """
    from scipy.stats import hypergeom  # scipy comes with scikit-learn; imported only where it is used

    n = np.asarray(sizes)[:, None]
    k = np.asarray(totals)[None, :]
    lower = hypergeom.cdf(counts, n_rows, k, n)
    upper = hypergeom.sf(counts - 1, n_rows, k, n)
    return np.asarray(np.minimum(1.0, 2.0 * np.minimum(lower, upper)), dtype=np.float64)


@dataclass(frozen=True)
class SegmentEffects:
    """Every feature's effect size in every segment, ranked, with each segment's noise floor.

    Attributes:
        effects: Cohen's d (numeric, boolean and date columns) or h (``column=level``) per segment (rows:
            segment IDs; columns: :attr:`Feature.name`, numeric columns first, then levels).
        ranked: every feature of each segment, largest |effect| first (:func:`naming.rank`).
        floors: each segment's :func:`effect_floor`.
        sizes: rows per segment.
        chance: per segment, the levels (``column=level``) whose count there fails the exact test
            (:func:`level_p_values` at the floor's family-wise error): never distinguishing.
    """

    effects: pd.DataFrame
    ranked: dict[int, list[Feature]]
    floors: dict[int, float]
    sizes: dict[int, int]
    chance: dict[int, frozenset[str]]

    def distinguishing(self, seg: int) -> list[Feature]:
        """The segment's features with |effect| at or above its floor, ranked (at most ``MAX_FEATURES``)."""
        floor, chance = self.floors[seg], self.chance[seg]
        return [f for f in self.ranked[seg] if abs(f.effect) >= floor and f.name not in chance][:MAX_FEATURES]

    def ranking(self) -> dict[int, list[Feature]]:
        """:meth:`distinguishing` of every segment: what :func:`naming.segment_names` takes."""
        return {seg: self.distinguishing(seg) for seg in self.ranked}

    def descriptions(self) -> dict[int, str]:
        """One sentence per segment (:func:`naming.describe_segment`)."""
        n = sum(self.sizes.values())
        return {
            seg: describe_segment(seg, self.sizes[seg] / n, self.distinguishing(seg), self.floors[seg])
            for seg in self.ranked
        }

    def summary_fields(self) -> dict[int, dict[str, Any]]:
        """Per segment, what ``segments.json`` stores beside the centroid (see ``bundle.segment_summary``)."""
        descriptions = self.descriptions()
        return {
            seg: {
                "effects": [float(v) for v in self.effects.loc[seg].to_numpy(np.float64)],
                "effect_floor": float(self.floors[seg]),
                "features": [f.to_dict() for f in self.distinguishing(seg)],
                "description": descriptions[seg],
            }
            for seg in self.ranked
        }


def _population_moments(x: np.ndarray, columns: list[int], centre: np.ndarray) -> np.ndarray:
    """Population standard deviation of some columns of ``x``, a row chunk at a time (float64).

    ``centre`` is the columns' population mean: deviations are summed from it, so large uncentred values
    lose no precision.
    """
    squares = np.zeros(len(columns))
    for start in range(0, len(x), _CHUNK_ROWS):
        block = np.asarray(x[start : start + _CHUNK_ROWS])[:, columns].astype(np.float64) - centre
        squares += np.einsum("ij,ij->j", block, block)
    return np.sqrt(squares / max(len(x), 1))


def _numeric_effects(
    x: np.ndarray, centroids: pd.DataFrame, sizes: np.ndarray, columns: list[str]
) -> np.ndarray:
    """Cohen's d of numeric columns per segment: (segment mean - population mean) / population SD."""
    means = centroids[columns].to_numpy(np.float64)
    population = sizes @ means / max(int(sizes.sum()), 1)
    index = {name: j for j, name in enumerate(centroids.columns)}
    spread = _population_moments(x, [index[c] for c in columns], population)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > 1e-12, (means - population) / spread, 0.0)


def _level_counts(values: pd.Series, levels: list[str], codes: np.ndarray, k: int) -> np.ndarray:
    """Rows of each segment at each level (``k x levels``); missing and unseen values are at no level."""
    level = level_codes(values, levels)
    width = len(levels) + 1
    counts = np.bincount(codes * width + (level + 1), minlength=k * width).reshape(k, width)
    return counts[:, 1:]


def segment_effects(
    x: np.ndarray,
    labels: np.ndarray,
    feature_names: list[str],
    schema: TableSchema,
    read_column: Callable[[str], pd.Series] | None = None,
    *,
    centroids: pd.DataFrame | None = None,
) -> SegmentEffects:
    """Effect sizes of every feature in every segment, ranked, with each segment's floor.

    Cohen's d for numeric, boolean and date columns, Cohen's h for categorical levels (see the module
    docstring).

    Categorical columns are those of kind ``categorical`` in ``schema``; their ``column=level`` columns of
    ``x`` are never read: level shares come from the original values (``read_column``), so the one-hot
    encoding's scale does not matter. Missing and unseen values belong to no level.

    Args:
        x: the preprocessed matrix (rows x ``feature_names``), read a row chunk at a time.
        labels: segment per row (-1 noise).
        feature_names: columns of ``x`` (``Preprocessor.feature_names_out_``).
        schema: the table schema (column kinds and categorical levels).
        read_column: a categorical column's original values, one row per row of ``x``; needed when the
            schema has categorical columns.
        centroids: :func:`standardized_differences` of ``x``, when already computed.
    """
    labels = np.asarray(labels)
    segments, codes = np.unique(labels, return_inverse=True)
    sizes = np.bincount(codes, minlength=len(segments))
    k = len(segments)
    if centroids is None:
        centroids = standardized_differences(x, labels, feature_names)
    dense = [c for c in schema.columns if c.kind != "categorical"]
    blocks = [_numeric_effects(x, centroids, sizes, [c.name for c in dense])]
    features: list[list[Feature]] = [
        [Feature(c.name, c.kind, float(blocks[0][i, j])) for j, c in enumerate(dense)] for i in range(k)
    ]
    names = [c.name for c in dense]
    categorical = [c for c in schema.columns if c.kind == "categorical"]
    every_level = [str(level) for c in categorical for level in c.categories]
    p_values: list[np.ndarray] = []
    for spec in categorical:
        if read_column is None:
            raise ValueError(f"segment_effects: categorical column {spec.name!r} needs read_column")
        levels = [str(level) for level in spec.categories]
        counts = _level_counts(read_column(spec.name), levels, codes, k)
        shares = counts / np.maximum(sizes, 1)[:, None]
        overall = counts.sum(axis=0) / max(int(sizes.sum()), 1)
        h = 2 * np.arcsin(np.sqrt(shares)) - 2 * np.arcsin(np.sqrt(overall))
        blocks.append(h)
        p_values.append(level_p_values(counts, sizes, counts.sum(axis=0), int(sizes.sum())))
        names += [f"{spec.name}={level}" for level in levels]
        yes_no = is_yes_no(levels)
        for i in range(k):
            features[i] += [
                Feature(
                    spec.name,
                    "categorical",
                    float(h[i, j]),
                    level,
                    float(shares[i, j]),
                    float(overall[j]),
                    yes_no=yes_no,
                    qualified=needs_column(level, every_level),
                )
                for j, level in enumerate(levels)
            ]
    segment_ids = [int(s) for s in segments]
    tests = sum(1 for s in segment_ids if s != NOISE) * len(names)
    n = int(sizes.sum())
    p = np.hstack(p_values) if p_values else np.ones((k, 0))
    level_names = names[len(dense) :]  # the columns of p
    alpha = FAMILY_ERROR / max(tests, 1)
    return SegmentEffects(
        effects=pd.DataFrame(np.hstack(blocks), index=pd.Index(segment_ids, name="segment"), columns=names),
        ranked={seg: rank(features[i]) for i, seg in enumerate(segment_ids)},
        floors={seg: effect_floor(int(sizes[i]), n, tests) for i, seg in enumerate(segment_ids)},
        sizes={seg: int(sizes[i]) for i, seg in enumerate(segment_ids)},
        chance={
            seg: frozenset(name for j, name in enumerate(level_names) if p[i, j] > alpha)
            for i, seg in enumerate(segment_ids)
        },
    )


def resolve_names(
    derived: dict[int, str], user: dict[int, str], carried: dict[int, str] | None = None
) -> tuple[dict[int, str], dict[int, str]]:
    """Final names and where each came from: ``user`` beats ``previous`` (carried over) beats ``auto``.

    Args:
        derived: names from :func:`segment_names`.
        user: the user's mapping (``insights.names``); every key must be a segment of this model.
        carried: user names of the previous model, already keyed by aligned IDs.

    Returns:
        ``(names, sources)``; a derived name that collides with a given one gets " (segment N)".

    Raises:
        ConfigError: a user name for a segment the model does not have.
    """
    unknown = sorted(set(user) - set(derived))
    if unknown:
        raise ConfigError(
            f"insights.names: no segment {', '.join(map(str, unknown))} in this model; "
            f"its segments are {', '.join(map(str, sorted(derived)))}"
        )
    names, sources = dict(derived), dict.fromkeys(derived, "auto")
    for given, source in ((carried or {}, "previous"), (user, "user")):
        for seg, name in given.items():
            if seg in names:
                names[seg], sources[seg] = name, source
    taken = {name for seg, name in names.items() if sources[seg] != "auto"}
    for seg, name in names.items():
        if sources[seg] == "auto" and name in taken:
            names[seg] = f"{name} (segment {seg})"
    return names, sources


def _segment_slices(labels: np.ndarray, segments: list[int]) -> tuple[np.ndarray, list[slice]]:
    """Row order that groups rows by segment, and each segment's slice of that order."""
    order = np.argsort(labels, kind="stable")
    ordered = labels[order]
    starts = np.searchsorted(ordered, segments, side="left")
    ends = np.searchsorted(ordered, segments, side="right")
    return order, [slice(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def _nan_stat(fn: Any, values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(fn(finite)) if len(finite) else float("nan")


def build_profile(
    raw: pd.DataFrame | Iterable[tuple[str, np.ndarray]],
    labels: np.ndarray,
    features: Mapping[int, Sequence[Feature]],
    names: Mapping[int, str],
    n_top: int = 3,
    categorical: pd.DataFrame | None = None,
    *,
    descriptions: Mapping[int, str] | None = None,
    effects: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per segment: name, description, size, share, top features, and per-feature statistics.

    For every numeric (and boolean, date) column: the segment mean, median and index vs the population
    (segment mean / population mean x 100). For every categorical column and level: the share of the
    segment's customers at that level and its index vs the population share. With ``effects``, every
    feature's effect size too (``FEATURE__effect``: Cohen's d or h).

    Columns are processed one at a time, so ``raw`` may be a generator of ``(name, values)`` pairs and
    memory stays at one column of the table, whatever its width.

    Args:
        raw: original-unit numeric values (NaN allowed): a DataFrame or ``(name, values)`` pairs.
        labels: segment per row (-1 noise).
        features: each segment's distinguishing features, ranked (:meth:`SegmentEffects.ranking`, or the
            bundle's ``SegmentationModel.segment_features``); ``top_features`` lists the first ``n_top``.
        names: segment names.
        n_top: how many distinguishing features to list.
        categorical: original categorical columns (missing values count as their own level).
        descriptions: one sentence per segment (:meth:`SegmentEffects.descriptions`).
        effects: :attr:`SegmentEffects.effects` (rows: segments).
    """
    labels = np.asarray(labels)
    n = len(labels)
    segments = [int(s) for s in np.unique(labels)]
    order, slices = _segment_slices(labels, segments)
    pairs = (
        ((str(c), raw[c].to_numpy(np.float64)) for c in raw.columns) if isinstance(raw, pd.DataFrame) else raw
    )
    stats: dict[str, list[float]] = {}

    def column_stats(pair: tuple[str, np.ndarray]) -> tuple[str, list[float], list[float], float]:
        column, values = pair
        grouped = np.asarray(values, dtype=np.float64)[order]
        means = [_nan_stat(np.mean, grouped[part]) for part in slices]
        medians = [_nan_stat(np.median, grouped[part]) for part in slices]
        return column, means, medians, _nan_stat(np.mean, grouped)

    # Two columns at a time: the sorts and reductions release the GIL, so both cores work on millions of
    # rows; the columns still arrive (and are kept) one by one, in order.
    for column, means, medians, base in map_chunks(column_stats, pairs):
        stats[f"{column}__mean"] = means
        stats[f"{column}__median"] = medians
        stats[f"{column}__index"] = [m / base * 100 if base != 0 else float("nan") for m in means]
    if categorical is not None:
        for column in categorical.columns:
            levels = category_text(categorical[column]).fillna("<missing>")
            shares = pd.crosstab(labels, levels, normalize="index").reindex(segments).fillna(0.0)
            overall = levels.value_counts(normalize=True)
            for level in sorted(overall.index):
                stats[f"{column}={level}__share"] = shares[level].tolist()
                stats[f"{column}={level}__index"] = (shares[level] / overall[level] * 100).tolist()
    if effects is not None:
        aligned = effects.reindex(segments)
        for name in aligned.columns:
            stats[f"{name}__effect"] = aligned[name].tolist()
    sizes = np.array([part.stop - part.start for part in slices], dtype=np.int64)
    head = pd.DataFrame(
        {
            "segment": segments,
            "name": [names[s] for s in segments],
            "description": [(descriptions or {}).get(s, "") for s in segments],
            "size": sizes,
            "share": sizes / n,
            "top_features": [
                "; ".join(f.summary for f in list(features.get(s, []))[:n_top]) for s in segments
            ],
        }
    )
    return pd.concat([head, pd.DataFrame(stats)], axis=1)


__all__ = [
    "FAMILY_ERROR",
    "MAX_FEATURES",
    "MIN_EFFECT",
    "Feature",
    "SegmentEffects",
    "build_profile",
    "effect_floor",
    "resolve_names",
    "row",
    "segment_effects",
    "segment_names",
    "standardized_differences",
    "top_features",
]
