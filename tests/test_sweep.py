"""Sweep YAMLs: checked against the configuration and the logged metrics; W&B's engine proposes trials."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from segmentation.config import load_config
from segmentation.errors import ConfigError
from segmentation.sweep import Trial, best, load_sweep, propose, trial_cap

SWEEPS = sorted((Path(__file__).parents[1] / "sweeps").glob("*.yaml"))


def test_the_project_sweeps_are_valid_and_cover_the_required_grids() -> None:
    loaded = {path.stem: load_sweep(path) for path in SWEEPS}
    assert {"featurizer_x_clusterer", "autoencoder", "k_range", "hdbscan"} <= set(loaded)
    assert set(loaded["featurizer_x_clusterer"]["parameters"]) == {"featurize.kind", "cluster.kind"}
    assert {
        "featurize.encoding_dim",
        "featurize.batch_size",
        "featurize.optimizer",
        "featurize.loss",
        "featurize.learning_rate",
    } <= set(loaded["autoencoder"]["parameters"])
    assert "cluster.min_cluster_size" in loaded["hdbscan"]["parameters"]
    for sweep in loaded.values():
        # The command is what `wandb agent` runs: our entry point with the parameters as key=value.
        assert sweep["command"][:3] == ["${env}", "segment", "train"]
        assert "${args_no_hyphens}" in sweep["command"]


def _write(tmp_path: Path, **changes) -> Path:
    sweep = {
        "method": "grid",
        "metric": {"name": "silhouette", "goal": "maximize"},
        "parameters": {"cluster.n_clusters": {"values": [3, 4]}},
    } | changes
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "hyperband"}, "method must be one of"),
        ({"metric": {"name": "accuracy"}}, "not logged by training"),
        ({"metric": {}}, "metric.name is required"),
        ({"parameters": {"cluster.n_clusterz": {"values": [3]}}}, "n_clusterz"),
        ({"parameters": {"featurize.kind": {"values": ["umap"]}}}, "umap"),
    ],
)
def test_bad_sweeps_are_refused_before_any_trial(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_sweep(_write(tmp_path, **changes))


def test_grid_is_exhausted_and_random_needs_a_count(tmp_path: Path) -> None:
    sweep = load_sweep(_write(tmp_path))
    trials: list[Trial] = []
    while (params := propose(sweep, trials, seed=0)) is not None:
        trials.append(Trial(index=len(trials), params=params, state="finished", metric=0.1))
    assert sorted(t.params["cluster.n_clusters"] for t in trials) == [3, 4]
    assert trial_cap(sweep, None) is None
    random_sweep = load_sweep(_write(tmp_path, method="random"))
    with pytest.raises(ConfigError, match="--count"):
        trial_cap(random_sweep, None)
    assert trial_cap(random_sweep | {"run_cap": 5}, None) == 5


def test_random_and_bayes_proposals_follow_the_seed() -> None:
    sweep = load_sweep(next(p for p in SWEEPS if p.stem == "autoencoder"))
    for method in ("random", "bayes"):
        spec = sweep | {"method": method}

        def run(seed: int, spec: dict = spec) -> list[dict]:
            trials: list[Trial] = []
            for i in range(4):
                params = propose(spec, trials, seed)
                trials.append(Trial(index=i, params=params, state="finished", metric=0.1 * i))
            return [t.params for t in trials]

        assert run(7) == run(7)
        assert run(7) != run(8)
        for params in run(7):
            load_config(overrides=list(params.items()))  # every proposal is a valid configuration


def test_best_follows_the_goal_and_ignores_failed_trials() -> None:
    trials = [Trial(0, {}, "finished", 0.2), Trial(1, {}, "failed"), Trial(2, {}, "finished", 0.5)]
    assert best(trials, {"metric": {"name": "silhouette", "goal": "maximize"}}).index == 2
    assert best(trials, {"metric": {"name": "davies_bouldin", "goal": "minimize"}}).index == 0
    assert best([Trial(0, {}, "failed")], {"metric": {"name": "x", "goal": "minimize"}}) is None
