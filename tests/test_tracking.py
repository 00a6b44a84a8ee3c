"""W&B mode resolution, the offline transaction-log reader, and tracking switched off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segmentation.config import TrackingConfig, load_config
from segmentation.settings import Settings
from segmentation.tracking import (
    flush,
    numeric_summary,
    offline_runs,
    read_offline_run,
    resolve_mode,
    track_training,
)


@pytest.mark.parametrize(
    ("env", "mode", "expected"),
    [
        ({}, "auto", "offline"),
        ({"WANDB_API_KEY": "k" * 40}, "auto", "online"),
        ({"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "offline"}, "auto", "offline"),
        ({"WANDB_MODE": "disabled"}, "online", "disabled"),
        ({"WANDB_MODE": "dryrun"}, "auto", "offline"),
        ({}, "disabled", "disabled"),
    ],
)
def test_mode_env_beats_config_beats_api_key(tmp_path: Path, env: dict, mode: str, expected: str) -> None:
    settings = Settings.from_environ(env, cwd=tmp_path)
    assert resolve_mode(TrackingConfig(mode=mode), settings) == expected


def test_summary_is_every_number_under_flat_keys() -> None:
    summary = numeric_summary(
        {
            "silhouette": 0.3,
            "stability": {"ari_pairwise_mean": 0.9, "resamples": 3},
            "k_selection": {"criterion": "silhouette"},
            "ok": True,
        }
    )
    assert summary == {"silhouette": 0.3, "stability.ari_pairwise_mean": 0.9, "stability.resamples": 3.0}


def test_offline_files_round_trip_through_wandbs_protobufs(tmp_path: Path, monkeypatch) -> None:
    import wandb

    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(
        project="p",
        dir=str(tmp_path),
        mode="offline",
        config={"a.b": 1},
        group="g",
        settings=wandb.Settings(console="off", x_disable_stats=True),
    )
    for epoch in range(3):
        run.log({"epoch": epoch, "loss": 1.0 / (epoch + 1), "blob": "x" * 40_000})  # spans log blocks
    run.summary["silhouette"] = 0.25
    run.finish()
    flush()  # finish() returns before W&B's service has written the last records
    (path,) = offline_runs(tmp_path)
    record = read_offline_run(path)
    assert (record.project, record.group, record.config, record.exit_code) == ("p", "g", {"a.b": 1}, 0)
    assert [h["loss"] for h in record.history] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert record.summary["silhouette"] == 0.25
    with pytest.raises(FileNotFoundError):
        read_offline_run(tmp_path)


def test_disabled_tracking_writes_nothing(tmp_path: Path) -> None:
    settings = Settings.from_environ({"WANDB_MODE": "disabled"}, cwd=tmp_path)
    config = load_config(overrides=[f"tracking.dir={tmp_path}"])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps({"silhouette": 0.1}))
    tracked = track_training(
        run_dir, config=config, data_path="x.csv", model_name="m", paths={}, settings=settings
    )
    assert tracked is None
    assert not (tmp_path / "wandb").exists()
