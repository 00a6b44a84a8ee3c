"""The train-segmentation flow end to end on a real temporary Prefect API: caching, determinism, recovery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from segmentation.bundle import load_bundle
from segmentation.config import load_config
from segmentation.data.io import read_table
from segmentation.tracking import flush, offline_runs, read_offline_run
from segmentation_workflows.caching import STAGES
from segmentation_workflows.cli import main
from segmentation_workflows.train import run_training

pytestmark = pytest.mark.usefixtures("prefect_api")


def _fast(*extra: str):
    return load_config(overrides=["cluster.search.k_max=6", *extra])


def test_rerun_skips_every_stage_and_cluster_change_reruns_only_downstream(
    synthetic_table: tuple[Path, pd.DataFrame], tmp_path: Path, segment_home: Path
) -> None:
    data = synthetic_table[0]
    first = run_training(data, tmp_path / "a", _fast())
    assert first["stages"] == dict.fromkeys(STAGES, "Completed")

    again = run_training(data, tmp_path / "b", _fast())
    assert again["stages"] == dict.fromkeys(STAGES, "Cached")
    assert again["metrics"] == first["metrics"]

    changed = run_training(data, tmp_path / "c", _fast("cluster.n_clusters=3"))
    assert changed["stages"] == {
        "load": "Cached",
        "preprocess": "Cached",
        "featurize": "Cached",
        "cluster": "Completed",
        "evaluate": "Completed",
    }
    assert changed["metrics"]["n_clusters"] == 3

    featurizer_changed = run_training(data, tmp_path / "d", _fast("featurize.variance=0.8"))
    assert featurizer_changed["stages"] == {
        "load": "Cached",
        "preprocess": "Cached",
        "featurize": "Completed",
        "cluster": "Completed",
        "evaluate": "Completed",
    }
    assert (segment_home / "results").is_dir()

    # A cleaned stage store is rebuilt, not trusted: only the missing stage recomputes.
    for stored in (segment_home / "stages").glob("featurize-*.pkl"):
        stored.unlink()
    rebuilt = run_training(data, tmp_path / "e", _fast())
    assert rebuilt["stages"]["featurize"] == "Completed"
    assert {rebuilt["stages"][s] for s in STAGES if s != "featurize"} == {"Cached"}
    assert rebuilt["metrics"] == first["metrics"]


def test_changed_data_reruns_everything(
    synthetic_table: tuple[Path, pd.DataFrame], tmp_path: Path, segment_home: Path
) -> None:
    data = synthetic_table[0]
    run_training(data, tmp_path / "a", _fast())
    table = pd.read_parquet(data)
    table.loc[0, "amount_00"] = float(table["amount_00"].max()) + 1.0  # one value changes
    changed = tmp_path / "changed.parquet"
    table.to_parquet(changed)
    result = run_training(changed, tmp_path / "b", _fast())
    assert result["stages"] == dict.fromkeys(STAGES, "Completed")


def test_same_seed_same_labels_and_metrics(
    synthetic_table: tuple[Path, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = synthetic_table[0]
    outputs = []
    for name in ("one", "two"):  # separate caches: both runs really compute
        monkeypatch.setenv("SEGMENT_HOME", str(tmp_path / f"home-{name}"))
        result = run_training(data, tmp_path / name, _fast())
        assert result["stages"]["cluster"] == "Completed"
        outputs.append(tmp_path / name)
    labels = [pd.read_parquet(out / "labels.parquet") for out in outputs]
    # Exact (IDs and integer segments; metrics): the same calls in one process and thread count. With 3+
    # OpenMP threads scikit-learn's k-means adds per-thread sums in arrival order, so centroids may differ
    # in the last bits between runs; no row of this table is that close to a tie (the smallest relative
    # margin of any k tried is 8e-4, thousands of times float32 rounding), so labels and metrics hold.
    pd.testing.assert_frame_equal(labels[0], labels[1], check_exact=True)
    metrics = [json.loads((out / "metrics.json").read_text()) for out in outputs]
    assert metrics[0] == metrics[1]


def test_default_config_recovers_planted_segments(
    tmp_path: Path, segment_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "synth.parquet"
    assert (
        main(
            [
                "make-data",
                "--rows",
                "4000",
                "--features",
                "40",
                "--segments",
                "6",
                "--seed",
                "11",
                "--out",
                str(data),
            ]
        )
        == 0
    )
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out)]) == 0  # k is not given
    printed = capsys.readouterr().out
    assert "6 segments" in printed
    labels = pd.read_parquet(out / "labels.parquet")
    truth = pd.read_parquet(tmp_path / "synth.truth.parquet")
    merged = labels.merge(truth, on="customer_id", suffixes=("", "_true"))
    assert len(merged) == 4000
    assert adjusted_rand_score(merged["segment_true"], merged["segment"]) >= 0.9

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["k_selection"]["chosen_k"] == 6
    assert set(metrics["k_selection"]["scores"]) == {str(k) for k in range(3, 11)}
    assert abs(sum(metrics["segment_shares"].values()) - 1.0) < 1e-9

    model = load_bundle(out / "bundle")
    predicted = model.predict(read_table(data))
    # Exact for k-means: every training row, so the same product shapes as training.
    assert np.array_equal(predicted, labels["segment"].to_numpy())
    assert model.manifest["data"]["content_hash"]
    assert model.manifest["config"]["cluster"]["kind"] == "kmeans"


def test_autoencoder_and_hdbscan_from_the_cli(
    synthetic_table: tuple[Path, pd.DataFrame], tmp_path: Path, segment_home: Path
) -> None:
    out = tmp_path / "ae"
    code = main(
        [
            "train",
            "--data",
            str(synthetic_table[0]),
            "--out",
            str(out),
            "-S",
            "featurize=autoencoder",
            "-S",
            "featurize.max_epochs=15",
            "-S",
            "featurize.encoding_dim=4",
            "-S",
            "cluster=hdbscan",
            "-S",
            "cluster.min_cluster_size=50",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["featurizer"]["kind"] == "autoencoder"
    assert 0.0 <= metrics["noise_fraction"] < 1.0
    assert metrics["assignment_agreement"] > 0.8
    history = pd.read_csv(out / "loss_history.csv")
    assert (history[["train_loss", "val_loss"]] >= 0).all().all()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    # The W&B run holds the same losses as per-epoch history.
    flush()
    (run_dir,) = offline_runs(segment_home)
    logged = [h for h in read_offline_run(run_dir).history if "autoencoder/train_loss" in h]
    assert [h["epoch"] for h in logged] == history["epoch"].tolist()
    assert [h["autoencoder/val_loss"] for h in logged] == pytest.approx(history["val_loss"].tolist())
    truth = synthetic_table[1]
    labels = pd.read_parquet(out / "labels.parquet").merge(truth, on="customer_id", suffixes=("", "_true"))
    clustered = labels[labels["segment"] >= 0]
    assert adjusted_rand_score(clustered["segment_true"], clustered["segment"]) >= 0.9


def test_bundled_sample_trains_with_defaults(
    tmp_path: Path, segment_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["train", "--out", str(out), "-S", "cluster.search.k_max=5"]) == 0
    assert "trained on 8950 customers" in capsys.readouterr().out
    labels = pd.read_parquet(out / "labels.parquet")
    assert list(labels.columns) == ["CUST_ID", "segment"]
    assert len(labels) == 8950
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert manifest["data"]["schema_kind"] == "cc_general"
    stability = json.loads((out / "metrics.json").read_text())["stability"]
    assert stability["resamples"] == 10
    assert 0.9 <= stability["ari_pairwise_mean"] <= 1.0  # measured 0.976 on CC GENERAL
    profile = pd.read_csv(out / "profile.csv")
    assert {p.name for p in (out / "plots").iterdir()} == {
        "segments_2d.png",
        "profile_heatmap.png",
        "top_features.png",
        "sizes.png",
        "k_selection.png",
        *(f"segment_{s}.png" for s in profile["segment"]),
    }
    assert (out / "report.html").stat().st_size > 100_000  # plots embedded
    assert "## Segment 0:" in (out / "report.md").read_text()
    assert set(stability["jaccard_per_segment"]) == {str(s) for s in profile["segment"]}
    assert profile["size"].sum() == 8950
    assert abs(profile["share"].sum() - 1.0) < 1e-9
    segments = json.loads((out / "bundle" / "segments.json").read_text())["segments"]
    assert [s["name"] for s in segments] == profile["name"].tolist()
    assert len(set(profile["name"])) == len(profile)
    assert set(manifest["files"]) >= {
        "schema.json",
        "preprocess.npz",
        "featurizer.npz",
        "clusterer.npz",
        "segments.json",
    }


def test_io_errors_retry_but_bad_data_never_does() -> None:
    from prefect.states import Failed

    from segmentation.contract.report import ValidationReport
    from segmentation.errors import BundleError, DataValidationError
    from segmentation_workflows.retries import retry_io_only as _retry_io_only

    assert _retry_io_only(None, None, Failed(data=OSError("network share hiccup"))) is True
    assert _retry_io_only(None, None, Failed(data=DataValidationError(ValidationReport("x", 0, 0)))) is False
    assert _retry_io_only(None, None, Failed(data=ValueError("a bug"))) is False
    assert _retry_io_only(None, None, Failed(data=BundleError("digest mismatch"))) is False


def test_retrain_on_reshuffled_copy_keeps_segment_ids_and_user_names(
    synthetic_table: tuple[Path, pd.DataFrame], tmp_path: Path, segment_home: Path
) -> None:
    data, _ = synthetic_table
    first = tmp_path / "first"
    run_training(data, first, _fast("insights.names.1=Weekend shoppers", "evaluate.stability_resamples=0"))
    shuffled = tmp_path / "shuffled.parquet"
    read_table(data).sample(frac=1.0, random_state=1).to_parquet(shuffled)
    second = tmp_path / "second"
    config = _fast(f"insights.align_to={first}", "seed=5", "evaluate.stability_resamples=0")
    result = run_training(shuffled, second, config)
    before = pd.read_parquet(first / "labels.parquet").set_index("customer_id")["segment"]
    after = pd.read_parquet(second / "labels.parquet").set_index("customer_id")["segment"]
    assert (after[before.index] == before).mean() > 0.99  # the same customers keep the same IDs
    alignment = result["metrics"]["alignment"]
    assert alignment["method"] == "label_overlap"
    assert alignment["reference"] == str(first.resolve())
    model = load_bundle(second / "bundle")
    assert model.segment_names[1] == "Weekend shoppers"  # the user's name followed its customers
    assert {s["id"]: s["name_source"] for s in model.segments["segments"]}[1] == "previous"
    # A different reference model is a different clustering result: the cluster stage reruns.
    rerun = run_training(shuffled, tmp_path / "third", config)
    assert rerun["stages"]["cluster"] == "Cached"
    run_training(data, tmp_path / "other-ref", _fast("evaluate.stability_resamples=0", "seed=9"))
    moved = _fast(f"insights.align_to={tmp_path / 'other-ref'}", "seed=5", "evaluate.stability_resamples=0")
    assert run_training(shuffled, tmp_path / "fourth", moved)["stages"]["cluster"] == "Completed"
