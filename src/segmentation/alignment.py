"""Keep segment IDs stable across retrains by matching new segments to a previous model's.

A retrain (new month of data, reshuffled rows, another seed) may find the same segments under other
IDs: k-means numbers its clusters arbitrarily and size order changes when sizes move. Names, dashboards
and campaign lists are keyed by ID, so the new model's IDs are matched to the previous model's with a
Hungarian assignment that maximises the number of customers who keep their segment.

Two ways to compare segments:

* ``label_overlap`` (preferred): the previous bundle scores the new training table, and the
  contingency table of (new segment, previous segment) counts is the assignment's weight.
* ``centroid_distance`` (when the previous model cannot score the table, e.g. its columns changed):
  distances between segment centroids in the preprocessed space, on the features both models share.

IDs stay contiguous (``0..k-1``). When the new model has more segments, unmatched ones take the next
free IDs in size order; when it has fewer, previous IDs ``>= k`` retire, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from segmentation.clustering import NOISE


@dataclass(frozen=True)
class Alignment:
    """How the new segment IDs were matched to the previous model's.

    Attributes:
        mapping: ``mapping[new_id] = aligned_id`` (a permutation of ``0..k-1``).
        method: ``label_overlap`` or ``centroid_distance``.
        matched: aligned ID -> share of the previous segment's customers that kept that ID
            (label overlap) or centroid distance (centroid matching), for matched segments.
        new_segments: aligned IDs with no counterpart in the previous model.
        retired: previous IDs that no new segment took.
        agreement: share of customers (previous noise excluded) whose aligned ID equals the previous
            model's segment; None for centroid matching.
    """

    mapping: np.ndarray
    method: str
    matched: dict[int, float] = field(default_factory=dict)
    new_segments: list[int] = field(default_factory=list)
    retired: list[int] = field(default_factory=list)
    agreement: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for metrics and the bundle manifest)."""
        return {
            "method": self.method,
            "mapping": {str(old): int(new) for old, new in enumerate(self.mapping)},
            "matched": {str(k): round(float(v), 6) for k, v in self.matched.items()},
            "new_segments": [int(s) for s in self.new_segments],
            "retired": [int(s) for s in self.retired],
            "agreement": self.agreement,
        }


def _assign(weight: np.ndarray, matched_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximise total weight; rows whose best match has no support get the lowest free IDs in order."""
    k = weight.shape[0]
    rows, cols = linear_sum_assignment(weight, maximize=True)
    mapping = np.empty(k, dtype=np.int64)
    mapping[rows] = cols
    supported = matched_mask[np.arange(k), mapping]
    free = sorted(set(range(k)) - set(mapping[supported].tolist()))
    for new_id in np.flatnonzero(~supported):  # new IDs are size-ordered, so larger segments go first
        mapping[new_id] = free.pop(0)
    return mapping, supported


def align_by_overlap(previous: np.ndarray, current: np.ndarray, n_current: int) -> Alignment:
    """Match segments by the customers they share.

    Args:
        previous: the previous model's segment for every training row (-1 noise).
        current: the new model's segment for the same rows (-1 noise).
        n_current: number of segments of the new model.
    """
    previous = np.asarray(previous, dtype=np.int64)
    current = np.asarray(current, dtype=np.int64)
    if previous.shape != current.shape:
        raise ValueError("previous and current labels must cover the same rows")
    both = (previous >= 0) & (current >= 0)
    n_previous = int(previous.max()) + 1 if (previous >= 0).any() else 0
    width = max(n_current, n_previous)
    counts = np.zeros((n_current, width), dtype=np.int64)
    np.add.at(counts, (current[both], previous[both]), 1)
    # Only IDs 0..k-1 exist in the new model; previous segments beyond them cannot keep their ID.
    weight = counts[:, :n_current].astype(np.float64)
    mapping, supported = _assign(weight, weight > 0)
    previous_sizes = np.bincount(previous[previous >= 0], minlength=width)
    matched = {
        int(mapping[c]): float(counts[c, mapping[c]] / max(previous_sizes[mapping[c]], 1))
        for c in np.flatnonzero(supported)
    }
    aligned = np.where(current >= 0, mapping[np.maximum(current, 0)], NOISE)
    scored = previous >= 0
    agreement = float((aligned[scored] == previous[scored]).mean()) if scored.any() else None
    previous_ids = set(np.flatnonzero(previous_sizes).tolist())
    return Alignment(
        mapping=mapping,
        method="label_overlap",
        matched=matched,
        new_segments=sorted(int(mapping[c]) for c in np.flatnonzero(~supported)),
        retired=sorted(previous_ids - set(matched)),
        agreement=agreement,
    )


def align_by_centroids(previous: pd.DataFrame, current: pd.DataFrame) -> Alignment:
    """Match segments by centroid distance on the features both models share.

    Args:
        previous: previous centroids (rows: segment IDs, columns: preprocessed features).
        current: new centroids, rows ``0..k-1`` (noise rows are ignored).
    """
    previous = previous.drop(index=NOISE, errors="ignore")
    current = current.drop(index=NOISE, errors="ignore").sort_index()
    shared = [c for c in current.columns if c in set(previous.columns)]
    if not shared:
        raise ValueError("the previous model shares no feature with this one; IDs cannot be matched")
    k = len(current)
    prev = previous[shared].reindex(range(k))  # IDs >= k cannot be kept; missing IDs are NaN rows
    diff = current[shared].to_numpy()[:, None, :] - prev.to_numpy()[None, :, :]
    dist = np.sqrt((diff**2).sum(axis=2))
    usable = ~np.isnan(dist)
    weight = np.where(usable, -np.nan_to_num(dist, nan=0.0), -1e12)
    mapping, supported = _assign(weight, usable)
    return Alignment(
        mapping=mapping,
        method="centroid_distance",
        matched={int(mapping[c]): float(dist[c, mapping[c]]) for c in np.flatnonzero(supported)},
        new_segments=sorted(int(mapping[c]) for c in np.flatnonzero(~supported)),
        retired=sorted(
            set(previous.index.astype(int)) - {int(mapping[c]) for c in np.flatnonzero(supported)}
        ),
    )
