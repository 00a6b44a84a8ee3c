"""A sweep fanned out over a work pool: each trial a flow run of a deployment, two at a time (real stack)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segmentation.data.io import write_table
from segmentation.data.synthetic import make_customers
from segmentation.tracking import offline_runs, read_offline_run
from segmentation_workflows.cli import main

ROOT = Path(__file__).parents[2]
DEPLOYMENT = "train-segmentation/local"
K_RANGE = str(ROOT / "sweeps" / "k_range.yaml")


def test_parallel_trials_need_a_deployment_and_a_deployment_needs_a_server(
    segment_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    assert main(["sweep", K_RANGE, "--parallel", "2"]) == 2
    assert "--deployment train-segmentation/local" in capsys.readouterr().err
    # Never a temporary server: without PREFECT_API_URL the sweep stops before anything runs or is written.
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert main(["sweep", K_RANGE, "--parallel", "2", "--deployment", DEPLOYMENT]) == 2
    err = capsys.readouterr().err
    assert "make server" in err
    assert "PREFECT_API_URL" in err
    assert not (segment_home / "sweeps").exists()


def test_pending_trials_are_not_proposed_again() -> None:
    """What fills the free slots: a grid skips points in flight; bayes plans around pending trials."""
    from segmentation.sweep import Trial, load_sweep, propose

    grid = load_sweep(K_RANGE)
    running = Trial(0, propose(grid, [], 0) or {})
    assert propose(grid, [running], 0) == {"cluster.kind": "kmeans", "cluster.n_clusters": 4}
    bayes = load_sweep(ROOT / "sweeps" / "autoencoder.yaml")
    first = Trial(0, propose(bayes, [], 0) or {})
    second = propose(bayes, [first], 0)  # the first still running
    assert second is not None
    assert second != first.params


@pytest.mark.slow
def test_sweep_trials_run_as_parallel_flow_runs_of_the_deployment(
    stack: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env, home = stack["env"], stack["home"]
    monkeypatch.setenv("SEGMENT_HOME", str(home))  # the sweep's directory and registry: the worker's
    # The pool's concurrency bounds how many trials the worker runs at once (`--limit 2` would too).
    prefect = str(Path(sys.executable).parent / "prefect")
    pool = ["work-pool", "set-concurrency-limit", "segmentation-local", "2"]
    result = subprocess.run(
        [prefect, *pool], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr

    table, _ = make_customers(2000, 8, 3, seed=3)
    data = tmp_path / "customers.parquet"
    write_table(table, data)
    sweep = yaml.safe_load((ROOT / "sweeps" / "k_range.yaml").read_text())
    sweep["parameters"]["cluster.n_clusters"]["values"] = [2, 3]
    sweep_file = tmp_path / "k2.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep))

    args = ["sweep", str(sweep_file), "--data", str(data), "--parallel", "2", "--deployment", DEPLOYMENT]
    args += ["-S", "evaluate.stability_resamples=0", "-S", "tracking.mode=offline"]
    # This stack's server explicitly (not a temporary one, nor another server this process knows).
    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        assert main(args) == 0
        out = capsys.readouterr().out
        sweep_id = out.split()[1].rstrip(":")  # "sweep <id>: 2 trials in <directory>"
        directory = home / "sweeps" / sweep_id
        trials = sorted(
            (json.loads(line) for line in (directory / "trials.jsonl").read_text().splitlines()),
            key=lambda t: t["index"],
        )
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(DEPLOYMENT)
            runs = [client.read_flow_run(t["extra"]["flow_run_id"]) for t in trials]
        # Submitting a trial again (same sweep and index) returns its flow run instead of a new one.
        again = run_deployment(DEPLOYMENT, timeout=0, idempotency_key=f"{sweep_id}/trial-000")
        assert again.id == runs[0].id

    assert [t["state"] for t in trials] == ["finished", "finished"]
    assert [t["params"]["cluster.n_clusters"] for t in trials] == [2, 3]
    for trial, run in zip(trials, runs, strict=True):
        metrics = json.loads((Path(trial["run_dir"]) / "metrics.json").read_text())
        assert metrics["n_clusters"] == trial["params"]["cluster.n_clusters"]
        assert trial["metric"] == pytest.approx(metrics["silhouette"])
        assert trial["registry"].startswith("customer-segments:v")
        assert run.deployment_id == deployment.id
        assert run.state is not None
        assert run.state.is_completed()
        assert f"sweep:{sweep_id}" in run.tags
        assert run.parameters["out_dir"] == trial["run_dir"]
    (start_a, end_a), (start_b, end_b) = ((run.start_time, run.end_time) for run in runs)
    assert None not in (start_a, end_a, start_b, end_b)
    assert start_a < end_b, "the trials' flow runs did not overlap"
    assert start_b < end_a, "the trials' flow runs did not overlap"

    best = max(trials, key=lambda t: t["metric"])
    assert f"best: trial {best['index']} ({best['metric']:.4f})" in out
    assert json.loads((directory / "summary.json").read_text())["best"]["index"] == best["index"]
    # Each trial's W&B run (written by the worker's flow run) is grouped under the sweep ID.
    groups = [read_offline_run(path).group for path in offline_runs(home)]
    assert groups.count(sweep_id) == 2

    clear = ["work-pool", "clear-concurrency-limit", "segmentation-local"]  # the stack is shared
    result = subprocess.run(
        [prefect, *clear], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
