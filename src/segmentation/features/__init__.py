"""Featurizers: map the preprocessed matrix to the space the clusterer works in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from segmentation.config import AutoencoderConfig, FeaturizeConfig, NoFeaturizerConfig, PCAConfig
from segmentation.errors import requires_extra
from segmentation.features.base import Featurizer, IdentityFeaturizer
from segmentation.features.pca import PCAFeaturizer

if TYPE_CHECKING:
    from segmentation.features.autoencoder import AutoencoderFeaturizer


def _autoencoder_class() -> type[AutoencoderFeaturizer]:
    """The autoencoder featurizer, imported on first use: torch and Lightning take seconds to import.

    They are the ``autoencoder`` extra, which a serving install leaves out.

    Raises:
        MissingExtraError: torch or Lightning is not installed (names the extra to install).
    """
    with requires_extra("autoencoder", "the autoencoder featurizer (PyTorch Lightning)"):
        from segmentation.features.autoencoder import AutoencoderFeaturizer
    return AutoencoderFeaturizer


def build_featurizer(config: FeaturizeConfig, seed: int) -> Featurizer:
    """Instantiate the (unfitted) featurizer a config section describes."""
    if isinstance(config, NoFeaturizerConfig):
        return IdentityFeaturizer()
    if isinstance(config, PCAConfig):
        return PCAFeaturizer(
            n_components=config.n_components, variance=config.variance, whiten=config.whiten, seed=seed
        )
    if isinstance(config, AutoencoderConfig):
        return _autoencoder_class()(config=config, seed=seed)
    raise TypeError(f"unsupported featurizer config {type(config).__name__}")


def featurizer_from_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Featurizer:
    """Rebuild a fitted featurizer from what :meth:`Featurizer.get_state` returned."""
    kind = meta["kind"]
    if kind == "none":
        return IdentityFeaturizer.from_state(meta, arrays)
    if kind == "pca":
        return PCAFeaturizer.from_state(meta, arrays)
    if kind == "autoencoder":
        return _autoencoder_class().from_state(meta, arrays)
    raise ValueError(f"unknown featurizer kind {kind!r} in bundle")


__all__ = ["Featurizer", "build_featurizer", "featurizer_from_state"]
