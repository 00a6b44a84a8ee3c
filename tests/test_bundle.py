"""Tests for the model bundle: assembly through the pipeline nodes, save, verify, load, predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numerics import assert_labels_equal_except_ties, max_ties

from segmentation.bundle import BUNDLE_FORMAT, SegmentationModel, bundle_digest, load_bundle, save_bundle
from segmentation.clustering import ClusterResult
from segmentation.config import SegmentConfig
from segmentation.data.chunks import sample_positions
from segmentation.data.io import read_table, sample_data_path
from segmentation.data.synthetic import make_customers
from segmentation.errors import BundleError, DataValidationError
from segmentation.stages.assemble import fit_model

Trained = tuple[SegmentationModel, ClusterResult]

BUNDLE_FILES = {
    "manifest.json",
    "schema.json",
    "preprocess.json",
    "preprocess.npz",
    "featurizer.json",
    "featurizer.npz",
    "clusterer.json",
    "clusterer.npz",
    "segments.json",
    "reference.json",
}


def _config(cluster: dict[str, Any], featurize: dict[str, Any] | None = None) -> SegmentConfig:
    return SegmentConfig.model_validate(
        {
            "seed": 7,
            "model_name": "test-model",
            "featurize": featurize or {"kind": "pca", "n_components": 5},
            "cluster": cluster,
            "evaluate": {"silhouette_sample": 500, "agreement_sample": 5000},
        }
    )


def _train(frame: pd.DataFrame, config: SegmentConfig) -> tuple[SegmentationModel, ClusterResult]:
    return fit_model(frame, config, source="test", data_hash="abc123")


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    table, _ = make_customers(1200, 12, 4, seed=3)
    return table


@pytest.fixture(scope="module")
def cc_general() -> pd.DataFrame:
    return read_table(sample_data_path())


@pytest.fixture(scope="module")
def kmeans_model(customers: pd.DataFrame) -> tuple[SegmentationModel, ClusterResult]:
    return _train(customers, _config({"kind": "kmeans", "n_clusters": 4, "n_init": 2}))


# ------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize(
    "cluster",
    [
        {"kind": "kmeans", "n_clusters": 4, "n_init": 2},
        {"kind": "gmm", "n_clusters": 4, "n_init": 1},
    ],
)
def test_round_trip_reproduces_training_labels(
    cluster: dict[str, Any], customers: pd.DataFrame, tmp_path: Path
) -> None:
    model, result = _train(customers, _config(cluster))
    # Exactly 1: all 1,200 rows are re-predicted (agreement_sample 5,000), the products training made.
    assert model.manifest["metrics"]["assignment_agreement"] == 1.0
    path = save_bundle(model, tmp_path / "bundle")
    loaded = load_bundle(path)
    assert loaded.clusterer.kind == cluster["kind"]
    assert np.array_equal(loaded.predict(customers), result.labels)
    assert np.array_equal(model.predict(customers), result.labels)


def test_cc_general_round_trip(cc_general: pd.DataFrame, tmp_path: Path) -> None:
    config = _config({"kind": "kmeans", "n_clusters": 4, "n_init": 2}, {"kind": "pca", "n_components": 6})
    model, result = _train(cc_general, config)
    assert model.schema.kind == "cc_general"
    assert model.manifest["data"]["schema_kind"] == "cc_general"
    # The agreement check re-predicts a 5,000-row sample of the 8,950 rows: products of another shape,
    # which a BLAS kernel may sum in another order, so only rows at a tie may disagree.
    rows = sample_positions(len(cc_general), 5000, config.seed)
    sample = model.predict_details(cc_general.iloc[rows])
    assert_labels_equal_except_ties(
        sample["segment"].to_numpy(), result.labels[rows], sample["confidence"].to_numpy()
    )
    assert model.manifest["metrics"]["assignment_agreement"] >= 1 - max_ties(5000) / 5000
    loaded = load_bundle(save_bundle(model, tmp_path / "cc"))
    assert np.array_equal(loaded.predict(cc_general), result.labels)  # every row: training's products
    details = loaded.predict_details(cc_general.head(20))
    assert list(details.columns) == ["CUST_ID", "segment", "confidence"]
    assert details["CUST_ID"].tolist() == cc_general["CUST_ID"].head(20).tolist()
    # The ID column is optional at prediction time. (50 rows: other product shapes, ties may differ.)
    no_id = loaded.predict_details(cc_general.drop(columns=["CUST_ID"]).head(50))
    assert_labels_equal_except_ties(
        no_id["segment"].to_numpy(), result.labels[:50], no_id["confidence"].to_numpy()
    )
    bad = cc_general.head(10).copy()
    bad.loc[bad.index[3], "BALANCE"] = -5.0
    with pytest.raises(DataValidationError, match="BALANCE") as info:
        loaded.predict(bad)
    assert any(f.column == "BALANCE" for f in info.value.report.failures)


def test_bundle_layout_and_manifest(kmeans_model: Trained, tmp_path: Path) -> None:
    model, result = kmeans_model
    path = save_bundle(model, tmp_path / "bundle")
    assert {p.name for p in path.iterdir()} == BUNDLE_FILES
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == BUNDLE_FORMAT
    assert manifest["name"] == "test-model"
    assert set(manifest["files"]) == BUNDLE_FILES - {"manifest.json"}
    assert manifest["data"]["content_hash"] == "abc123"
    assert manifest["config"]["cluster"]["kind"] == "kmeans"
    metrics = manifest["metrics"]
    assert metrics["n_clusters"] == 4
    assert metrics["k_selection"]["chosen_k"] == 4
    assert metrics["assignment_agreement_rows"] == len(result.labels)
    segments = json.loads((path / "segments.json").read_text())
    sizes = [s["size"] for s in segments["segments"]]
    assert sum(sizes) == len(result.labels)
    assert sizes == sorted(sizes, reverse=True)
    assert len(segments["feature_names"]) == len(segments["segments"][0]["centroid"])
    loaded = load_bundle(path)
    assert bundle_digest(loaded.manifest) == bundle_digest(manifest)
    assert loaded.name == "test-model"


def test_predict_details(
    kmeans_model: tuple[SegmentationModel, ClusterResult], customers: pd.DataFrame, tmp_path: Path
) -> None:
    model, result = kmeans_model
    loaded = load_bundle(save_bundle(model, tmp_path / "b"))
    details = loaded.predict_details(customers)
    assert list(details.columns) == ["customer_id", "segment", "confidence"]
    assert details["customer_id"].tolist() == customers["customer_id"].tolist()
    assert np.array_equal(details["segment"].to_numpy(), result.labels)
    assert details["confidence"].between(0, 1).all()
    no_id = loaded.predict_details(customers.drop(columns=["customer_id"]).head(5))
    assert list(no_id.columns) == ["segment", "confidence"]


def test_predict_rejects_out_of_range_values(
    kmeans_model: tuple[SegmentationModel, ClusterResult], customers: pd.DataFrame, tmp_path: Path
) -> None:
    loaded = load_bundle(save_bundle(kmeans_model[0], tmp_path / "b"))
    freq = next(c for c in customers.columns if c.startswith("freq_"))
    assert loaded.schema.column(freq).max_value == 1.0
    bad = customers.head(10).copy()
    bad[freq] = bad[freq].astype("float64")
    bad.loc[bad.index[2], freq] = 5.0
    with pytest.raises(DataValidationError, match=freq) as info:
        loaded.predict(bad)
    assert {f.column for f in info.value.report.failures} == {freq}


def test_predict_rejects_missing_column(
    kmeans_model: tuple[SegmentationModel, ClusterResult], customers: pd.DataFrame
) -> None:
    model, _ = kmeans_model
    with pytest.raises(DataValidationError, match="amount_00"):
        model.predict(customers.drop(columns=["amount_00"]).head(10))


# --------------------------------------------------------------------------------------- integrity
def test_tampered_file_is_rejected(kmeans_model: Trained, tmp_path: Path) -> None:
    path = save_bundle(kmeans_model[0], tmp_path / "bundle")
    target = path / "clusterer.npz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"clusterer\.npz"):
        load_bundle(path)


def test_missing_file_and_non_bundle(kmeans_model: Trained, tmp_path: Path) -> None:
    path = save_bundle(kmeans_model[0], tmp_path / "bundle")
    (path / "featurizer.npz").unlink()
    with pytest.raises(BundleError, match=r"featurizer\.npz"):
        load_bundle(path)
    with pytest.raises(BundleError, match="manifest"):
        load_bundle(tmp_path / "nowhere")


def test_unknown_format_is_rejected(kmeans_model: Trained, tmp_path: Path) -> None:
    path = save_bundle(kmeans_model[0], tmp_path / "bundle")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format"] = 999
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format"):
        load_bundle(path)


def test_corrupt_manifest_is_a_bundle_error(
    kmeans_model: tuple[SegmentationModel, ClusterResult], tmp_path: Path
) -> None:
    path = save_bundle(kmeans_model[0], tmp_path / "bundle")
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"manifest\.json"):
        load_bundle(path)


def test_manifest_without_a_required_file_is_a_bundle_error(
    kmeans_model: tuple[SegmentationModel, ClusterResult], tmp_path: Path
) -> None:
    path = save_bundle(kmeans_model[0], tmp_path / "bundle")
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"]["schema.json"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"schema\.json"):
        load_bundle(path)


def test_save_is_atomic_and_replaces(
    kmeans_model: tuple[SegmentationModel, ClusterResult], customers: pd.DataFrame, tmp_path: Path
) -> None:
    model, result = kmeans_model
    target = tmp_path / "out" / "bundle"
    save_bundle(model, target)
    assert [p.name for p in target.parent.iterdir()] == ["bundle"]
    (target / "stale.txt").write_text("left from an older bundle")
    gmm_model, gmm_result = _train(customers, _config({"kind": "gmm", "n_clusters": 3, "n_init": 1}))
    save_bundle(gmm_model, target)
    assert [p.name for p in target.parent.iterdir()] == ["bundle"]
    assert {p.name for p in target.iterdir()} == BUNDLE_FILES
    loaded = load_bundle(target)
    assert loaded.clusterer.kind == "gmm"
    assert np.array_equal(loaded.predict(customers), gmm_result.labels)
    assert not np.array_equal(gmm_result.labels, result.labels)


def test_failed_save_leaves_previous_bundle(
    kmeans_model: tuple[SegmentationModel, ClusterResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, result = kmeans_model
    target = tmp_path / "bundle"
    save_bundle(model, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    import segmentation.bundle as bundle_module

    def boom(staging: Path, path: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(bundle_module, "replace_dir", boom)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(model, target)
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert load_bundle(target).clusterer.kind == "kmeans"
    assert len(result.labels) == model.manifest["data"]["n_rows"]


# ---------------------------------------------------------------------------------------- HDBSCAN
def test_hdbscan_bundle_round_trip(customers: pd.DataFrame, tmp_path: Path) -> None:
    config = _config({"kind": "hdbscan", "min_cluster_size": 40})
    model, result = _train(customers, config)
    metrics = model.manifest["metrics"]
    assert 0.0 <= metrics["assignment_agreement"] <= 1.0
    assert metrics["assignment_agreement"] > 0.8
    assert metrics["assignment_agreement_rows"] == len(customers)
    path = save_bundle(model, tmp_path / "hdb")
    assert (path / "clusterer.joblib").is_file()
    manifest = json.loads((path / "manifest.json").read_text())
    assert "clusterer.joblib" in manifest["files"]
    assert manifest["metrics"]["assignment_agreement"] == metrics["assignment_agreement"]
    loaded = load_bundle(path)
    predicted = loaded.predict(customers)
    assert np.array_equal(predicted, model.predict(customers))
    assert float((predicted == result.labels).mean()) == pytest.approx(metrics["assignment_agreement"])
    details = loaded.predict_details(customers.head(30))
    assert details["confidence"].between(0, 1).all()
    blob = bytearray((path / "clusterer.joblib").read_bytes())
    blob[-10] ^= 0xFF
    (path / "clusterer.joblib").write_bytes(bytes(blob))
    with pytest.raises(BundleError, match=r"clusterer\.joblib"):
        load_bundle(path)
