"""Segment IDs stay with the same customers across retrains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numerics import assert_labels_equal_except_ties, decision_margins

from segmentation.alignment import align_by_centroids, align_by_overlap
from segmentation.bundle import load_bundle, save_bundle
from segmentation.clustering import fit_clusterer
from segmentation.config import load_config
from segmentation.data.synthetic import make_customers
from segmentation.stages.assemble import assemble_model
from segmentation.stages.evaluate import evaluate
from segmentation.stages.fit import align_segments, fit_features, fit_preprocessing, fit_segments
from segmentation.stages.load import validate_table


def test_overlap_recovers_a_permutation_and_keeps_noise() -> None:
    rng = np.random.default_rng(0)
    previous = rng.integers(-1, 4, 2000)
    permutation = np.array([2, 0, 3, 1])
    current = np.where(previous >= 0, permutation[np.maximum(previous, 0)], -1)
    alignment = align_by_overlap(previous, current, 4)
    assert alignment.mapping[permutation].tolist() == [0, 1, 2, 3]
    assert alignment.agreement == 1.0
    assert alignment.new_segments == []
    assert alignment.retired == []


def test_more_segments_take_new_ids_and_fewer_retire_old_ones() -> None:
    previous = np.repeat([0, 1, 2], [50, 30, 20])
    split = np.repeat([1, 0, 2, 3], [50, 20, 10, 20])  # previous 1 split into new 0 and 2
    more = align_by_overlap(previous, split, 4)
    assert more.mapping.tolist() == [1, 0, 3, 2]  # new 0 (20 of previous 1) keeps ID 1, new 2 is new
    assert more.new_segments == [3]
    merged = np.repeat([0, 1], [50, 50])  # previous 1 and 2 merged
    fewer = align_by_overlap(previous, merged, 2)
    assert fewer.mapping.tolist() == [0, 1]
    assert fewer.retired == [2]


def test_centroid_matching_uses_shared_features() -> None:
    previous = pd.DataFrame([[1.0, 0.0, 9.0], [0.0, 1.0, 9.0]], index=[0, 1], columns=["a", "b", "gone"])
    current = pd.DataFrame([[0.1, 0.9, 5.0], [0.9, 0.1, 5.0]], index=[0, 1], columns=["a", "b", "new"])
    alignment = align_by_centroids(previous, current)
    assert alignment.mapping.tolist() == [1, 0]
    with pytest.raises(ValueError, match="shares no feature"):
        align_by_centroids(previous[["gone"]], current[["new"]])


@pytest.mark.parametrize(
    "override",
    ["kmeans", "minibatch_kmeans", "agglomerative", "gmm", "hdbscan", "dbscan"],
)
def test_relabel_renames_segments_without_moving_customers(override: str) -> None:
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [8, 0], [0, 8]], dtype=np.float32)
    z = np.vstack([c + rng.normal(size=(200, 2)) for c in centres]).astype(np.float32)
    extra = {"dbscan": ["cluster.eps=1.5"], "hdbscan": ["cluster.min_cluster_size=20"]}.get(override, [])
    config = load_config(overrides=[f"cluster={override}", *extra])
    if override not in {"hdbscan", "dbscan"}:
        config = load_config(overrides=[f"cluster={override}", "cluster.n_clusters=3"])
    model = fit_clusterer(z, z, config.cluster, seed=0, silhouette_sample=600).model
    assert model.n_clusters_ == 3
    details = model.predict_details(z)
    before_fit, before = model.labels_.copy(), details[0]
    mapping = np.array([2, 0, 1])
    model.relabel(mapping)
    expected = np.where(before >= 0, mapping[np.maximum(before, 0)], -1)
    # Reordered centroids (or GMM components) are swept in another order, so a row at a tie may go to
    # the other candidate; density models only look labels up (infinite margin): exact for them.
    assert_labels_equal_except_ties(model.predict(z), expected, decision_margins(details))
    assert np.array_equal(model.labels_, np.where(before_fit >= 0, mapping[np.maximum(before_fit, 0)], -1))
    with pytest.raises(ValueError, match="permutation"):
        model.relabel(np.array([0, 0, 1]))


def _fit(frame: pd.DataFrame, seed: int):
    config = load_config(overrides=["cluster.n_clusters=4", f"seed={seed}"])
    table = validate_table(frame, config.data, source="t", seed=seed)
    pre, x = fit_preprocessing(table, config.preprocess, float32=True, seed=seed)
    featurizer, z = fit_features(x, config.featurize, seed=seed)
    result = fit_segments(z, x, config.cluster, seed=seed, silhouette_sample=2000)
    metrics = evaluate(
        x,
        z,
        result,
        featurizer,
        config=config.model_copy(
            update={"evaluate": config.evaluate.model_copy(update={"stability_resamples": 0})}
        ),
    )
    model = assemble_model(
        table, pre, featurizer, result, x, metrics, config=config, data_hash="h", source="t"
    )
    return table, pre, featurizer, x, result, model


def test_retrain_on_a_reshuffled_copy_keeps_ids_even_when_size_order_changes(tmp_path: Path) -> None:
    frame, _ = make_customers(2400, 12, 4, seed=5, separation=5.0)
    _, _, _, _, first, fitted = _fit(frame, seed=0)
    previous = load_bundle(save_bundle(fitted, tmp_path / "bundle"))
    ids = frame["customer_id"].to_numpy()
    before = pd.Series(first.labels, index=ids)
    # Reshuffle, and drop two thirds of the largest segment so that it is no longer the largest:
    # size-ordered IDs would change, alignment must bring them back.
    rng = np.random.default_rng(9)
    keep = (before.to_numpy() != 0) | (rng.random(len(frame)) < 1 / 3)
    shuffled = frame[keep].sample(frac=1.0, random_state=4).reset_index(drop=True)
    table, pre, featurizer, x, result, _ = _fit(shuffled, seed=11)
    unaligned = pd.Series(result.labels, index=shuffled["customer_id"].to_numpy())
    common = unaligned.index
    assert (unaligned != before[common]).mean() > 0.2  # without alignment, IDs moved
    aligned = align_segments(result, table, x, pre.feature_names_out_, previous, reference="previous", seed=0)
    after = pd.Series(aligned.labels, index=shuffled["customer_id"].to_numpy())
    assert (after == before[common]).mean() > 0.99
    assert aligned.alignment["method"] == "label_overlap"
    assert aligned.alignment["agreement"] > 0.99
    # The model itself carries the new IDs: it predicts what the aligned labels say (up to ties, as its
    # centroids are now swept in another order).
    details = aligned.model.predict_details(featurizer.transform(pre.transform(table.frame)))
    assert_labels_equal_except_ties(details[0], aligned.labels, decision_margins(details))
