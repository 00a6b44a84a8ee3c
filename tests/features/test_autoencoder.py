"""Tests for the Lightning autoencoder featurizer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from segmentation.config import AutoencoderConfig
from segmentation.features import build_featurizer, featurizer_from_state
from segmentation.features.autoencoder import AutoencoderFeaturizer


def _blobs(n: int = 600, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian blobs, standardised."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(3, d))
    labels = rng.integers(0, 3, size=n)
    x = centers[labels] + rng.normal(size=(n, d))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x.astype(np.float32), labels


def _config(**overrides: object) -> AutoencoderConfig:
    params: dict[str, object] = {
        "hidden_sizes": (32, 16),
        "encoding_dim": 2,
        "learning_rate": 1e-2,
        "batch_size": 64,
        "max_epochs": 15,
        "patience": 50,
        "val_fraction": 0.2,
        "max_train_rows": 1000,
    }
    params.update(overrides)
    return AutoencoderConfig.model_validate(params)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return _blobs()


@pytest.fixture(scope="module")
def fitted(blobs: tuple[np.ndarray, np.ndarray]) -> AutoencoderFeaturizer:
    return AutoencoderFeaturizer(_config(), seed=7).fit(blobs[0])


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_losses_non_negative_and_decreasing(blobs, loss):
    f = AutoencoderFeaturizer(_config(loss=loss), seed=3).fit(blobs[0])
    history = f.history
    assert len(history) == 15
    assert [row["epoch"] for row in history] == list(range(1, 16))
    for row in history:
        assert row["train_loss"] >= 0.0
        assert np.isfinite(row["val_loss"])
        assert row["val_loss"] >= 0.0
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert f.stopped_epoch_ == 15
    assert f.best_val_loss_ == pytest.approx(min(row["val_loss"] for row in history))


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_other_optimizers_train(blobs, optimizer):
    cfg = _config(optimizer=optimizer, activation="gelu", weight_decay=1e-4, max_epochs=5)
    history = AutoencoderFeaturizer(cfg, seed=0).fit(blobs[0]).history
    assert len(history) == 5
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_history_empty_before_fit():
    assert AutoencoderFeaturizer(_config()).history == []


def test_same_seed_is_bit_identical(blobs, fitted):
    # Bit-identical within one process: the same seeded operations on the same torch CPU kernels
    # (ATEN_CPU_CAPABILITY) and thread count. Another machine or thread count may round differently.
    again = AutoencoderFeaturizer(_config(), seed=7).fit(blobs[0])
    assert again.history == fitted.history
    assert np.array_equal(again.transform(blobs[0]), fitted.transform(blobs[0]))
    _, a = fitted.get_state()
    _, b = again.get_state()
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_different_seed_gives_different_weights(blobs, fitted):
    other = AutoencoderFeaturizer(_config(max_epochs=2), seed=8).fit(blobs[0])
    _, a = fitted.get_state()
    _, b = other.get_state()
    assert not all(np.array_equal(a[k], b[k]) for k in a)


def test_state_round_trip(blobs, fitted):
    meta, arrays = fitted.get_state()
    json.dumps(meta)
    assert meta["kind"] == "autoencoder"
    assert meta["n_features_in"] == 12
    assert meta["config"]["encoding_dim"] == 2
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    restored = AutoencoderFeaturizer.from_state(json.loads(json.dumps(meta)), arrays)
    assert np.array_equal(restored.transform(blobs[0]), fitted.transform(blobs[0]))
    assert restored.history == fitted.history
    via_registry = featurizer_from_state(meta, arrays)
    assert np.array_equal(via_registry.transform(blobs[0][:50]), fitted.transform(blobs[0][:50]))


def test_transform_is_deterministic_and_does_not_refit(blobs, fitted):
    _, before = fitted.get_state()
    first = fitted.transform(blobs[0])
    second = fitted.transform(blobs[0])
    assert np.array_equal(first, second)
    # Column-major rows (batch scoring hands over the transpose of a preprocessed block): same bits, as
    # transform copies each batch to C order first, so the encoder runs on identical tensors.
    assert np.array_equal(fitted.transform(np.asfortranarray(blobs[0])), first)
    _, after = fitted.get_state()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_early_stopping_stops_before_max_epochs():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(200, 12)).astype(np.float32)  # nothing to learn: val loss soon stalls
    cfg = _config(patience=1, max_epochs=300, learning_rate=5e-2, batch_size=32, val_fraction=0.3)
    f = AutoencoderFeaturizer(cfg, seed=0).fit(noise)
    assert len(f.history) < 300
    assert f.stopped_epoch_ == len(f.history)
    assert f.best_val_loss_ == pytest.approx(min(row["val_loss"] for row in f.history))


def test_output_shape_dtype_and_blob_separation(blobs, fitted):
    x, labels = blobs
    codes = fitted.transform(x.astype(np.float64))
    assert codes.shape == (len(x), 2)
    assert codes.dtype == np.float32
    assert np.isfinite(codes).all()
    predicted = KMeans(n_clusters=3, n_init=10, random_state=0).fit_predict(codes)
    assert adjusted_rand_score(labels, predicted) >= 0.9


def test_max_train_rows_sampling_and_build_featurizer(blobs):
    f = build_featurizer(_config(max_train_rows=100, max_epochs=2), seed=1)
    assert isinstance(f, AutoencoderFeaturizer)
    f.fit(blobs[0])
    assert f.transform(blobs[0]).shape == (600, 2)


def test_transform_rejects_wrong_width(fitted):
    with pytest.raises(ValueError, match="12 columns"):
        fitted.transform(np.zeros((3, 5), dtype=np.float32))


def test_transform_before_fit_raises():
    with pytest.raises(RuntimeError, match="not fitted"):
        AutoencoderFeaturizer(_config()).transform(np.zeros((3, 12), dtype=np.float32))
