"""The featurizer contract shared by every implementation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import numpy as np


class Featurizer(ABC):
    """sklearn-style featurizer: ``fit`` learns, ``transform`` maps; fitted attributes end in ``_``.

    State is exported as a JSON-able ``meta`` dict plus named NumPy arrays, so bundles never need to
    unpickle a featurizer.
    """

    kind: ClassVar[str]

    @abstractmethod
    def fit(self, x: np.ndarray) -> Self:
        """Learn the mapping from the preprocessed matrix ``x`` (rows x features, float32)."""

    @abstractmethod
    def transform(self, x: np.ndarray) -> np.ndarray:
        """Map rows to the feature space (float32); deterministic, never refits.

        ``x`` may be row-major or column-major (batch scoring passes the transpose of a preprocessed
        block); a row's result must not depend on the layout.
        """

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        """Fit, then transform the same rows."""
        return self.fit(x).transform(x)

    @abstractmethod
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Return ``(meta, arrays)``; ``meta['kind']`` names the implementation."""

    @classmethod
    @abstractmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        """Rebuild the fitted featurizer from :meth:`get_state` output."""

    @property
    def history(self) -> list[dict[str, float]]:
        """Per-epoch training history (empty for featurizers that do not train iteratively)."""
        return []


class IdentityFeaturizer(Featurizer):
    """No featurization: cluster in the preprocessed space."""

    kind = "none"

    def fit(self, x: np.ndarray) -> Self:
        """Record the input width."""
        self.n_features_in_ = int(x.shape[1])
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Return the input as float32."""
        return np.asarray(x, dtype=np.float32)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Only the input width."""
        return {"kind": self.kind, "n_features_in": self.n_features_in_}, {}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:  # noqa: ARG003
        """Rebuild from the stored width."""
        obj = cls()
        obj.n_features_in_ = int(meta["n_features_in"])
        return obj
