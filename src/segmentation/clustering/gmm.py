"""Gaussian mixture clusterer: the most probable component, confidence its posterior probability."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from sklearn.mixture import GaussianMixture

from segmentation.clustering.base import Clusterer, _size_order
from segmentation.config import GMMConfig


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
