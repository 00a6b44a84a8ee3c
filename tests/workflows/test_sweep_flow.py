"""Sweeps end to end, offline: W&B run files read back, registry promotion and rollback, `wandb agent`."""

from __future__ import annotations

import json
import os
import queue
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from segmentation.bundle import load_bundle
from segmentation.data.io import file_digest
from segmentation.registry import LocalRegistry
from segmentation.tracking import offline_runs, read_offline_run
from segmentation_workflows.cli import main

pytestmark = pytest.mark.usefixtures("prefect_api")
ROOT = Path(__file__).parents[2]
FAST = ["-S", "cluster.search.k_max=5", "-S", "evaluate.stability_resamples=3"]


def _sweep_dir(home: Path) -> Path:
    (directory,) = (home / "sweeps").iterdir()
    return directory


def test_offline_sweep_logs_three_runs_registers_promotes_and_rolls_back(
    synthetic_table: tuple[Path, pd.DataFrame],
    segment_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = synthetic_table[0]
    sweep = ROOT / "sweeps" / "k_range.yaml"
    assert main(["sweep", str(sweep), "--data", str(data), "--count", "3", "--promote", *FAST]) == 0
    out = capsys.readouterr().out
    directory = _sweep_dir(segment_home)
    trials = [json.loads(line) for line in (directory / "trials.jsonl").read_text().splitlines()]
    assert [t["state"] for t in trials] == ["finished"] * 3
    assert [t["params"]["cluster.n_clusters"] for t in trials] == [3, 4, 5]  # grid order

    runs = [read_offline_run(path) for path in offline_runs(segment_home)]
    assert len(runs) == 3
    digest = file_digest(data)
    for run, trial in zip(runs, trials, strict=True):
        metrics = json.loads((Path(trial["run_dir"]) / "metrics.json").read_text())
        assert run.group == directory.name
        assert run.job_type == "train"
        assert run.exit_code == 0
        assert run.config["cluster.n_clusters"] == trial["params"]["cluster.n_clusters"]
        assert run.config["featurize.kind"] == "pca"  # the whole resolved config, flat dotted keys
        assert run.config["data.content_hash"] == digest
        assert run.summary["silhouette"] == pytest.approx(metrics["silhouette"])
        assert run.summary["stability.ari_pairwise_mean"] == pytest.approx(
            metrics["stability"]["ari_pairwise_mean"]
        )
        assert run.summary["plots/segments_2d._type"] == "image-file"
        assert run.summary["profile._type"] == "table-file"
        assert run.summary["verdict"] == metrics["verdict"]
        assert run.summary["warnings"] == ", ".join(w["code"] for w in metrics["warnings"])
        segments = json.loads((Path(trial["run_dir"]) / "bundle" / "segments.json").read_text())["segments"]
        for seg in segments:
            assert run.summary[f"segment.{seg['id']}.rule"] == seg["rule"]
            assert run.summary[f"segment.{seg['id']}.rule_precision"] == pytest.approx(seg["rule_precision"])
            assert run.summary[f"segment.{seg['id']}.name"] == seg["name"]
        model = next(a for a in run.artifacts if a["type"] == "model")
        assert model["name"] == "customer-segments"
        assert "candidate" in model["aliases"]
        assert model["metadata"]["data_hash"] == digest
        assert model["metadata"]["metrics"]["silhouette"] == pytest.approx(metrics["silhouette"])
        assert {"manifest.json", "clusterer.npz", "segments.json"} <= set(model["files"])
        dataset = next(a for a in run.artifacts if a["type"] == "dataset")
        assert dataset["metadata"]["sha256"] == digest
        assert dataset["references"] == [data.resolve().as_uri()]

    best = max(trials, key=lambda t: t["metric"])
    assert f"best: trial {best['index']}" in out
    registry = LocalRegistry(segment_home / "registry", "customer-segments")
    production = registry.get("production")
    assert production.source == best["run_dir"]

    assert main(["registry", "list"]) == 0
    listing = capsys.readouterr().out
    line = next(row for row in listing.splitlines() if row.startswith(production.tag + " "))
    assert "production" in line
    worse = min(trials, key=lambda t: t["metric"])
    worse_version = next(v for v in registry.versions() if v.source == worse["run_dir"])
    assert main(["promote", "--version", worse_version.tag]) == 4
    assert "not above production's" in capsys.readouterr().err
    assert main(["promote", "--version", worse_version.tag, "--force"]) == 0
    assert registry.get("production").version == worse_version.version
    assert main(["rollback"]) == 0
    assert registry.get("production").version == production.version
    assert registry.get("previous").version == worse_version.version
    assert main(["promote", "--best", "silhouette"]) == 0  # already production: nothing moves
    assert registry.get("production").version == production.version

    # What the experiment and deploy workflows run: the PR report and the bundle export for the image.
    report = segment_home / "experiment-report.md"
    assert main(["experiment-report", str(segment_home / "sweeps"), "--out", str(report)]) == 0
    text = report.read_text()
    assert f"Against production ({production.tag})" in text
    assert "Promotion gate:" in text
    assert text.count("| " + str(segment_home / "sweeps")) == 3
    exported = segment_home / "model"
    assert main(["registry", "export", "production", str(exported)]) == 0
    assert load_bundle(exported).manifest["files"] == registry.load("production").manifest["files"]

    capsys.readouterr()
    assert main(["runs", str(segment_home / "sweeps"), "--sort", "silhouette"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "cluster.n_clusters" in table[0]
    assert len(table) == 4
    assert table[1].split()[0].endswith(f"trial-{best['index']:03d}")


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(
    synthetic_table: tuple[Path, pd.DataFrame], segment_home: Path, tmp_path: Path
) -> None:
    sweep = yaml.safe_load((ROOT / "sweeps" / "k_range.yaml").read_text())
    sweep["parameters"]["cluster.n_clusters"]["values"] = [3, 5000]  # more segments than customers
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(sweep))
    assert (
        main(
            [
                "sweep",
                str(path),
                "--data",
                str(synthetic_table[0]),
                *FAST,
                "-S",
                "registry.auto_register=false",
            ]
        )
        == 0
    )
    trials = [
        json.loads(line) for line in (_sweep_dir(segment_home) / "trials.jsonl").read_text().splitlines()
    ]
    assert [t["state"] for t in trials] == ["finished", "failed"]
    assert "5000" in trials[1]["error"]
    failed = [r for r in map(read_offline_run, offline_runs(segment_home)) if r.exit_code == 1]
    assert len(failed) == 1
    assert "failed" in failed[0].tags
    assert failed[0].config["cluster.n_clusters"] == 5000


def test_train_runs_under_wandb_agents_own_launcher(
    synthetic_table: tuple[Path, pd.DataFrame],
    segment_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agent's code builds the command from the sweep YAML and starts it, as `wandb agent` does."""
    from wandb import wandb_agent

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep42")
    monkeypatch.setenv("WANDB_RUN_ID", "placeholder")  # restored afterwards; the agent overwrites it
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", "placeholder")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert shutil.which("segment")
    sweep = yaml.safe_load((ROOT / "sweeps" / "k_range.yaml").read_text())
    agent = wandb_agent.Agent(api=None, queue=queue.Queue(), sweep_id="sweep42")
    agent._sweep_command = sweep["command"]
    params = {
        "cluster.kind": {"value": "kmeans"},
        "cluster.n_clusters": {"value": 4},
        "data.path": {"value": str(synthetic_table[0])},
        "evaluate.stability_resamples": {"value": 2},
    }
    agent._command_run({"type": "run", "run_id": "agentrun1", "args": params, "program": "segment"})
    process = agent._run_processes["agentrun1"]._popen
    assert process.wait(timeout=600) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())["n_clusters"] == 4
    (offline,) = offline_runs(tmp_path)
    run = read_offline_run(offline)
    assert run.run_id == "agentrun1"
    assert run.sweep_id == "sweep42"
    assert run.config["cluster.n_clusters"] == 4
    assert run.config["evaluate.stability_resamples"] == 2
    assert run.summary["n_clusters"] == 4


def test_ctrl_c_records_the_current_trial_and_stops(
    synthetic_table: tuple[Path, pd.DataFrame], segment_home: Path
) -> None:
    import signal
    import subprocess
    import time

    segment = Path(sys.executable).parent / "segment"
    command = [
        str(segment),
        "sweep",
        str(ROOT / "sweeps" / "k_range.yaml"),
        "--data",
        str(synthetic_table[0]),
        *FAST,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        records = list((segment_home / "sweeps").glob("*/trials.jsonl"))
        if records and records[0].read_text().count("\n") >= 1:
            break
        time.sleep(0.2)
    time.sleep(1)  # inside a later trial
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 130
    states = [json.loads(line)["state"] for line in records[0].read_text().splitlines()]
    summary = json.loads((records[0].parent / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert len(states) < 6  # the grid was not finished
    # The trial under way is recorded as killed (unless the signal fell between two trials).
    assert set(states[:-1]) == {"finished"}
    assert states[-1] in {"killed", "finished"}
    assert states[-1] == "killed" or "killed" not in out


def test_sweep_as_a_deployable_flow_runs_trials_as_subflows(
    synthetic_table: tuple[Path, pd.DataFrame], segment_home: Path
) -> None:
    from segmentation_workflows.sweep import sweep_segmentation

    summary = sweep_segmentation(
        str(ROOT / "sweeps" / "k_range.yaml"),
        str(synthetic_table[0]),
        count=2,
        overrides=["evaluate.stability_resamples=2", "registry.auto_register=false"],
    )
    assert [t["state"] for t in summary["trials"]] == ["finished", "finished"]
    assert summary["best"] in {0, 1}
    assert Path(summary["directory"], "trials.jsonl").is_file()
