"""Lloyd k-means updates streamed over row chunks, for refining centroids on every row out of core."""

from __future__ import annotations

import numpy as np


def lloyd_refine(
    z: np.ndarray, centers: np.ndarray, *, max_iter: int = 300, tol: float = 1e-4, chunk_rows: int = 262_144
) -> tuple[np.ndarray, np.ndarray, int]:
    """Lloyd iterations over every row, a chunk at a time, from given centroids.

    The k-means update of scikit-learn's ``KMeans`` (same convergence rule: the squared shift of all
    centroids below ``tol`` times the mean feature variance), but streamed over row chunks, so a
    memory-mapped matrix of millions of rows is never copied or converted to float64 as a whole.
    Distances are computed in float32, sums accumulated in float64. A centroid that loses every row
    keeps its position.

    Returns:
        ``(centers, labels, iterations)``: the final centroids, every row's nearest centroid under them,
        and the number of update steps made.
    """
    dim = centers.shape[1]
    n = len(z)
    moments = np.zeros((2, dim))
    for start in range(0, n, chunk_rows):
        block = np.asarray(z[start : start + chunk_rows], dtype=np.float64)
        moments += [block.sum(axis=0), (block * block).sum(axis=0)]
    mean = moments[0] / n
    threshold = tol * float(np.mean(moments[1] / n - mean * mean))
    current = np.asarray(centers, dtype=np.float64)
    labels = np.empty(n, dtype=np.int64)
    iterations = 0
    while True:
        sums, counts = _assign_rows(z, current, labels, chunk_rows)
        if iterations == max_iter:
            break  # labels are the nearest of the final centroids
        updated = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], current)
        shift = float(((updated - current) ** 2).sum())
        current = updated
        iterations += 1
        if shift <= threshold:
            _assign_rows(z, current, labels, chunk_rows)  # every row to the converged centroids
            break
    return current, labels, iterations


def _assign_rows(
    z: np.ndarray, centers: np.ndarray, labels: np.ndarray, chunk_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Write every row's nearest centroid into ``labels``; return per-centroid sums and counts."""
    k, dim = centers.shape
    c32 = centers.astype(np.float32)
    norms = (c32 * c32).sum(axis=1)
    sums, counts = np.zeros((k, dim)), np.zeros(k)
    for start in range(0, len(z), chunk_rows):
        block = np.asarray(z[start : start + chunk_rows], dtype=np.float32)
        nearest = (norms[None, :] - 2.0 * (block @ c32.T)).argmin(axis=1)  # |z|^2 does not change argmin
        labels[start : start + len(block)] = nearest
        counts += np.bincount(nearest, minlength=k)
        for cluster in range(k):
            sums[cluster] += block[nearest == cluster].sum(axis=0, dtype=np.float64)
    return sums, counts
