from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from segmentation.clustering import fit_clusterer
from segmentation.config import HDBSCANConfig, KMeansConfig
from segmentation.evaluation import bootstrap_stability


def _fit(z: np.ndarray, config):
    return fit_clusterer(z, z, config, seed=0, silhouette_sample=2000)


def test_well_separated_segments_are_stable() -> None:
    z, _ = make_blobs(1500, n_features=4, centers=4, cluster_std=0.6, random_state=3)
    result = _fit(z, KMeansConfig(n_clusters=4))
    stability = bootstrap_stability(z, result.labels, result.model, resamples=6, seed=1)
    assert stability["ari_pairwise_mean"] == pytest.approx(1.0, abs=0.02)
    assert stability["ari_vs_model_mean"] == pytest.approx(1.0, abs=0.02)
    assert set(stability["jaccard_per_segment"]) == {"0", "1", "2", "3"}
    assert stability["jaccard_min"] > 0.95
    assert stability["sample_size"] == 1500


def test_structureless_data_is_less_stable_and_values_are_bounded() -> None:
    z = np.random.default_rng(0).normal(size=(1200, 6))
    result = _fit(z, KMeansConfig(n_clusters=7))
    stability = bootstrap_stability(z, result.labels, result.model, resamples=5, fraction=0.5, seed=2)
    for key in ("ari_pairwise_mean", "ari_pairwise_min", "ari_vs_model_mean"):
        assert -1.0 <= stability[key] <= 1.0
    assert stability["ari_pairwise_min"] < 0.9
    assert all(0.0 <= v <= 1.0 for v in stability["jaccard_per_segment"].values())


def test_density_models_and_sample_cap() -> None:
    z, _ = make_blobs(3000, n_features=3, centers=3, cluster_std=0.4, random_state=5)
    result = _fit(z, HDBSCANConfig(min_cluster_size=50))
    stability = bootstrap_stability(z, result.labels, result.model, resamples=3, sample_size=1000, seed=0)
    assert stability["sample_size"] == 1000
    assert stability["ari_pairwise_mean"] > 0.9
    assert stability["jaccard_min"] > 0.9


def test_same_seed_same_stability() -> None:
    z, _ = make_blobs(600, n_features=3, centers=3, random_state=1)
    result = _fit(z, KMeansConfig(n_clusters=3))
    a = bootstrap_stability(z, result.labels, result.model, resamples=3, seed=9)
    # Exact: the same calls in one process. scikit-learn's k-means may differ in the centroids' last bits
    # with 3+ OpenMP threads, but every row of these blobs is far from a tie (relative margin above 0.5
    # under the fitted centroids): no label can move.
    assert a == bootstrap_stability(z, result.labels, result.model, resamples=3, seed=9)
