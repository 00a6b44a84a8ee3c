"""Featurizers: map the preprocessed matrix to the space the clusterer works in."""

from __future__ import annotations

from typing import Any

import numpy as np

from segmentation.config import AutoencoderConfig, FeaturizeConfig, NoFeaturizerConfig, PCAConfig
from segmentation.features.base import Featurizer, IdentityFeaturizer
from segmentation.features.pca import PCAFeaturizer


def build_featurizer(config: FeaturizeConfig, seed: int) -> Featurizer:
    """Instantiate the (unfitted) featurizer a config section describes."""
    if isinstance(config, NoFeaturizerConfig):
        return IdentityFeaturizer()
    if isinstance(config, PCAConfig):
        return PCAFeaturizer(
            n_components=config.n_components, variance=config.variance, whiten=config.whiten, seed=seed
        )
    if isinstance(config, AutoencoderConfig):
        # Imported lazily: torch and Lightning take seconds to import and are only needed here.
        from segmentation.features.autoencoder import AutoencoderFeaturizer

        return AutoencoderFeaturizer(config=config, seed=seed)
    raise TypeError(f"unsupported featurizer config {type(config).__name__}")


def featurizer_from_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Featurizer:
    """Rebuild a fitted featurizer from what :meth:`Featurizer.get_state` returned."""
    kind = meta["kind"]
    if kind == "none":
        return IdentityFeaturizer.from_state(meta, arrays)
    if kind == "pca":
        return PCAFeaturizer.from_state(meta, arrays)
    if kind == "autoencoder":
        from segmentation.features.autoencoder import AutoencoderFeaturizer

        return AutoencoderFeaturizer.from_state(meta, arrays)
    raise ValueError(f"unknown featurizer kind {kind!r} in bundle")


__all__ = ["Featurizer", "build_featurizer", "featurizer_from_state"]
