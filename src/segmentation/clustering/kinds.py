"""Clusterer classes by kind: rebuild a saved clusterer, or fit a new one like a given one."""

from __future__ import annotations

from typing import Any

import numpy as np

from segmentation.clustering.base import Clusterer
from segmentation.clustering.centroid import (
    AgglomerativeClusterer,
    KMeansClusterer,
    MiniBatchKMeansClusterer,
)
from segmentation.clustering.density import DBSCANClusterer, HDBSCANClusterer
from segmentation.clustering.gmm import GMMClusterer

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


def clusterer_from_state(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], blob: bytes | None
) -> Clusterer:
    """Rebuild any fitted clusterer from its stored state."""
    return _CLASSES[meta["kind"]].from_state(meta, arrays, blob)


def refit_like(model: Clusterer, z: np.ndarray, seed: int) -> Clusterer:
    """Fit a new clusterer of the same kind and parameters (same k for k-based models) on other rows."""
    config = model.config
    if "n_clusters" in type(config).model_fields:
        config = config.model_copy(update={"n_clusters": model.n_clusters_})
    return _CLASSES[model.kind](config, seed=seed).fit(z)
