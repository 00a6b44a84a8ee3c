"""The k search's criterion: the silhouette on a seeded sample of rows."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import silhouette_score


def sampled_silhouette(x: np.ndarray, labels: np.ndarray, sample_size: int, seed: int) -> float | None:
    """Silhouette on a seeded sample of non-noise rows; None when fewer than two clusters remain."""
    keep = np.flatnonzero(labels >= 0)
    if len(keep) > sample_size:
        keep = np.sort(np.random.default_rng(seed).choice(keep, sample_size, replace=False))
    n_labels = len(np.unique(labels[keep]))
    if n_labels < 2 or n_labels >= len(keep):
        return None
    return float(silhouette_score(x[keep], labels[keep]))


def sampled_silhouettes(
    x: np.ndarray, labelings: list[np.ndarray], sample_size: int, seed: int, block_rows: int = 1024
) -> list[float | None]:
    """:func:`sampled_silhouette` of several labelings of the same rows, computing distances once.

    Labelings without noise (every k-means, GMM or agglomerative candidate) are scored on the same
    seeded sample of rows :func:`sampled_silhouette` draws, so the pairwise distances of that sample are
    computed once, in row blocks, and each labeling only adds per-cluster sums. The formula is
    scikit-learn's ``silhouette_score`` (float64, a singleton cluster's rows score 0); a labeling with
    noise is scored on its own rows by :func:`sampled_silhouette`.
    """
    if not labelings:
        return []
    keep = np.arange(len(x))
    if len(keep) > sample_size:
        keep = np.sort(np.random.default_rng(seed).choice(keep, sample_size, replace=False))
    shared = [i for i, labels in enumerate(labelings) if not (labels < 0).any()]
    out: list[float | None] = [
        None if i in shared else sampled_silhouette(x, labels, sample_size, seed)
        for i, labels in enumerate(labelings)
    ]
    codes, counts = [], []
    for i in shared:
        _, code, count = np.unique(labelings[i][keep], return_inverse=True, return_counts=True)
        codes.append(code)
        counts.append(count)
    usable = [j for j, count in enumerate(counts) if 2 <= len(count) < len(keep)]
    if not usable:
        return out
    xs = np.asarray(x[keep], dtype=np.float64)
    norms = (xs * xs).sum(axis=1)
    sums = [np.zeros((len(keep), len(counts[j]))) for j in usable]
    memberships = []  # rows x clusters indicator of each labeling: distance sums per cluster are one product
    for j in usable:
        onehot = np.zeros((len(keep), len(counts[j])))
        onehot[np.arange(len(keep)), codes[j]] = 1.0
        memberships.append(onehot)
    for start in range(0, len(keep), block_rows):
        stop = min(start + block_rows, len(keep))
        d2 = norms[start:stop, None] - 2.0 * (xs[start:stop] @ xs.T) + norms[None, :]
        np.maximum(d2, 0.0, out=d2)
        dist = np.sqrt(d2)
        dist[np.arange(stop - start), np.arange(start, stop)] = 0.0  # a row's distance to itself
        for slot, onehot in enumerate(memberships):
            sums[slot][start:stop] = dist @ onehot
    for slot, j in enumerate(usable):
        own = codes[j]
        size = counts[j][own]
        intra = sums[slot][np.arange(len(keep)), own] / np.maximum(size - 1, 1)
        means = sums[slot] / counts[j][None, :]
        means[np.arange(len(keep)), own] = np.inf
        nearest = means.min(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = (nearest - intra) / np.maximum(intra, nearest)
        values = np.where(size > 1, np.nan_to_num(values), 0.0)
        out[shared[j]] = float(values.mean())
    return out
