"""Drift monitoring: PSI math, the bundle's reference, streaming comparison, report files, CLI exit codes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numerics import max_ties

from segmentation import drift
from segmentation.bundle import SegmentationModel, load_bundle, save_bundle
from segmentation.config import DriftConfig, load_config
from segmentation.data.chunks import sample_positions
from segmentation.data.io import write_table
from segmentation.data.synthetic import make_customers
from segmentation.errors import BundleError, DataValidationError
from segmentation.registry import LocalRegistry, RegistryError
from segmentation.stages.assemble import fit_model
from segmentation_workflows.cli import EXIT_DRIFT, main

ROWS = 6000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A model trained on half of one synthetic population; the other half is an unshifted snapshot."""
    root = tmp_path_factory.mktemp("drift")
    table, truth = make_customers(2 * ROWS, 16, 4, seed=11)
    train, fresh = table.iloc[:ROWS].reset_index(drop=True), table.iloc[ROWS:].reset_index(drop=True)
    config = load_config(
        overrides=[
            "cluster.n_clusters=4",
            "evaluate.stability_resamples=0",
            "evaluate.silhouette_sample=1000",
            "evaluate.agreement_sample=1000",
        ]
    )
    model, result = fit_model(train, config, source="train", data_hash="feed")
    bundle = save_bundle(model, root / "bundle")
    fresh_path = write_table(fresh, root / "fresh.parquet")
    return {
        "root": root,
        "model": load_bundle(bundle),
        "bundle": bundle,
        "labels": result.labels,
        "train": train,
        "fresh": fresh,
        "fresh_truth": truth.iloc[ROWS:].reset_index(drop=True),
        "fresh_path": fresh_path,
        "config": config,
    }


def _shifted(fresh: pd.DataFrame) -> pd.DataFrame:
    """About one standard deviation on two numeric columns, a different channel mix."""
    out = fresh.copy()
    log_sd = float(np.log(out["amount_00"]).std())
    out["amount_00"] = (out["amount_00"] * math.exp(log_sd)).round(2)  # +1 SD on the log scale
    out["noise_00"] = out["noise_00"] + out["noise_00"].std()
    partner = np.random.default_rng(0).random(len(out)) < 0.4
    out.loc[partner, "channel_00"] = "partner"
    return out


# ------------------------------------------------------------------------------------------ PSI
def test_psi_is_zero_for_identical_and_matches_a_hand_computed_value() -> None:
    shares = np.array([0.1, 0.2, 0.3, 0.4])
    assert drift.psi(shares, shares) == 0.0
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 3
    assert drift.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(3), abs=1e-12)
    assert drift.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(drift.psi([0.25, 0.75], [0.5, 0.5]))
    # An empty bin is floored at epsilon: finite, and larger for a smaller floor.
    value = drift.psi([1.0, 0.0], [0.5, 0.5], epsilon=1e-4)
    assert math.isfinite(value)
    assert value == pytest.approx((0.5 - 1) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4))
    assert drift.psi([1.0, 0.0], [0.5, 0.5], epsilon=1e-6) > value


def test_status_thresholds_are_inclusive() -> None:
    assert drift.status_of(0.099, 0.1, 0.25) == "ok"
    assert drift.status_of(0.1, 0.1, 0.25) == "warn"
    assert drift.status_of(0.25, 0.1, 0.25) == "alert"


def test_quantile_edges_handle_ties_constants_and_missing() -> None:
    zeros = np.r_[np.zeros(700), np.arange(1.0, 301.0)]
    edges = drift.quantile_edges(zeros, 10)
    assert edges[0] == 0.0
    assert len(edges) == len(np.unique(edges))
    assert (edges < zeros.max()).all()  # no empty top bin
    index = drift.reference.numeric_bins(zeros, edges)
    assert (index[:700] == 0).all()  # the point mass at zero is one bin
    constant = drift.quantile_edges(np.full(50, 3.0), 10)
    assert constant.tolist() == [3.0]
    with_nan = drift.reference.numeric_bins(np.array([np.nan, 1.0, 5.0]), np.array([2.0]))
    assert with_nan.tolist() == [2, 0, 1]  # missing is the last bin
    assert drift.quantile_edges(np.full(5, np.nan), 10).tolist() == [0.0]


def test_drift_config_rejects_alert_below_warn() -> None:
    from segmentation.errors import ConfigError

    assert load_config(overrides=["drift.alert=0.3"]).drift.alert == 0.3
    with pytest.raises(ConfigError, match="alert thresholds"):
        load_config(overrides=["drift.alert=0.05"])


# ------------------------------------------------------------------------------- the reference
def test_reference_describes_the_training_data(world: dict) -> None:
    reference = world["model"].reference
    assert reference is not None
    by_name = {f["name"]: f for f in reference["features"]}
    assert set(by_name) == set(world["model"].schema.feature_names)
    for feature in reference["features"]:
        assert sum(feature["shares"]) == pytest.approx(1.0)
    channel = by_name["channel_00"]
    assert channel["levels"]
    assert len(channel["shares"]) == len(channel["levels"]) + 2  # + other, missing
    assert by_name["flag_00"]["edges"] == [0.0]
    amount = by_name["amount_00"]
    assert len(amount["edges"]) == 9
    assert amount["shares"][-1] == pytest.approx(world["train"]["amount_00"].isna().mean())
    expected = np.bincount(world["labels"]) / len(world["labels"])
    assert reference["segments"]["shares"] == pytest.approx(expected.tolist())


def test_reference_sample_is_seeded_and_bounded(world: dict) -> None:
    pre, labels, frame = world["model"].preprocessor, world["labels"], world["train"]
    rows = sample_positions(len(frame), 1000, seed=1)
    assert len(rows) == 1000
    assert (np.diff(rows) > 0).all()
    assert (sample_positions(len(frame), 1000, seed=1) == rows).all()
    assert sample_positions(50, 1000, seed=0).tolist() == list(range(50))
    a = drift.build_reference(frame.iloc[rows], pre, labels, bins=5)
    b = drift.build_reference(frame.iloc[rows], pre, labels, bins=5)
    c = drift.build_reference(frame.iloc[sample_positions(len(frame), 1000, seed=2)], pre, labels, bins=5)
    assert a == b
    assert a != c
    assert (a["rows"], a["training_rows"], a["segments"]["rows"]) == (1000, ROWS, ROWS)
    assert all(len(f.get("edges", [])) <= 4 for f in a["features"])


def test_reference_round_trips_through_the_bundle_and_is_verified(world: dict, tmp_path: Path) -> None:
    path = save_bundle(world["model"], tmp_path / "bundle")
    manifest = json.loads((path / "manifest.json").read_text())
    assert "reference.json" in manifest["files"]
    assert load_bundle(path).reference == world["model"].reference
    tampered = json.loads((path / "reference.json").read_text())
    tampered["features"][0]["shares"][0] += 0.01
    (path / "reference.json").write_text(json.dumps(tampered))
    with pytest.raises(BundleError, match=r"reference\.json does not match its digest"):
        load_bundle(path)


def test_a_bundle_without_reference_loads_but_cannot_monitor(world: dict, tmp_path: Path) -> None:
    model: SegmentationModel = load_bundle(world["bundle"])
    model.reference = None
    path = save_bundle(model, tmp_path / "old-bundle")
    assert "reference.json" not in json.loads((path / "manifest.json").read_text())["files"]
    old = load_bundle(path)
    assert old.reference is None
    with pytest.raises(drift.NoReferenceError, match="retrain"):
        drift.compare(old, world["fresh_path"], DriftConfig())
    assert (
        main(["drift", "--bundle", str(path), "--data", str(world["fresh_path"]), "--out", str(tmp_path)])
        == 1
    )


# ------------------------------------------------------------------------------------ comparing
def test_unshifted_snapshot_does_not_alert_and_chunking_changes_nothing(world: dict) -> None:
    small_chunks = drift.compare(world["model"], world["fresh_path"], DriftConfig(chunk_rows=1000))
    assert small_chunks.status == "ok"
    assert all(f.psi < 0.1 for f in small_chunks.features), small_chunks.table().head()
    assert small_chunks.segments.psi < 0.1
    assert small_chunks.snapshot["rows"] == small_chunks.snapshot["valid_rows"] == ROWS
    assert max(f.psi for f in small_chunks.features) < 5 * 17 * small_chunks.snapshot["noise_floor_psi"]
    one_chunk = drift.compare(world["model"], world["fresh_path"], DriftConfig())
    assert [f.psi for f in one_chunk.features] == pytest.approx([f.psi for f in small_chunks.features])
    # Segments are predicted in 1,000-row chunks vs at once: other product shapes, so a row at a tie may
    # change segment (a share moves by 1 / ROWS per row); a lost or doubled chunk would move 1,000 rows.
    assert one_chunk.segments.actual == pytest.approx(small_chunks.segments.actual, abs=max_ties(ROWS) / ROWS)


def test_shifted_snapshot_alerts_on_the_shifted_features(world: dict, tmp_path: Path) -> None:
    path = write_table(_shifted(world["fresh"]), tmp_path / "shifted.parquet")
    report = drift.compare(world["model"], path, DriftConfig(chunk_rows=2500))
    assert report.alert
    top = report.table().query("kind != 'segments'").head(3)
    assert set(top["feature"]) == {"amount_00", "noise_00", "channel_00"}
    assert set(top["status"]) == {"alert"}
    unshifted = [f for f in report.features if f.name not in {"amount_00", "noise_00", "channel_00"}]
    assert max(f.psi for f in unshifted) < 0.1


def test_a_moved_segment_mix_alerts_on_the_segment_shares(world: dict, tmp_path: Path) -> None:
    fresh, truth = world["fresh"], world["fresh_truth"]["segment"]
    largest = truth.value_counts().index[0]
    keep = (truth != largest) | (np.random.default_rng(1).random(len(truth)) < 0.1)
    path = write_table(fresh[keep.to_numpy()], tmp_path / "mix.parquet")
    report = drift.compare(world["model"], path, DriftConfig())
    assert report.segments.status == "alert"
    assert report.alert
    assert "segment shares" in report.by_status("alert")


def test_invalid_rows_are_counted_and_left_out(world: dict, tmp_path: Path) -> None:
    frame = world["fresh"].copy()
    frame["amount_01"] = frame["amount_01"].astype(object)
    frame.loc[[3, 4000], "amount_01"] = -4.0  # below the inferred bound >= 0
    frame.loc[5, "amount_01"] = "lots"  # not a number
    path = tmp_path / "with-bad-rows.csv"
    frame.to_csv(path, index=False)
    report = drift.compare(world["model"], path, DriftConfig(chunk_rows=2000))
    assert report.snapshot["invalid_rows"] == 3
    assert report.snapshot["valid_rows"] == ROWS - 3
    checks = {(f.column, f.check): f.count for f in report.invalid}
    assert checks[("amount_01", "greater_than_or_equal_to(0.0)")] == 2  # merged over two chunks
    assert checks[("amount_01", "coerce_dtype('float64')")] == 1
    assert report.status == "ok"


def test_a_missing_feature_column_fails_the_snapshot(world: dict, tmp_path: Path) -> None:
    path = write_table(world["fresh"].drop(columns=["freq_00"]), tmp_path / "no-freq.parquet")
    with pytest.raises(DataValidationError) as info:
        drift.compare(world["model"], path, DriftConfig())
    assert info.value.report.failures[0].column == "freq_00"


# ---------------------------------------------------------------------------- report and CLI
def test_report_files(world: dict, tmp_path: Path) -> None:
    path = write_table(_shifted(world["fresh"]), tmp_path / "shifted.parquet")
    report = drift.compare(world["model"], path, DriftConfig(), model_meta={"version": "v7"})
    paths = drift.write_report(report, tmp_path / "out")
    assert {Path(p).name for p in paths.values()} == {
        "drift.json",
        "drift.csv",
        "drift.png",
        "drift.md",
        "drift.html",
    }
    saved = json.loads((tmp_path / "out" / "drift.json").read_text())
    assert saved["status"] == "alert"
    assert saved["model"]["version"] == "v7"
    assert saved["model"]["digest"]
    assert saved["model"]["training_data_hash"] == "feed"
    assert saved["snapshot"]["rows"] == ROWS
    assert len(saved["snapshot"]["sha256"]) == 64
    assert saved["thresholds"]["alert"] == 0.25
    assert set(saved["alerts"]) >= {"amount_00", "noise_00", "channel_00"}
    table = pd.read_csv(tmp_path / "out" / "drift.csv")
    assert list(table.columns[:4]) == ["feature", "kind", "psi", "status"]
    assert table["psi"].is_monotonic_decreasing
    assert len(table) == len(world["model"].schema.columns) + 1  # + the segment shares
    assert (tmp_path / "out" / "drift.png").read_bytes()[:4] == b"\x89PNG"
    assert "# Drift report: ALERT" in (tmp_path / "out" / "drift.md").read_text()
    assert "data:image/png;base64," in (tmp_path / "out" / "drift.html").read_text()


def test_cli_exit_codes(world: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle, fresh = str(world["bundle"]), str(world["fresh_path"])
    shifted = str(write_table(_shifted(world["fresh"]), tmp_path / "shifted.parquet"))
    assert main(["drift", "--bundle", bundle, "--data", fresh, "--out", str(tmp_path / "ok")]) == 0
    assert "drift OK" in capsys.readouterr().out
    assert (tmp_path / "ok" / "drift.json").is_file()
    code = main(["drift", "--bundle", bundle, "--data", shifted, "--out", str(tmp_path / "alert")])
    assert code == EXIT_DRIFT == 5
    assert "drift ALERT" in capsys.readouterr().out
    raised = ["-S", "drift.warn=50", "-S", "drift.alert=100"]
    assert main(["drift", "--bundle", bundle, "--data", shifted, "--out", str(tmp_path / "hi"), *raised]) == 0
    no_freq = write_table(world["fresh"].drop(columns=["freq_00"]), tmp_path / "no-freq.parquet")
    assert main(["drift", "--bundle", bundle, "--data", str(no_freq), "--out", str(tmp_path / "x")]) == 2
    assert "missing_required_column" in capsys.readouterr().err
    assert main(["drift", "--bundle", bundle, "--data", str(tmp_path / "nope.csv")]) == 2


def test_cli_resolves_the_production_alias(world: dict, tmp_path: Path) -> None:
    registry_dir = tmp_path / "registry"
    config = load_config(overrides=[f"registry.dir={registry_dir}"])
    registry = LocalRegistry(registry_dir, config.model_name)
    version = registry.register(world["bundle"])
    settings = ["-S", f"registry.dir={registry_dir}"]
    out = tmp_path / "drift"
    # No production yet: the registry's error and exit code.
    code = main(["drift", "--data", str(world["fresh_path"]), "--out", str(out), *settings])
    assert code == RegistryError.exit_code != 0
    registry.promote(version.version, config.registry, force=True)
    assert main(["drift", "--data", str(world["fresh_path"]), "--out", str(out), *settings]) == 0
    saved = json.loads((out / "drift.json").read_text())
    assert saved["model"]["version"] == version.tag
    assert saved["model"]["alias"] == "production"
