"""Clusterers with a common contract, and the choice of k by a stated criterion.

Every clusterer can assign *new* customers:

* k-means / mini-batch k-means: nearest centroid; confidence is the distance margin
  ``1 - d_nearest / d_second`` (0 on the boundary, 1 at the centroid);
* GMM: the most probable component; confidence is its posterior probability;
* HDBSCAN: ``hdbscan.approximate_predict`` on the saved prediction data; confidence is its strength;
* agglomerative: nearest centroid of the fitted clusters (same margin as k-means);
* DBSCAN: the cluster of the nearest core point when it lies within ``eps``, else noise (-1);
  confidence is ``1 - distance / eps``.

Segment IDs are ordered by size (0 is the largest) so they read the same way across clusterers;
noise is always -1.
"""

from __future__ import annotations

import io
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import joblib
import numpy as np
from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from tqdm.auto import tqdm

from segmentation.config import (
    AgglomerativeConfig,
    ClusterConfig,
    DBSCANConfig,
    GMMConfig,
    HDBSCANConfig,
    KMeansConfig,
    MiniBatchKMeansConfig,
)
from segmentation.data.chunks import sample_positions

logger = logging.getLogger(__name__)

NOISE = -1


def _size_order(labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Map raw cluster ids to ids ordered by decreasing size (ties by raw id); noise is untouched."""
    counts = np.bincount(labels[labels >= 0], minlength=n_clusters)
    order = np.lexsort((np.arange(n_clusters), -counts))
    mapping = np.empty(n_clusters, dtype=np.int64)
    mapping[order] = np.arange(n_clusters)
    return mapping


def _apply_map(raw: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    out = np.full(raw.shape, NOISE, dtype=np.int64)
    ok = raw >= 0
    out[ok] = mapping[raw[ok]]
    return out


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


class Clusterer(ABC):
    """Common contract: ``fit`` on the feature space, ``predict`` new rows, export/import state.

    Fitted attributes: ``labels_`` (training labels, size-ordered, noise -1), ``n_clusters_``.
    """

    kind: ClassVar[str]
    n_clusters_: int
    labels_: np.ndarray

    def __init__(self, config: Any, seed: int = 0) -> None:
        self.config = config
        self.seed = seed

    @abstractmethod
    def fit(self, z: np.ndarray) -> Self:
        """Fit on the feature-space matrix and set ``labels_`` and ``n_clusters_``."""

    @abstractmethod
    def predict_details(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Labels, confidence in [0, 1], and extra per-segment arrays (distances or probabilities)."""

    def predict(self, z: np.ndarray) -> np.ndarray:
        """Segment of each row (noise -1)."""
        return self.predict_details(z)[0]

    @abstractmethod
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes | None]:
        """``(meta, arrays, blob)``; ``blob`` is a joblib payload only for HDBSCAN's prediction data."""

    @classmethod
    @abstractmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], blob: bytes | None) -> Self:
        """Rebuild from :meth:`get_state` output."""

    def relabel(self, mapping: np.ndarray) -> Self:
        """Rename segments: ``mapping[old_id] = new_id`` (a permutation of ``0..n_clusters_-1``).

        The fitted geometry is untouched; only which ID each segment answers to changes, in the stored
        state and in ``labels_`` alike. Noise stays -1. Used to align IDs with a previous model.
        """
        mapping = np.asarray(mapping, dtype=np.int64)
        if sorted(mapping.tolist()) != list(range(self.n_clusters_)):
            raise ValueError(
                f"relabel needs a permutation of 0..{self.n_clusters_ - 1}, got {mapping.tolist()}"
            )
        self._relabel(mapping)
        self.labels_ = _apply_map(self.labels_, mapping)
        return self

    @abstractmethod
    def _relabel(self, mapping: np.ndarray) -> None:
        """Apply ``mapping`` to the model's own per-segment state."""

    def _meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "config": self.config.model_dump(mode="json"),
            "seed": self.seed,
            "n_clusters": self.n_clusters_,
        }


# ------------------------------------------------------------------------------------ centroid family
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


# -------------------------------------------------------------------------------------------- GMM
class GMMClusterer(Clusterer):
    """Gaussian mixture model; confidence is the posterior probability of the chosen component."""

    kind = "gmm"

    def fit(self, z: np.ndarray, init: np.ndarray | None = None) -> Self:
        """Fit by EM (from ``init`` means when given, e.g. a sample fit), then order components by size."""
        model = GaussianMixture(
            n_components=self.config.n_clusters,
            covariance_type=self.config.covariance_type,
            n_init=self.config.n_init if init is None else 1,
            means_init=init,
            max_iter=self.config.max_iter,
            random_state=self.seed,
            reg_covar=1e-5,
        ).fit(z)
        self.model_ = model
        self._relabel(_size_order(model.predict(z), model.n_components))
        self.n_clusters_ = model.n_components
        self.labels_ = self.predict(z)
        return self

    def _relabel(self, mapping: np.ndarray) -> None:
        model = self.model_
        order = np.argsort(mapping)  # order[new] = old
        model.weights_ = model.weights_[order]
        model.means_ = model.means_[order]
        if self.config.covariance_type in {"full", "diag", "spherical"}:
            model.covariances_ = model.covariances_[order]
            model.precisions_cholesky_ = model.precisions_cholesky_[order]
        if hasattr(model, "precisions_") and self.config.covariance_type != "tied":
            model.precisions_ = model.precisions_[order]

    def predict_details(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Most probable component and the posterior of every component."""
        proba = self.model_.predict_proba(np.asarray(z, dtype=np.float64))
        labels = proba.argmax(axis=1).astype(np.int64)
        return labels, proba.max(axis=1), {"probabilities": proba}

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes | None]:
        """Mixture parameters as arrays."""
        m = self.model_
        arrays = {
            "weights": m.weights_,
            "means": m.means_,
            "covariances": m.covariances_,
            "precisions_cholesky": m.precisions_cholesky_,
        }
        return self._meta(), arrays, None

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], blob: bytes | None) -> Self:  # noqa: ARG003
        """Rebuild a GaussianMixture from its parameters (no refit)."""
        obj = cls(GMMConfig.model_validate(meta["config"]), seed=int(meta["seed"]))
        m = GaussianMixture(n_components=int(meta["n_clusters"]), covariance_type=obj.config.covariance_type)
        m.weights_, m.means_ = arrays["weights"], arrays["means"]
        m.covariances_, m.precisions_cholesky_ = arrays["covariances"], arrays["precisions_cholesky"]
        obj.model_ = m
        obj.n_clusters_ = int(meta["n_clusters"])
        return obj


# ---------------------------------------------------------------------------------------- HDBSCAN
class HDBSCANClusterer(Clusterer):
    """HDBSCAN fitted on a sample; other rows (and new customers) via ``approximate_predict``."""

    kind = "hdbscan"

    def fit(self, z: np.ndarray) -> Self:
        """Fit with prediction data; noise stays -1."""
        import hdbscan

        idx = sample_positions(len(z), self.config.max_fit_rows, self.seed)
        model = hdbscan.HDBSCAN(
            min_cluster_size=self.config.min_cluster_size,
            min_samples=self.config.min_samples,
            cluster_selection_method=self.config.cluster_selection_method,
            prediction_data=True,
            core_dist_n_jobs=1,
        ).fit(z[idx].astype(np.float64))
        self.model_ = model
        n_raw = int(model.labels_.max()) + 1
        self.label_map_ = _size_order(model.labels_, max(n_raw, 1)) if n_raw > 0 else np.zeros(0, np.int64)
        self.n_clusters_ = n_raw
        labels = self.predict(z)
        fitted = _apply_map(model.labels_, self.label_map_)
        # How faithfully approximate_predict (the rule that assigns every row outside the sample, and new
        # customers) reproduces the fit: its agreement with the fitted labels on the sample itself.
        self.fit_rows_ = len(idx)
        self.sample_agreement_ = float((labels[idx] == fitted).mean()) if len(idx) else 1.0
        labels[idx] = fitted  # fitted rows keep their fitted labels
        self.labels_ = labels
        logger.info(
            "hdbscan fitted on %d of %d rows; approximate_predict agrees with the fit on %.1f%% of them",
            len(idx),
            len(z),
            100 * self.sample_agreement_,
        )
        return self

    def _relabel(self, mapping: np.ndarray) -> None:
        self.label_map_ = mapping[self.label_map_]

    def predict_details(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Approximate prediction with membership strength as confidence."""
        import hdbscan

        if self.n_clusters_ == 0:
            return np.full(len(z), NOISE, np.int64), np.zeros(len(z)), {}
        raw, strength = hdbscan.approximate_predict(self.model_, np.asarray(z, dtype=np.float64))
        return _apply_map(np.asarray(raw), self.label_map_), np.asarray(strength, dtype=np.float64), {}

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes | None]:
        """HDBSCAN's prediction data has no array form: it is a joblib blob (digest-checked on load)."""
        buffer = io.BytesIO()
        joblib.dump(self.model_, buffer)
        return self._meta(), {"label_map": self.label_map_}, buffer.getvalue()

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], blob: bytes | None) -> Self:
        """Rebuild from the joblib blob (callers verify its digest first)."""
        if blob is None:
            raise ValueError("HDBSCAN state needs its joblib payload")
        obj = cls(HDBSCANConfig.model_validate(meta["config"]), seed=int(meta["seed"]))
        obj.model_ = joblib.load(io.BytesIO(blob))  # payload digest verified by the bundle loader
        obj.label_map_ = arrays["label_map"]
        obj.n_clusters_ = int(meta["n_clusters"])
        return obj


# ----------------------------------------------------------------------------------------- DBSCAN
class DBSCANClusterer(Clusterer):
    """DBSCAN fitted on a sample; rows join the cluster of their nearest core point within ``eps``."""

    kind = "dbscan"

    def fit(self, z: np.ndarray) -> Self:
        """Fit on a sample and keep its core points."""
        idx = sample_positions(len(z), self.config.max_fit_rows, self.seed)
        fitted = DBSCAN(eps=self.config.eps, min_samples=self.config.min_samples).fit(z[idx])
        core = fitted.core_sample_indices_
        raw = fitted.labels_
        n_raw = int(raw.max()) + 1
        self.label_map_ = _size_order(raw, n_raw) if n_raw > 0 else np.zeros(0, np.int64)
        self.core_points_ = z[idx][core].astype(np.float32)
        self.core_labels_ = _apply_map(raw[core], self.label_map_)
        self.n_clusters_ = n_raw
        self.__dict__.pop("_index", None)  # a refit must not reuse the previous fit's core-point index
        labels = self.predict(z)
        labels[idx] = _apply_map(raw, self.label_map_)
        self.labels_ = labels
        return self

    def _relabel(self, mapping: np.ndarray) -> None:
        self.label_map_ = mapping[self.label_map_]
        self.core_labels_ = _apply_map(self.core_labels_, mapping)

    def predict_details(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Nearest core point within eps, else noise."""
        if len(self.core_points_) == 0:
            return np.full(len(z), NOISE, np.int64), np.zeros(len(z)), {}
        if not hasattr(self, "_index"):
            self._index = NearestNeighbors(n_neighbors=1).fit(self.core_points_)  # an index, not a refit
        dist, nearest = self._index.kneighbors(np.asarray(z, dtype=np.float32))
        dist, nearest = dist[:, 0], nearest[:, 0]
        labels = np.where(dist <= self.config.eps, self.core_labels_[nearest], NOISE).astype(np.int64)
        confidence = np.clip(1.0 - dist / self.config.eps, 0.0, 1.0)
        return labels, confidence, {}

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes | None]:
        """Core points and their labels."""
        return self._meta(), {"core_points": self.core_points_, "core_labels": self.core_labels_}, None

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], blob: bytes | None) -> Self:  # noqa: ARG003
        """Rebuild from core points."""
        obj = cls(DBSCANConfig.model_validate(meta["config"]), seed=int(meta["seed"]))
        obj.core_points_, obj.core_labels_ = arrays["core_points"], arrays["core_labels"]
        obj.n_clusters_ = int(meta["n_clusters"])
        return obj


_CLASSES: dict[str, type[Clusterer]] = {
    c.kind: c
    for c in (
        KMeansClusterer,
        MiniBatchKMeansClusterer,
        GMMClusterer,
        HDBSCANClusterer,
        AgglomerativeClusterer,
        DBSCANClusterer,
    )
}
_CONFIGS: dict[str, type] = {
    "kmeans": KMeansConfig,
    "minibatch_kmeans": MiniBatchKMeansConfig,
    "gmm": GMMConfig,
    "hdbscan": HDBSCANConfig,
    "agglomerative": AgglomerativeConfig,
    "dbscan": DBSCANConfig,
}


def clusterer_from_state(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], blob: bytes | None
) -> Clusterer:
    """Rebuild any fitted clusterer from its stored state."""
    return _CLASSES[meta["kind"]].from_state(meta, arrays, blob)


# ------------------------------------------------------------------------------------ k selection
@dataclass
class ClusterResult:
    """The winning model together with its own labels and score, plus the score of every k tried."""

    model: Clusterer
    labels: np.ndarray
    score: float | None
    k_scores: dict[int, float | None] = field(default_factory=dict)
    criterion: str = "silhouette"
    alignment: dict[str, Any] | None = None  # set when IDs were matched to a previous model


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


def fit_clusterer(
    z: np.ndarray, x_eval: np.ndarray, config: ClusterConfig, *, seed: int, silhouette_sample: int
) -> ClusterResult:
    """Fit the configured clusterer; when ``n_clusters`` is null, try every k and keep the best.

    The criterion is the silhouette on a seeded sample, computed in ``x_eval`` (the preprocessed input
    space) so the choice does not depend on the featurizer. Ties go to the smaller k.

    Args:
        z: feature-space matrix the clusterer is fitted on.
        x_eval: preprocessed matrix (same rows) for the criterion.
        config: the clusterer section of the configuration.
        seed: random seed.
        silhouette_sample: rows sampled for the silhouette.
    """
    cls = _CLASSES[config.kind]
    if not isinstance(config, KMeansConfig | MiniBatchKMeansConfig | GMMConfig | AgglomerativeConfig):
        model = cls(config, seed=seed).fit(z)
        score = sampled_silhouette(x_eval, model.labels_, silhouette_sample, seed)
        return ClusterResult(
            model=model, labels=model.labels_, score=score, k_scores={}, criterion="density (k not searched)"
        )
    # On large tables candidates are fitted on a sample (scored on the same rows) and only the winner
    # sees every row: k-means over k = 3..10 on 2,000,000 rows costs one full fit, not eight.
    rows = sample_positions(len(z), config.fit_sample, seed) if len(z) > config.fit_sample else None
    z_fit = z if rows is None else np.ascontiguousarray(z[rows])
    x_fit = x_eval if rows is None else np.ascontiguousarray(x_eval[rows])
    if config.n_clusters is not None:
        best = cls(config, seed=seed).fit(z_fit)
        criterion, scores = "fixed k", None
    else:
        criterion, scores = "silhouette", {}
        ks = range(config.search.k_min, config.search.k_max + 1)
        candidates: dict[int, Clusterer] = {}
        for k in tqdm(ks, desc=f"{config.kind}: choosing k", disable=None, leave=False):
            started = time.perf_counter()
            update: dict[str, Any] = {"n_clusters": k}
            if rows is not None and "max_iter" in type(config).model_fields:
                # A candidate only has to rank k; the winner is refined on all rows to convergence.
                update["max_iter"] = min(config.max_iter, config.search.max_iter)  # type: ignore[union-attr]
            candidates[k] = cls(config.model_copy(update=update), seed=seed).fit(z_fit)
            logger.info(
                "%s k=%d fitted on %d rows in %.1f s",
                config.kind,
                k,
                len(z_fit),
                time.perf_counter() - started,
            )
        # Every candidate is scored on the same sampled rows: their distances are computed once.
        silhouettes = sampled_silhouettes(
            x_fit, [model.labels_ for model in candidates.values()], silhouette_sample, seed
        )
        fitted: Clusterer | None = None
        best_score: float | None = None
        for (k, model), score in zip(candidates.items(), silhouettes, strict=True):
            scores[k] = score
            logger.info("%s k=%d silhouette=%s", config.kind, k, "n/a" if score is None else f"{score:.4f}")
            if score is not None and (best_score is None or score > best_score):
                fitted, best_score = model, score
        if fitted is None:
            raise ValueError(
                f"no k in {config.search.k_min}..{config.search.k_max} gave two or more clusters"
            )
        best = fitted
    if rows is not None:
        best = _refine_on_all_rows(best, config, z, seed)
    if rows is None and scores:
        score = scores[best.n_clusters_]  # the same rows and sample: no need to compute it twice
    else:
        score = sampled_silhouette(x_eval, best.labels_, silhouette_sample, seed)
    if scores is None:
        scores = {best.n_clusters_: score}
    return ClusterResult(model=best, labels=best.labels_, score=score, k_scores=scores, criterion=criterion)


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


def _refine_on_all_rows(model: Clusterer, config: Any, z: np.ndarray, seed: int) -> Clusterer:
    """Refit a model chosen on a sample on every row, starting from the sample's solution.

    ``config`` is the configured clusterer (its own ``max_iter``, not a candidate's capped one).
    """
    started = time.perf_counter()
    config = config.model_copy(update={"n_clusters": model.n_clusters_})
    refined: Clusterer
    if isinstance(model, KMeansClusterer | MiniBatchKMeansClusterer):
        max_iter = getattr(config, "max_iter", 300)
        centers, raw_labels, iterations = lloyd_refine(z, model.cluster_centers_, max_iter=max_iter)
        refined = type(model)(config, seed=seed)
        refined._finish(z, centers, raw_labels)
        logger.info("lloyd refinement: %d iteration(s) over all rows", iterations)
    elif isinstance(model, GMMClusterer):
        refined = GMMClusterer(config, seed=seed).fit(z, init=model.model_.means_)
    else:
        # Agglomerative fits on its own sample; every row then joins the nearest centroid.
        refined = type(model)(config, seed=seed).fit(z)
    logger.info(
        "%s k=%d refined on all %d rows in %.1f s",
        model.kind,
        refined.n_clusters_,
        len(z),
        time.perf_counter() - started,
    )
    return refined


def refit_like(model: Clusterer, z: np.ndarray, seed: int) -> Clusterer:
    """Fit a new clusterer of the same kind and parameters (same k for k-based models) on other rows."""
    config = model.config
    if "n_clusters" in type(config).model_fields:
        config = config.model_copy(update={"n_clusters": model.n_clusters_})
    return _CLASSES[model.kind](config, seed=seed).fit(z)
