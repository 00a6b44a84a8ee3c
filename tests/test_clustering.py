"""Tests for the clusterers and the choice of k."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from numerics import (
    CONFIDENCE_ATOL,
    FLOAT32_EPS,
    assert_labels_equal_except_ties,
    assert_within,
    distance_margins,
    product_tolerance,
)
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, silhouette_score

from segmentation.clustering import (
    NOISE,
    Clusterer,
    DBSCANClusterer,
    clusterer_from_state,
    fit_clusterer,
    sampled_silhouette,
)
from segmentation.clustering.base import _size_order
from segmentation.clustering.centroid import _centroid_details
from segmentation.clustering.search import choose_k
from segmentation.config import (
    AgglomerativeConfig,
    DBSCANConfig,
    GMMConfig,
    HDBSCANConfig,
    KMeansConfig,
    KSearch,
    MiniBatchKMeansConfig,
)
from segmentation.features.pca import PCAFeaturizer

CENTERS = np.array([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0], [0.0, 8.0, 0.0], [0.0, 0.0, 8.0]])
# Unequal blob sizes so the size order is unambiguous.
SIZES = [600, 450, 300, 150]

CONFIGS: dict[str, Any] = {
    "kmeans": KMeansConfig(n_clusters=4),
    "minibatch_kmeans": MiniBatchKMeansConfig(n_clusters=4, batch_size=256),
    "gmm": GMMConfig(n_clusters=4),
    "hdbscan": HDBSCANConfig(min_cluster_size=30),
    "agglomerative": AgglomerativeConfig(n_clusters=4),
    "dbscan": DBSCANConfig(eps=1.0, min_samples=10),
}
DENSITY = {"hdbscan", "dbscan"}
Blobs = tuple[np.ndarray, np.ndarray]


def _blobs(seed: int, sizes: list[int] = SIZES) -> tuple[np.ndarray, np.ndarray]:
    z, y = make_blobs(n_samples=sizes, centers=CENTERS, cluster_std=0.5, random_state=seed)
    return z.astype(np.float32), y


@pytest.fixture(scope="module")
def train() -> tuple[np.ndarray, np.ndarray]:
    return _blobs(0)


@pytest.fixture(scope="module")
def fresh() -> tuple[np.ndarray, np.ndarray]:
    return _blobs(1, [200, 150, 100, 50])


@pytest.fixture(scope="module")
def fitted(train: tuple[np.ndarray, np.ndarray]) -> dict[str, Clusterer]:
    z, _ = train
    return {
        kind: fit_clusterer(z, z, cfg, seed=0, silhouette_sample=1000).model for kind, cfg in CONFIGS.items()
    }


def _ari(labels: np.ndarray, truth: np.ndarray, density: bool) -> float:
    keep = labels != NOISE if density else np.ones(len(labels), bool)
    assert keep.mean() > 0.8
    return adjusted_rand_score(truth[keep], labels[keep])


def _round_trip(model: Clusterer) -> Clusterer:
    meta, arrays, blob = model.get_state()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        loaded = {k: npz[k] for k in npz.files}
    return clusterer_from_state(json.loads(json.dumps(meta)), loaded, blob)


# ----------------------------------------------------------------------------------------- fitting
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_fits_separated_blobs(kind: str, fitted: dict[str, Clusterer], train: Blobs) -> None:
    model = fitted[kind]
    z, y = train
    assert model.labels_.shape == (len(z),)
    assert model.n_clusters_ == 4
    assert _ari(model.labels_, y, kind in DENSITY) >= 0.9


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_predicts_new_rows(kind: str, fitted: dict[str, Clusterer], fresh: Blobs) -> None:
    z_new, y_new = fresh
    labels = fitted[kind].predict(z_new)
    assert labels.shape == (len(z_new),)
    assert labels.dtype.kind == "i"
    assert _ari(labels, y_new, kind in DENSITY) >= 0.9


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_labels_are_size_ordered(
    kind: str, fitted: dict[str, Clusterer], train: tuple[np.ndarray, np.ndarray]
) -> None:
    labels = fitted[kind].labels_
    counts = np.bincount(labels[labels >= 0])
    assert len(counts) == 4
    assert list(counts) == sorted(counts, reverse=True)
    # Blob sizes differ a lot, so segment 0 is the largest blob (blob 0), segment 3 the smallest.
    _, y = train
    for segment, blob in enumerate(range(4)):
        assert np.bincount(labels[y == blob][labels[y == blob] >= 0]).argmax() == segment


@pytest.mark.parametrize("kind", sorted(DENSITY))
def test_density_noise_is_minus_one_and_reported(kind: str, train: tuple[np.ndarray, np.ndarray]) -> None:
    z, _ = train
    rng = np.random.default_rng(0)
    outliers = rng.uniform(30, 40, (20, 3)).astype(np.float32)
    data = np.vstack([z, outliers])
    result = fit_clusterer(data, data, CONFIGS[kind], seed=0, silhouette_sample=1000)
    labels = result.model.labels_
    assert (labels[-20:] == NOISE).all()
    assert labels.min() == NOISE
    assert set(np.unique(labels)) <= {NOISE, 0, 1, 2, 3}
    assert (result.model.predict(outliers) == NOISE).all()
    from segmentation.evaluation import evaluate_segments

    metrics = evaluate_segments(data, labels, silhouette_sample=1000)
    assert metrics["noise_fraction"] == pytest.approx((labels == NOISE).mean())
    assert metrics["noise_fraction"] >= 20 / len(data)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_predict_details_confidence_in_unit_interval(
    kind: str, fitted: dict[str, Clusterer], fresh: tuple[np.ndarray, np.ndarray]
) -> None:
    z_new, _ = fresh
    far = np.full((3, 3), 100.0, dtype=np.float32)
    labels, confidence, extra = fitted[kind].predict_details(np.vstack([z_new, far]))
    assert confidence.shape == labels.shape
    assert np.isfinite(confidence).all()
    assert (confidence >= 0).all()
    assert (confidence <= 1).all()
    assert np.median(confidence[: len(z_new)]) > 0.3
    if kind in {"kmeans", "minibatch_kmeans", "agglomerative"}:
        assert extra["distances"].shape == (len(labels), 4)
    if kind == "gmm":
        assert np.allclose(extra["probabilities"].sum(axis=1), 1.0)


@pytest.mark.parametrize("kind", ["kmeans", "gmm", "minibatch_kmeans", "agglomerative"])
def test_predict_on_training_rows_equals_labels(
    kind: str, fitted: dict[str, Clusterer], train: tuple[np.ndarray, np.ndarray]
) -> None:
    z, _ = train
    assert np.array_equal(fitted[kind].predict(z), fitted[kind].labels_)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_state_round_trip_predicts_identically(
    kind: str,
    fitted: dict[str, Clusterer],
    train: tuple[np.ndarray, np.ndarray],
    fresh: tuple[np.ndarray, np.ndarray],
) -> None:
    model = fitted[kind]
    clone = _round_trip(model)
    assert clone.kind == kind
    assert clone.n_clusters_ == model.n_clusters_
    for z in (train[0], fresh[0]):
        labels, confidence, _ = model.predict_details(z)
        labels2, confidence2, _ = clone.predict_details(z)
        assert np.array_equal(labels, labels2)
        assert np.allclose(confidence, confidence2)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_gmm_covariance_types_round_trip(covariance_type: str, train: tuple[np.ndarray, np.ndarray]) -> None:
    z, y = train
    cfg = GMMConfig(n_clusters=4, covariance_type=covariance_type, n_init=1)
    model = fit_clusterer(z, z, cfg, seed=0, silhouette_sample=500).model
    assert adjusted_rand_score(y, model.labels_) >= 0.9
    assert np.array_equal(model.predict(z), model.labels_)
    counts = np.bincount(model.labels_)
    assert list(counts) == sorted(counts, reverse=True)
    assert np.array_equal(_round_trip(model).predict(z), model.labels_)


def test_refit_dbscan_does_not_reuse_stale_index(train: tuple[np.ndarray, np.ndarray]) -> None:
    z, _ = train
    model = DBSCANClusterer(DBSCANConfig(eps=1.0, min_samples=10), seed=0).fit(z)
    shifted = z + 50.0
    model.fit(shifted)
    assert (model.labels_ >= 0).mean() > 0.9
    reference = DBSCANClusterer(model.config, seed=0).fit(shifted)
    assert np.array_equal(model.predict(shifted), reference.predict(shifted))


# ----------------------------------------------------------------------------------- k selection
@pytest.mark.parametrize("kind", ["kmeans", "gmm", "minibatch_kmeans", "agglomerative"])
def test_k_search_picks_four_and_returns_the_winner(kind: str, train: tuple[np.ndarray, np.ndarray]) -> None:
    z, _ = train
    base = {
        "kmeans": KMeansConfig,
        "gmm": GMMConfig,
        "minibatch_kmeans": MiniBatchKMeansConfig,
        "agglomerative": AgglomerativeConfig,
    }[kind]
    extra: dict[str, Any] = {} if kind == "agglomerative" else {"n_init": 1}
    if kind == "minibatch_kmeans":
        extra["batch_size"] = 256
    cfg = base(n_clusters=None, search=KSearch(k_min=2, k_max=6), **extra)
    result = fit_clusterer(z, z, cfg, seed=0, silhouette_sample=800)
    assert sorted(result.k_scores) == [2, 3, 4, 5, 6]
    assert all(v is not None for v in result.k_scores.values())
    assert result.model.n_clusters_ == 4
    best_k = max(result.k_scores, key=lambda k: result.k_scores[k])
    assert best_k == 4
    assert result.score == result.k_scores[4]
    # Four separated blobs: refits of k = 4 on subsamples agree exactly; it is stable and chosen.
    assert sorted(result.k_stability) == [2, 3, 4, 5, 6]
    assert result.k_stability[4] == pytest.approx(1.0)
    assert 4 in result.selection["stable_k"]
    assert result.selection["no_stable_k"] is False
    assert result.criterion == "silhouette among stable k"
    # The labels and score belong to the returned model, not to the last one fitted (k=6).
    assert result.labels is result.model.labels_ or np.array_equal(result.labels, result.model.labels_)
    assert len(np.unique(result.labels)) == 4
    assert result.score == pytest.approx(sampled_silhouette(z, result.labels, 800, 0))


def test_k_search_score_matches_full_silhouette_when_sample_covers_all(
    train: tuple[np.ndarray, np.ndarray],
) -> None:
    z, _ = train
    cfg = KMeansConfig(n_clusters=None, search=KSearch(k_min=3, k_max=5), n_init=1)
    result = fit_clusterer(z, z, cfg, seed=0, silhouette_sample=len(z))
    assert result.score == pytest.approx(silhouette_score(z, result.labels))
    assert np.array_equal(result.labels, result.model.labels_)


def test_k_search_uses_x_eval_space(train: tuple[np.ndarray, np.ndarray]) -> None:
    z, _ = train
    x_eval = np.hstack([z, z])  # a different (but consistent) evaluation space
    cfg = KMeansConfig(n_clusters=None, search=KSearch(k_min=3, k_max=5), n_init=1)
    result = fit_clusterer(z, x_eval, cfg, seed=0, silhouette_sample=len(z))
    assert result.score == pytest.approx(silhouette_score(x_eval, result.labels))


def test_fixed_n_clusters_skips_search(train: tuple[np.ndarray, np.ndarray]) -> None:
    z, _ = train
    result = fit_clusterer(
        z, z, KMeansConfig(n_clusters=3, search=KSearch(k_min=2, k_max=9)), seed=0, silhouette_sample=500
    )
    assert list(result.k_scores) == [3]
    assert result.model.n_clusters_ == 3
    assert np.array_equal(result.labels, result.model.labels_)


def test_density_models_have_no_k_scores(train: tuple[np.ndarray, np.ndarray]) -> None:
    z, _ = train
    result = fit_clusterer(z, z, CONFIGS["dbscan"], seed=0, silhouette_sample=500)
    assert result.k_scores == {}
    assert result.score is not None


def test_k_search_deterministic(train: tuple[np.ndarray, np.ndarray]) -> None:
    z, _ = train
    cfg = KMeansConfig(n_clusters=None, search=KSearch(k_min=3, k_max=4), n_init=1)
    a = fit_clusterer(z, z, cfg, seed=3, silhouette_sample=500)
    b = fit_clusterer(z, z, cfg, seed=3, silhouette_sample=500)
    # Exact: the same calls in one process. With 3+ OpenMP threads scikit-learn's k-means adds per-thread
    # sums in arrival order, so centroids may differ in the last bits; but on these separated blobs every
    # row's margin is above 0.3 for k = 3 and 4, so no label (nor a silhouette of the labels) can move.
    assert a.k_scores == b.k_scores
    assert a.k_stability == b.k_stability
    assert np.array_equal(a.labels, b.labels)


# ------------------------------------------------------------------------------- k rule: stability
SEARCH = KSearch(k_min=2, k_max=6, stability_threshold=0.8)


def test_choose_k_takes_the_best_silhouette_among_stable_k() -> None:
    silhouettes = {2: 0.30, 3: 0.45, 4: 0.40, 5: 0.41, 6: 0.20}
    stability = {2: 0.95, 3: 0.79, 4: 0.80, 5: 0.90, 6: 0.99}
    k, selection = choose_k(silhouettes, stability, SEARCH)
    assert k == 5  # k = 3 has the best silhouette but is not stable; 0.80 is exactly the threshold: eligible
    assert selection["stable_k"] == [2, 4, 5, 6]
    assert selection["no_stable_k"] is False
    assert selection["stability_threshold"] == 0.8
    assert (selection["k_min"], selection["k_max"]) == (2, 6)
    assert "at least 0.8" in selection["rule"]
    # Ties go to the smaller k.
    assert choose_k({3: 0.4, 4: 0.4}, {3: 0.9, 4: 0.9}, SEARCH)[0] == 3


def test_choose_k_falls_back_to_the_most_stable_k() -> None:
    k, selection = choose_k({2: 0.1, 3: 0.3, 4: 0.2}, {2: 0.5, 3: 0.6, 4: 0.7}, SEARCH)
    assert k == 4
    assert selection["no_stable_k"] is True
    assert selection["stable_k"] == []
    # Equal stability: the better silhouette.
    assert choose_k({2: 0.1, 3: 0.3}, {2: 0.5, 3: 0.5}, SEARCH)[0] == 3


def test_choose_k_without_stability_uses_the_silhouette_and_skips_unscored_k() -> None:
    k, selection = choose_k({2: None, 3: 0.2, 4: 0.3}, {}, SEARCH)
    assert k == 4
    assert selection["criterion"] == "silhouette"
    assert "stable_k" not in selection
    # A k with no silhouette (fewer than two clusters) is never chosen, however stable.
    assert choose_k({2: None, 3: 0.2}, {2: 1.0, 3: 0.5}, SEARCH)[0] == 3
    with pytest.raises(ValueError, match=r"no k in 2\.\.6"):
        choose_k({2: None}, {2: 1.0}, SEARCH)


def test_structureless_data_has_no_stable_k_and_the_most_stable_is_chosen() -> None:
    z = np.random.default_rng(0).normal(size=(600, 6))
    cfg = KMeansConfig(n_clusters=None, search=KSearch(k_min=2, k_max=5), n_init=1)
    result = fit_clusterer(z, z, cfg, seed=0, silhouette_sample=600)
    assert result.selection["no_stable_k"] is True
    stability = {k: v for k, v in result.k_stability.items() if v is not None}
    assert max(stability.values()) < 0.8
    assert result.model.n_clusters_ == max(stability, key=lambda k: stability[k])


def test_per_k_stability_is_bounded_and_can_be_switched_off(train: tuple[np.ndarray, np.ndarray]) -> None:
    z, _ = train
    capped = KSearch(k_min=3, k_max=4, stability_rows=300, stability_resamples=3)
    result = fit_clusterer(z, z, KMeansConfig(search=capped, n_init=1), seed=0, silhouette_sample=500)
    assert result.selection["stability_rows"] == 300  # of the 1,500 search rows
    assert result.selection["stability_resamples"] == 3
    off = KMeansConfig(search=KSearch(k_min=3, k_max=4, stability_resamples=0), n_init=1)
    result = fit_clusterer(z, z, off, seed=0, silhouette_sample=500)
    assert result.k_stability == {}
    assert result.criterion == "silhouette"
    assert result.model.n_clusters_ == 4
    with pytest.raises(ValueError, match="stability_resamples must be 0"):
        KSearch(stability_resamples=1)


# ------------------------------------------------------------------------------------ sampled fits
@pytest.mark.parametrize("kind", ["agglomerative", "dbscan", "hdbscan"])
def test_sampled_fit_labels_every_row(kind: str, train: tuple[np.ndarray, np.ndarray]) -> None:
    z, y = train
    if kind == "agglomerative":
        cfg: Any = AgglomerativeConfig(n_clusters=4, max_fit_rows=300)
    elif kind == "dbscan":
        cfg = DBSCANConfig(eps=1.0, min_samples=5, max_fit_rows=300)
    else:
        cfg = HDBSCANConfig(min_cluster_size=15, max_fit_rows=300)
    model = fit_clusterer(z, z, cfg, seed=0, silhouette_sample=500).model
    assert model.labels_.shape == (len(z),)
    if kind == "agglomerative":
        assert (model.labels_ >= 0).all()
    assert (model.labels_ >= 0).mean() > 0.9
    assert _ari(model.labels_, y, kind != "agglomerative") >= 0.9


# ---------------------------------------------------------------------------------------- helpers
def test_size_order_mapping() -> None:
    raw = np.array([2, 2, 2, 0, 1, 1, -1])
    mapping = _size_order(raw, 3)
    assert mapping.tolist() == [2, 1, 0]
    ties = _size_order(np.array([0, 1, 2]), 3)
    assert ties.tolist() == [0, 1, 2]


def test_sampled_silhouette_none_for_single_cluster() -> None:
    x = np.random.default_rng(0).normal(size=(50, 2))
    assert sampled_silhouette(x, np.zeros(50, int), 100, 0) is None
    assert sampled_silhouette(x, np.full(50, NOISE), 100, 0) is None


def test_shared_distance_silhouettes_equal_one_at_a_time() -> None:
    from segmentation.clustering import sampled_silhouettes

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 6)).astype(np.float32)
    x[:1000] += 3.0
    labelings = [np.r_[np.zeros(1000, int), rng.integers(1, k, 2000)] for k in (2, 3, 5)]
    labelings.append(np.r_[np.zeros(2999, int), [1]])  # a singleton cluster
    labelings.append(np.where(rng.random(3000) < 0.1, NOISE, labelings[1]))  # noise: scored on its own rows
    labelings.append(np.zeros(3000, int))  # one cluster: no silhouette
    shared = sampled_silhouettes(x, labelings, 3000, 4)
    single = [sampled_silhouette(x, labels, 3000, 4) for labels in labelings]
    assert shared[-1] is None
    assert single[-1] is None
    assert shared[:-1] == pytest.approx(single[:-1], rel=1e-5)
    sampled = sampled_silhouettes(x, labelings[:3], 800, 9)
    assert sampled == pytest.approx(
        [sampled_silhouette(x, labels, 800, 9) for labels in labelings[:3]], rel=1e-5
    )


# ------------------------------------------------------------------------------ nearest-centroid sweep
def test_centroid_details_match_exact_distances_in_either_layout() -> None:
    rng = np.random.default_rng(5)
    centers = rng.normal(0, 3, (7, 16)).astype(np.float32)
    z = rng.normal(0, 3, (5000, 16)).astype(np.float32)
    labels, confidence, dist = _centroid_details(z, centers)

    exact = np.sqrt(((z[:, None, :].astype(np.float64) - centers[None, :, :]) ** 2).sum(-1))
    margins = distance_margins(exact)
    # float32 against float64: equal labels except at ties, distances and margins to float32 rounding.
    assert_labels_equal_except_ties(labels, exact.argmin(axis=1), margins)
    np.testing.assert_allclose(dist, exact, rtol=0, atol=1e-4)  # |d| <= 30: 1e-4 is ~30 eps relative
    np.testing.assert_allclose(confidence, margins, rtol=0, atol=CONFIDENCE_ATOL)
    # Row-major (training, serving) and column-major (batch scoring) features give the same bits: the
    # sweep works on a (dimensions, rows) copy either way, so both run the identical BLAS call.
    columns = _centroid_details(np.asfortranarray(z), centers)
    for mine, theirs in zip(columns, (labels, confidence, dist), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    # Fewer rows is another product shape, which a BLAS kernel may sum in another order.
    part = _centroid_details(z[:1234], centers)
    assert_labels_equal_except_ties(part[0], labels[:1234], confidence[:1234])
    np.testing.assert_allclose(part[1], confidence[:1234], rtol=0, atol=CONFIDENCE_ATOL)
    np.testing.assert_allclose(part[2], dist[:1234], rtol=0, atol=1e-4)


def test_centroid_details_ties_go_to_the_lower_index_with_zero_confidence() -> None:
    centers = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 5.0]], dtype=np.float32)
    labels, confidence, _ = _centroid_details(np.array([[0.0, 0.0], [0.9, 0.0]], dtype=np.float32), centers)
    assert labels.tolist() == [0, 0]
    assert confidence[0] == 0.0
    assert 0.0 < confidence[1] < 1.0
    single, ones, _ = _centroid_details(np.zeros((3, 2), np.float32), centers[:1])
    assert single.tolist() == [0, 0, 0]
    assert ones.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("whiten", [False, True])
def test_pca_projection_is_the_centred_product_in_either_layout(whiten: bool) -> None:
    rng = np.random.default_rng(8)
    x = (rng.normal(0, 1, (70_000, 12)) @ rng.normal(0, 1, (12, 12)) + 3.0).astype(np.float32)
    pca = PCAFeaturizer(n_components=5, whiten=whiten).fit(x)
    z = pca.transform(x)
    expected = (x.astype(np.float64) - pca.mean_) @ pca.components_.T.astype(np.float64)
    if whiten:
        expected /= np.sqrt(pca.explained_variance_)
    assert z.dtype == np.float32
    assert np.allclose(z, expected, atol=1e-3 * np.abs(expected).max())
    # A column-major input (the transpose of a preprocessed block) is projected by another BLAS call
    # (P.T @ x.T): the same products summed in another order on some kernels, so equal to float32 rounding
    # of |x| @ |P| plus the offset; forgetting the centring or the whitening would be off by far more.
    projection = pca.components_.T.astype(np.float64)
    if whiten:
        projection /= np.sqrt(pca.explained_variance_.astype(np.float64))
    offset = np.abs(pca.mean_.astype(np.float64) @ projection)
    bound = product_tolerance(x, projection) + FLOAT32_EPS * (np.abs(z) + offset)
    columns = np.ascontiguousarray(x.T)
    assert_within(pca.transform(columns.T), z, bound, "column-major projection")
