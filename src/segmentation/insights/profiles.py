"""Segment profiles and deterministic names.

A profile describes each segment in the units of the original table (mean, median, and an index vs the
population: segment mean / population mean x 100) and lists its most distinguishing features: the
largest standardized differences, read in the preprocessed space where every feature has population
mean 0 and standard deviation 1. Names are derived from those features ("high cash advance, low
purchases"), so the same model always gets the same names.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from segmentation.clustering import NOISE

_NAME_FEATURES = 2
_MAX_NAME_FEATURES = 4


def standardized_differences(x: np.ndarray, labels: np.ndarray, feature_names: list[str]) -> pd.DataFrame:
    """Mean of every preprocessed feature per segment (rows: segments, columns: features).

    The preprocessed space is standardized on the training population, so these are standardized
    differences from the population mean.
    """
    segments = sorted(set(labels.tolist()))
    rows = [x[labels == seg].mean(axis=0) for seg in segments]
    return pd.DataFrame(np.vstack(rows), index=pd.Index(segments, name="segment"), columns=feature_names)


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
        for name, value in top_features(diffs.loc[seg], len(diffs.columns)):
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


def build_profile(
    raw: pd.DataFrame,
    diffs: pd.DataFrame,
    labels: np.ndarray,
    names: dict[int, str] | None = None,
    n_top: int = 3,
) -> pd.DataFrame:
    """One row per segment: name, size, share, top features, and mean/median/index of every raw feature.

    Args:
        raw: original-unit feature values (numeric columns; NaN allowed), one row per customer.
        diffs: standardized differences per segment (:func:`standardized_differences`).
        labels: segment per row (-1 noise).
        names: segment names; derived with :func:`segment_names` when None.
        n_top: how many distinguishing features to list.
    """
    names = names or segment_names(diffs)
    population_mean = raw.mean(numeric_only=True)
    n = len(labels)
    rows = []
    for seg in diffs.index:
        mask = labels == seg
        part = raw[mask]
        row: dict[str, object] = {
            "segment": int(seg),
            "name": names[int(seg)],
            "size": int(mask.sum()),
            "share": float(mask.sum() / n),
            "top_features": "; ".join(f"{f} {v:+.2f}" for f, v in top_features(diffs.loc[seg], n_top)),
        }
        means, medians = part.mean(numeric_only=True), part.median(numeric_only=True)
        for column in raw.columns:
            base = population_mean[column]
            row[f"{column}__mean"] = float(means[column])
            row[f"{column}__median"] = float(medians[column])
            row[f"{column}__index"] = float(means[column] / base * 100) if base not in (0, 0.0) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
