"""Tests for the segment quality metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from segmentation.clustering import NOISE
from segmentation.evaluation import between_ss_share, evaluate_segments

KEYS = {
    "n_rows",
    "n_clusters",
    "noise_fraction",
    "segment_sizes",
    "segment_shares",
    "min_segment_share",
    "max_segment_share",
    "silhouette_sample_size",
    "metrics_sample_size",
    "evaluation_space",
    "silhouette",
    "davies_bouldin",
    "calinski_harabasz",
    "between_ss_share",
}


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(
        n_samples=[500, 300, 200], centers=[[0, 0], [6, 0], [0, 6]], cluster_std=0.6, random_state=0
    )
    return x, y


def test_metric_keys_and_shares(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = blobs
    m = evaluate_segments(x, y, silhouette_sample=5000)
    assert set(m) == KEYS
    assert m["n_rows"] == 1000
    assert m["n_clusters"] == 3
    assert m["noise_fraction"] == 0.0
    assert m["segment_sizes"] == {"0": 500, "1": 300, "2": 200}
    assert sum(m["segment_shares"].values()) == pytest.approx(1.0)
    assert m["segment_shares"]["0"] == pytest.approx(0.5)
    assert m["min_segment_share"] == pytest.approx(0.2)
    assert m["max_segment_share"] == pytest.approx(0.5)
    assert m["evaluation_space"] == "preprocessed"
    # With the sample covering every row the metrics equal sklearn's exact values.
    assert m["silhouette_sample_size"] == 1000
    assert m["silhouette"] == pytest.approx(silhouette_score(x, y))
    assert m["davies_bouldin"] == pytest.approx(davies_bouldin_score(x, y))
    assert m["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(x, y))


def test_noise_is_excluded(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = blobs
    labels = y.copy()
    labels[::10] = NOISE
    m = evaluate_segments(x, labels, silhouette_sample=5000)
    n_noise = int((labels == NOISE).sum())
    assert n_noise == 100
    assert "-1" not in m["segment_sizes"]
    assert "-1" not in m["segment_shares"]
    assert m["n_clusters"] == 3
    assert sum(m["segment_sizes"].values()) + n_noise == m["n_rows"]
    assert m["noise_fraction"] == pytest.approx(0.1)
    assert sum(m["segment_shares"].values()) + m["noise_fraction"] == pytest.approx(1.0)
    keep = labels != NOISE
    assert m["silhouette_sample_size"] == int(keep.sum())
    assert m["silhouette"] == pytest.approx(silhouette_score(x[keep], labels[keep]))
    assert m["davies_bouldin"] == pytest.approx(davies_bouldin_score(x[keep], labels[keep]))
    assert m["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(x[keep], labels[keep]))


def test_single_cluster_has_no_silhouette(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = blobs
    m = evaluate_segments(x, np.zeros(len(x), dtype=np.int64))
    assert m["n_clusters"] == 1
    assert m["silhouette"] is None
    assert m["davies_bouldin"] is None
    assert m["calinski_harabasz"] is None
    assert m["segment_shares"] == {"0": 1.0}


def test_one_cluster_plus_noise_has_no_silhouette(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = blobs
    labels = np.zeros(len(x), dtype=np.int64)
    labels[:40] = NOISE
    m = evaluate_segments(x, labels)
    assert m["silhouette"] is None
    assert m["noise_fraction"] == pytest.approx(0.04)


def test_all_noise(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = blobs
    m = evaluate_segments(x, np.full(len(x), NOISE, dtype=np.int64))
    assert m["n_clusters"] == 0
    assert m["noise_fraction"] == 1.0
    assert m["segment_sizes"] == {}
    assert m["min_segment_share"] == 0.0
    assert m["silhouette"] is None
    assert m["silhouette_sample_size"] == 0


def test_silhouette_sample_size_reported(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = blobs
    m = evaluate_segments(x, y, silhouette_sample=200, seed=1)
    assert m["silhouette_sample_size"] == 200
    assert m["silhouette"] is not None
    assert m["silhouette"] == pytest.approx(silhouette_score(x, y), abs=0.05)


def test_deterministic_for_fixed_seed(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = blobs
    a = evaluate_segments(x, y, z=x[:, :1], silhouette_sample=150, seed=7)
    b = evaluate_segments(x, y, z=x[:, :1], silhouette_sample=150, seed=7)
    assert a == b
    c = evaluate_segments(x, y, silhouette_sample=150, seed=8)
    assert c["silhouette"] != a["silhouette"]


def test_feature_space_silhouette(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = blobs
    z = x * 3.0 + 1.0
    m = evaluate_segments(x, y, z=z, silhouette_sample=5000)
    assert m["silhouette_feature_space"] == pytest.approx(silhouette_score(z, y))
    assert "silhouette_feature_space" not in evaluate_segments(x, y)


def test_davies_bouldin_and_calinski_use_a_seeded_sample_on_large_tables(
    blobs: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = blobs
    full = evaluate_segments(x, y, silhouette_sample=500)
    sampled = evaluate_segments(x, y, silhouette_sample=500, metrics_sample=1000, seed=3)
    assert full["metrics_sample_size"] == len(x)
    assert sampled["metrics_sample_size"] == 1000
    assert sampled == evaluate_segments(x, y, silhouette_sample=500, metrics_sample=1000, seed=3)
    # Well-separated blobs: a 1,000-row sample estimates both indices closely; sizes still count all rows.
    assert abs(sampled["davies_bouldin"] - full["davies_bouldin"]) < 0.1 * full["davies_bouldin"]
    assert sampled["segment_sizes"] == full["segment_sizes"]


def test_between_ss_share_groups_one_hot_columns_and_leaves_noise_out() -> None:
    # Segments differ on "a" only by 1 unit and on the one-hot "c=x"/"c=y" pair by 2 units each; "b" is flat.
    labels = np.array([0, 0, 1, 1, NOISE])
    x = np.array(
        [
            [0.0, 5.0, 1.0, 0.0],
            [0.0, 5.0, 1.0, 0.0],
            [1.0, 5.0, -1.0, 2.0],
            [1.0, 5.0, -1.0, 2.0],
            [99.0, 99.0, 99.0, 99.0],  # noise: would dominate every column if it counted
        ]
    )
    shares = between_ss_share(x, labels, ["a", "b", "c=x", "c=y"])
    # Between-segment sums of squares: a 4 * 0.5^2 = 1, c=x 4 * 1^2 = 4, c=y 4 * 1^2 = 4, b 0.
    assert shares == pytest.approx({"c": 8 / 9, "a": 1 / 9, "b": 0.0})
    assert list(shares) == ["c", "a", "b"]  # largest first
    assert between_ss_share(x, labels) == pytest.approx(
        {"column 2": 4 / 9, "column 3": 4 / 9, "column 0": 1 / 9, "column 1": 0.0}
    )
    assert between_ss_share(x, np.zeros(5, dtype=np.int64)) == {}  # one segment: nothing between
    with pytest.raises(ValueError, match="3 feature names for 4 columns"):
        between_ss_share(x, labels, ["a", "b", "c"])


def test_between_ss_share_in_metrics(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = blobs  # blob centres (0, 0), (6, 0), (0, 6): both columns separate them
    shares = evaluate_segments(x, y, feature_names=["spend", "visits"])["between_ss_share"]
    assert set(shares) == {"spend", "visits"}
    assert sum(shares.values()) == pytest.approx(1.0)
