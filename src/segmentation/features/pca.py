"""PCA featurizer: a fixed number of components or an explained-variance target."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from sklearn.decomposition import PCA

from segmentation.features.base import Featurizer

_FIT_ROWS = 500_000  # components are stable long before this; bounds memory and time on huge tables


class PCAFeaturizer(Featurizer):
    """Principal component projection.

    Args:
        n_components: fixed number of components; wins over ``variance``.
        variance: explained-variance target in (0, 1] used when ``n_components`` is None.
        whiten: scale components to unit variance.
        seed: seed for the row sample and the randomized solver.
    """

    kind = "pca"

    def __init__(
        self, n_components: int | None = None, variance: float = 0.9, whiten: bool = False, seed: int = 0
    ) -> None:
        self.n_components = n_components
        self.variance = variance
        self.whiten = whiten
        self.seed = seed

    def fit(self, x: np.ndarray) -> Self:
        """Fit on up to 500,000 sampled rows."""
        rng = np.random.default_rng(self.seed)
        sample = x if len(x) <= _FIT_ROWS else x[np.sort(rng.choice(len(x), _FIT_ROWS, replace=False))]
        full = PCA(svd_solver="full", random_state=self.seed).fit(sample.astype(np.float64))
        if self.n_components is not None:
            n = min(self.n_components, x.shape[1])
        else:
            cumulative = np.cumsum(full.explained_variance_ratio_)
            n = int(np.searchsorted(cumulative, self.variance - 1e-12) + 1)
            n = min(max(n, 1), x.shape[1])
        self.components_ = full.components_[:n].astype(np.float32)
        self.mean_ = full.mean_.astype(np.float32)
        self.explained_variance_ = full.explained_variance_[:n].astype(np.float32)
        self.explained_variance_ratio_ = full.explained_variance_ratio_[:n].astype(np.float32)
        self.n_components_ = n
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Project onto the kept components."""
        z = (np.asarray(x, dtype=np.float32) - self.mean_) @ self.components_.T
        if self.whiten:
            z /= np.sqrt(self.explained_variance_)
        return z.astype(np.float32, copy=False)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Components, mean and variances as arrays."""
        meta = {
            "kind": self.kind,
            "n_components": self.n_components_,
            "whiten": self.whiten,
            "explained_variance_ratio_total": float(self.explained_variance_ratio_.sum()),
        }
        arrays = {
            "components": self.components_,
            "mean": self.mean_,
            "explained_variance": self.explained_variance_,
            "explained_variance_ratio": self.explained_variance_ratio_,
        }
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        """Rebuild from stored arrays."""
        obj = cls(n_components=int(meta["n_components"]), whiten=bool(meta["whiten"]))
        obj.components_ = arrays["components"]
        obj.mean_ = arrays["mean"]
        obj.explained_variance_ = arrays["explained_variance"]
        obj.explained_variance_ratio_ = arrays["explained_variance_ratio"]
        obj.n_components_ = int(meta["n_components"])
        return obj
