"""Nearest-centroid models: k-means, mini-batch k-means and agglomerative clustering.

They share one prediction rule: a row joins its nearest centroid, and its confidence is the distance
margin ``1 - d_nearest / d_second`` (0 on the boundary, 1 at the centroid).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans, MiniBatchKMeans

from segmentation.clustering.base import _CONFIGS, Clusterer, _size_order
from segmentation.data.chunks import sample_positions

_TRANSPOSE_ROWS = 2048


def _centroid_details(z: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest-centroid labels, distance-margin confidence and all distances.

    float32 throughout (the scoring hot path): rows and centroids are first shifted by the centroids'
    mean, which keeps the squared norms small, so the expansion |z|^2 - 2 z.c + |c|^2 loses little to
    cancellation (distances agree with float64 to about 1e-6 on standardized features). The distances are
    built as a (centroids, rows) array, so every step runs along the long axis: the nearest and second
    nearest centroid come from one sweep over the few centroids instead of a sort per row.

    Returns:
        ``(labels, confidence, distances)``: the first nearest centroid (ties go to the lower index),
        ``1 - nearest / second nearest`` (1 with a single centroid) and the ``(rows, centroids)`` distances.
    """
    mid = np.asarray(centers, dtype=np.float64).mean(axis=0).astype(np.float32)
    # Worked on as (dimensions, rows), whatever the layout of z (a transposed copy only for row-major
    # input), so every sum runs in the same order and a row gets the same bits from either layout.
    z = np.asarray(z, dtype=np.float32)
    zc = np.empty((z.shape[1], len(z)), dtype=np.float32)
    for lo in range(0, len(z), _TRANSPOSE_ROWS):  # cache-sized blocks when z is row-major
        np.subtract(z[lo : lo + _TRANSPOSE_ROWS].T, mid[:, None], out=zc[:, lo : lo + _TRANSPOSE_ROWS])
    cc = np.asarray(centers, dtype=np.float32) - mid
    d2 = (-2.0 * cc) @ zc  # (centroids, rows); scaling by -2 is exact
    d2 += np.einsum("ij,ij->j", zc, zc)[None, :]
    d2 += (cc * cc).sum(1)[:, None]
    dist = np.sqrt(np.maximum(d2, 0.0, out=d2), out=d2)
    labels = np.zeros(len(z), dtype=np.int64)
    nearest = dist[0].copy()
    second = np.full(len(z), np.inf, dtype=np.float32)
    larger = np.empty_like(nearest)
    for c in range(1, len(dist)):
        # With nearest <= second, the second smallest of (nearest, second, d) is min(second, max(nearest, d)).
        np.minimum(second, np.maximum(nearest, dist[c], out=larger), out=second)
        np.copyto(labels, c, where=dist[c] < nearest)
        np.minimum(nearest, dist[c], out=nearest)
    confidence = 1.0 - nearest / np.maximum(second, 1e-12) if len(dist) > 1 else np.ones(len(z))
    return labels, confidence, dist.T


def _predict_in_chunks(model: Clusterer, z: np.ndarray, chunk_rows: int = 262_144) -> np.ndarray:
    """``model.predict`` over row chunks: bounded memory on millions of rows."""
    if len(z) <= chunk_rows:
        return model.predict(z)
    return np.concatenate(
        [model.predict(z[start : start + chunk_rows]) for start in range(0, len(z), chunk_rows)]
    )


class _CentroidClusterer(Clusterer):
    """Shared prediction and state for models that assign to the nearest centroid."""

    def _finish(self, z: np.ndarray, centers: np.ndarray, raw_labels: np.ndarray) -> None:
        """Order centroids by the size of their fitted clusters, then label every row by the predict rule."""
        mapping = _size_order(raw_labels, len(centers))
        ordered = np.empty_like(centers)
        ordered[mapping] = centers
        self.cluster_centers_ = ordered.astype(np.float32)
        self.n_clusters_ = len(centers)
        # Training labels are defined by the same rule prediction uses, so a saved bundle reproduces them.
        self.labels_ = _predict_in_chunks(self, z)

    def _relabel(self, mapping: np.ndarray) -> None:
        ordered = np.empty_like(self.cluster_centers_)
        ordered[mapping] = self.cluster_centers_
        self.cluster_centers_ = ordered

    def predict_details(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Nearest centroid, margin confidence, distances to every centroid."""
        labels, confidence, dist = _centroid_details(z, self.cluster_centers_)
        return labels.astype(np.int64), confidence, {"distances": dist}

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes | None]:
        """Centroids only."""
        return self._meta(), {"cluster_centers": self.cluster_centers_}, None

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], blob: bytes | None) -> Self:  # noqa: ARG003
        """Rebuild from centroids."""
        config_type: Any = _CONFIGS[meta["kind"]]
        obj = cls(config_type.model_validate(meta["config"]), seed=int(meta["seed"]))
        obj.cluster_centers_ = arrays["cluster_centers"]
        obj.n_clusters_ = int(meta["n_clusters"])
        return obj


class KMeansClusterer(_CentroidClusterer):
    """Lloyd k-means with k-means++ initialisation."""

    kind = "kmeans"

    def fit(self, z: np.ndarray) -> Self:
        """Fit k-means with ``config.n_clusters`` (set by the k search when not fixed)."""
        model = KMeans(
            n_clusters=self.config.n_clusters,
            n_init=self.config.n_init,
            max_iter=self.config.max_iter,
            random_state=self.seed,
        ).fit(z)
        self._finish(z, model.cluster_centers_, model.labels_)
        return self


class MiniBatchKMeansClusterer(_CentroidClusterer):
    """Mini-batch k-means: near k-means quality at a fraction of the cost on millions of rows."""

    kind = "minibatch_kmeans"

    def fit(self, z: np.ndarray) -> Self:
        """Fit mini-batch k-means."""
        model = MiniBatchKMeans(
            n_clusters=self.config.n_clusters,
            n_init=self.config.n_init,
            batch_size=self.config.batch_size,
            random_state=self.seed,
        ).fit(z)
        self._finish(z, model.cluster_centers_, model.labels_)
        return self


class AgglomerativeClusterer(_CentroidClusterer):
    """Agglomerative clustering on a sample (it is quadratic); every row then joins its nearest centroid."""

    kind = "agglomerative"

    def fit(self, z: np.ndarray) -> Self:
        """Fit on at most ``max_fit_rows`` sampled rows and keep the clusters' centroids."""
        idx = sample_positions(len(z), self.config.max_fit_rows, self.seed)
        fitted = AgglomerativeClustering(n_clusters=self.config.n_clusters, linkage=self.config.linkage).fit(
            z[idx]
        )
        centers = np.stack([z[idx][fitted.labels_ == c].mean(axis=0) for c in range(self.config.n_clusters)])
        self._finish(z, centers, fitted.labels_)
        return self
