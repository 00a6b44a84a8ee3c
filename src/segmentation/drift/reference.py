"""The training reference drift is measured against, and the bins both it and a snapshot are counted in.

At training time :func:`build_reference` summarises (a seeded sample of) the training rows into
``reference.json`` inside the bundle: quantile bin edges and the share of rows per bin for every numeric,
boolean and date feature (missing values are a bin of their own), the share of every training level of
each categorical (plus ``other`` and ``missing``), and the share of every segment. Drift time needs only
the bundle, never the training file. Numeric bins are right-closed: ``(-inf, e1], (e1, e2], ..., (ek, inf)``.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import pandas as pd

from segmentation.contract.schema import TableSchema
from segmentation.contract.values import level_codes
from segmentation.preprocess import Preprocessor

logger = logging.getLogger(__name__)

REFERENCE_FORMAT = 1
_OTHER, _MISSING = "__other__", "__missing__"


# ------------------------------------------------------------------------------------- binning
def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges from the quantiles of the non-missing values (ties and constants handled).

    Bins are right-closed: ``(-inf, e1], (e1, e2], ..., (ek, inf)``, so a point mass (zero amounts, a
    flag) sits in one bin. Repeated quantiles collapse to one edge, and edges at or above the maximum
    are dropped (their upper bin would be empty); at least one edge is kept, so a constant column has
    a bin for values above it.
    """
    present = values[~np.isnan(values)]
    if len(present) == 0:
        return np.array([0.0])
    edges = np.unique(np.quantile(present, np.arange(1, bins) / bins))
    below_max = edges[edges < present.max()]
    return below_max if len(below_max) else edges[:1]


def numeric_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index per value: ``0..len(edges)`` for values, ``len(edges) + 1`` for missing."""
    # The number of edges strictly below each value (what searchsorted(side="left") gives, but with a
    # handful of edges one comparison pass per edge is 2-3x faster than a binary search per value).
    index = np.zeros(len(values), dtype=np.uint8)  # bins <= 100, so edges + 2 < 256
    for edge in edges:
        index += values > edge
    index[np.isnan(values)] = len(edges) + 1
    return index


def categorical_bins(series: pd.Series, levels: list[str]) -> np.ndarray:
    """Bin index per value: the level's position, ``len(levels)`` for other, ``len(levels) + 1`` missing."""
    codes = level_codes(series, levels)
    missing = series.isna().to_numpy()
    codes[(codes < 0) & ~missing] = len(levels)
    codes[missing] = len(levels) + 1
    return codes


def _numeric_labels(edges: list[float]) -> list[str]:
    def fmt(v: float) -> str:
        return f"{v:.4g}"

    if not edges:
        return ["all", "missing"]
    labels = [f"<= {fmt(edges[0])}"]
    labels += [f"({fmt(lo)}, {fmt(hi)}]" for lo, hi in itertools.pairwise(edges)]
    return [*labels, f"> {fmt(edges[-1])}", "missing"]


def bin_labels(feature: dict[str, Any]) -> list[str]:
    """A reference feature's bin labels, in bin order (categorical levels, then other and missing)."""
    if feature["kind"] == "categorical":
        return [*feature["levels"], _OTHER, _MISSING]
    return _numeric_labels(feature["edges"])


def shares(counts: np.ndarray) -> list[float]:
    """Each bin's share of the rows counted (all 0 when none were)."""
    total = counts.sum()
    return [float(c / total) if total else 0.0 for c in counts]


# ----------------------------------------------------------------------------------- reference
def build_reference(
    part: pd.DataFrame,
    preprocessor: Preprocessor,
    labels: np.ndarray,
    *,
    bins: int = 10,
) -> dict[str, Any]:
    """The training distributions drift is measured against (``reference.json`` in the bundle).

    Args:
        part: validated training rows that set the bin edges and feature shares: all of them, or a
            seeded sample (:func:`segmentation.data.chunks.sample_positions`; ``drift.reference_sample``
            rows, 100,000 by default, pin every share down to about +-0.002).
        preprocessor: the fitted preprocessor (its schema names the features and their kinds; its
            ``raw_column`` gives numeric, boolean and date columns in original units).
        labels: the training segment of every training row (-1 is noise), for the segment shares.
        bins: quantile bins per numeric or date feature (booleans get two), plus one for missing.

    Returns:
        A JSON-able dict: ``features`` (name, kind, ``edges`` or ``levels``, ``shares``) and
        ``segments`` (ids, shares).
    """
    schema: TableSchema = preprocessor.schema
    features: list[dict[str, Any]] = []
    for spec in schema.columns:
        if spec.kind == "categorical":
            levels = [str(level) for level in spec.categories]
            counts = np.bincount(categorical_bins(part[spec.name], levels), minlength=len(levels) + 2)
            features.append(
                {"name": spec.name, "kind": spec.kind, "levels": levels, "shares": shares(counts)}
            )
            continue
        values = preprocessor.raw_column(part, spec.name)
        edges = np.array([0.0]) if spec.kind == "boolean" else quantile_edges(values, bins)
        counts = np.bincount(numeric_bins(values, edges), minlength=len(edges) + 2)
        features.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "edges": [float(e) for e in edges],
                "shares": shares(counts),
            }
        )
    ids, seg_counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    logger.info("drift reference: %d features from %d training rows", len(features), len(part))
    return {
        "format": REFERENCE_FORMAT,
        "bins": bins,
        "rows": len(part),
        "training_rows": len(labels),
        "features": features,
        "segments": {"ids": [int(i) for i in ids], "shares": shares(seg_counts), "rows": len(labels)},
    }


__all__ = [
    "REFERENCE_FORMAT",
    "bin_labels",
    "build_reference",
    "categorical_bins",
    "numeric_bins",
    "quantile_edges",
    "shares",
]
