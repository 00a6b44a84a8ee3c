"""Density clusterers with noise (-1), fitted on a sample.

* HDBSCAN: ``hdbscan.approximate_predict`` on the saved prediction data; confidence is its strength;
* DBSCAN: the cluster of the nearest core point when it lies within ``eps``, else noise (-1);
  confidence is ``1 - distance / eps``.
"""

from __future__ import annotations

import io
import logging
from typing import Any, Self

import joblib
import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from segmentation.clustering.base import NOISE, Clusterer, _apply_map, _size_order
from segmentation.config import DBSCANConfig, HDBSCANConfig
from segmentation.data.chunks import sample_positions

logger = logging.getLogger(__name__)


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
