"""The contract every clusterer meets, and the types the clusterers and the k search share.

Segment IDs are ordered by size (0 is the largest) so they read the same way across clusterers;
noise is always -1.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np

from segmentation.config import (
    AgglomerativeConfig,
    DBSCANConfig,
    GMMConfig,
    HDBSCANConfig,
    KMeansConfig,
    MiniBatchKMeansConfig,
)

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


# The configuration type of each kind. The classes themselves are registered by kind in
# ``segmentation.clustering.kinds``, which imports every model module.
_CONFIGS: dict[str, type] = {
    "kmeans": KMeansConfig,
    "minibatch_kmeans": MiniBatchKMeansConfig,
    "gmm": GMMConfig,
    "hdbscan": HDBSCANConfig,
    "agglomerative": AgglomerativeConfig,
    "dbscan": DBSCANConfig,
}


@dataclass
class ClusterResult:
    """The winning model together with its own labels and score, plus the score of every k tried.

    ``k_scores`` is the silhouette of every k tried, ``k_stability`` its stability (mean pairwise ARI
    between subsample refits; empty when not measured) and ``selection`` how the k was chosen (the rule,
    its threshold, the search range: see :func:`segmentation.clustering.search.choose_k`).
    """

    model: Clusterer
    labels: np.ndarray
    score: float | None
    k_scores: dict[int, float | None] = field(default_factory=dict)
    criterion: str = "silhouette"
    alignment: dict[str, Any] | None = None  # set when IDs were matched to a previous model
    k_stability: dict[int, float | None] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
