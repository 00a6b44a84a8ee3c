"""Segment profiles and deterministic names.

A profile describes each segment in the units of the original table (mean, median, and an index vs the
population: segment mean / population mean x 100) and lists its most distinguishing features: the
largest standardized differences, read in the preprocessed space where every feature has population
mean 0 and standard deviation 1. Names are derived from those features ("high cash advance, low
purchases"), so the same model always gets the same names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, cast

import numpy as np
import pandas as pd

from segmentation.clustering import NOISE
from segmentation.data.chunks import map_chunks
from segmentation.errors import ConfigError

_NAME_FEATURES = 2
_MAX_NAME_FEATURES = 4


_CHUNK_ROWS = 65_536


def standardized_differences(x: np.ndarray, labels: np.ndarray, feature_names: list[str]) -> pd.DataFrame:
    """Mean of every preprocessed feature per segment (rows: segments, columns: features).

    The preprocessed space is standardized on the training population, so these are standardized
    differences from the population mean.
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
    """The ``n`` features with the largest absolute standardized difference (ties broken by name)."""
    ordered = sorted(diffs.items(), key=lambda item: (-abs(float(item[1])), str(item[0])))
    return [(str(name), float(value)) for name, value in ordered[:n]]


def _readable(feature: str) -> str:
    text = feature.replace("=", " ").replace("_", " ").replace("-", " ")
    return re.sub(r"\s+", " ", text).strip().lower()


def segment_names(diffs: pd.DataFrame) -> dict[int, str]:
    """A short, deterministic, unique name per segment from its top distinguishing features.

    Each name lists the two largest standardized differences as "high X" / "low Y"; segments whose
    names would collide get further features (up to four), then their ID. Noise is "noise".
    """
    names: dict[int, str] = {}
    width = {int(seg): _NAME_FEATURES for seg in diffs.index}

    def render(seg: int) -> str:
        # Skip near-repeats in the same direction ("cash advance", then "cash advance trx"): features of
        # one family are strongly correlated, so a second one adds length, not meaning.
        chosen: list[tuple[str, float]] = []
        for name, value in top_features(row(diffs, seg), len(diffs.columns)):
            label = _readable(name)
            if any((value > 0) == (v > 0) and label.split()[0] == c.split()[0] for c, v in chosen):
                continue
            chosen.append((label, value))
            if len(chosen) == width[seg]:
                break
        return ", ".join(f"{'high' if value > 0 else 'low'} {label}" for label, value in chosen)

    for seg in diffs.index:
        names[int(seg)] = "noise" if seg == NOISE else render(int(seg))
    for _ in range(_MAX_NAME_FEATURES - _NAME_FEATURES):
        clashes = {n for n in names.values() if list(names.values()).count(n) > 1}
        if not clashes:
            break
        for seg, name in list(names.items()):
            if name in clashes and seg != NOISE:
                width[seg] += 1
                names[seg] = render(seg)
    counts = pd.Series(list(names.values())).value_counts()
    return {seg: (f"{name} (segment {seg})" if counts[name] > 1 else name) for seg, name in names.items()}


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
    diffs: pd.DataFrame,
    labels: np.ndarray,
    names: dict[int, str] | None = None,
    n_top: int = 3,
    categorical: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per segment: name, size, share, top features, and per-feature statistics.

    For every numeric (and boolean, date) column: the segment mean, median and index vs the population
    (segment mean / population mean x 100). For every categorical column and level: the share of the
    segment's customers at that level and its index vs the population share.

    Columns are processed one at a time, so ``raw`` may be a generator of ``(name, values)`` pairs and
    memory stays at one column of the table, whatever its width.

    Args:
        raw: original-unit numeric values (NaN allowed): a DataFrame or ``(name, values)`` pairs.
        diffs: standardized differences per segment (:func:`standardized_differences`).
        labels: segment per row (-1 noise).
        names: segment names; derived with :func:`segment_names` when None.
        n_top: how many distinguishing features to list.
        categorical: original categorical columns (missing values count as their own level).
    """
    names = names or segment_names(diffs)
    labels = np.asarray(labels)
    n = len(labels)
    segments = [int(s) for s in diffs.index]
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
            levels = categorical[column].astype("string").fillna("<missing>")
            shares = pd.crosstab(labels, levels, normalize="index").reindex(segments).fillna(0.0)
            overall = levels.value_counts(normalize=True)
            for level in sorted(overall.index):
                stats[f"{column}={level}__share"] = shares[level].tolist()
                stats[f"{column}={level}__index"] = (shares[level] / overall[level] * 100).tolist()
    sizes = np.array([part.stop - part.start for part in slices], dtype=np.int64)
    head = pd.DataFrame(
        {
            "segment": segments,
            "name": [names[s] for s in segments],
            "size": sizes,
            "share": sizes / n,
            "top_features": [
                "; ".join(f"{f} {v:+.2f}" for f, v in top_features(row(diffs, s), n_top)) for s in segments
            ],
        }
    )
    return pd.concat([head, pd.DataFrame(stats)], axis=1)
