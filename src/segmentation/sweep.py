"""Sweep definitions in W&B's own YAML format, and offline trial proposal with W&B's ``sweeps`` engine.

The same file drives ``wandb sweep`` + ``wandb agent`` online (the agent runs the ``command`` with the
trial's parameters as ``key=value`` arguments) and ``segment sweep`` offline, where
:func:`propose` asks the ``sweeps`` package (the engine behind W&B's sweep controller) for the next trial
given the finished ones: grid (until exhausted), random and bayes.

Parameter names are dotted configuration keys (``featurize.encoding_dim``), exactly the overrides
``segment train`` accepts, and the metric name is a key of the run summary (``silhouette``,
``stability.ari_pairwise_mean``): :func:`load_sweep` checks both before anything runs.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from segmentation.config import load_config
from segmentation.errors import ConfigError

METHODS = ("grid", "random", "bayes")
# Summary keys every training run logs (tracking.numeric_summary of metrics.json); a sweep's metric must be
# one of them or a key under one of the prefixes (stability.*, featurizer.*).
KNOWN_METRICS = (
    "silhouette",
    "silhouette_feature_space",
    "davies_bouldin",
    "calinski_harabasz",
    "noise_fraction",
    "n_clusters",
    "min_segment_share",
    "max_segment_share",
    "assignment_agreement",
)
KNOWN_PREFIXES = ("stability.", "featurizer.", "k_selection.")


@dataclass
class Trial:
    """One trial of an offline sweep."""

    index: int
    params: dict[str, Any]
    state: str = "running"  # running, finished, failed, killed
    metric: float | None = None
    run_dir: str | None = None
    registry: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_sweep_run(self) -> Any:
        """The ``sweeps.SweepRun`` the engine reasons about."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sweeps 0.2.0 declares pydantic v1-style config keys
            from sweeps import RunState, SweepRun  # type: ignore[attr-defined]

        state = {"finished": RunState.finished, "failed": RunState.failed, "killed": RunState.killed}.get(
            self.state, RunState.running
        )
        return SweepRun(
            name=f"trial-{self.index:03d}",
            state=state,
            config={k: {"value": v} for k, v in self.params.items()},
            summary_metrics={} if self.metric is None else {"_metric": self.metric},
        )


def _sample_value(spec: dict[str, Any]) -> Any:
    if "value" in spec:
        return spec["value"]
    if spec.get("values"):
        return spec["values"][0]
    if "min" in spec:
        return spec["min"]
    raise ConfigError(f"sweep parameter spec {spec!r} needs value, values or min/max")


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read and check a sweep YAML.

    Raises:
        ConfigError: unreadable file, unknown method, missing or unknown metric, or a parameter that is not
            a configuration key (or whose first value the configuration rejects).
    """
    path = Path(path)
    try:
        sweep = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read sweep {path}: {exc}") from exc
    if not isinstance(sweep, dict):
        raise ConfigError(f"sweep {path} must be a mapping")
    method = sweep.get("method")
    if method not in METHODS:
        raise ConfigError(f"sweep {path}: method must be one of {', '.join(METHODS)} (got {method!r})")
    metric = sweep.get("metric") or {}
    name = metric.get("name")
    if not name:
        raise ConfigError(f"sweep {path}: metric.name is required")
    if name not in KNOWN_METRICS and not name.startswith(KNOWN_PREFIXES):
        raise ConfigError(
            f"sweep {path}: metric {name!r} is not logged by training; use one of {', '.join(KNOWN_METRICS)} "
            "or a stability.* / featurizer.* key"
        )
    if metric.get("goal", "minimize") not in {"minimize", "maximize"}:
        raise ConfigError(f"sweep {path}: metric.goal must be minimize or maximize")
    parameters = sweep.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise ConfigError(f"sweep {path}: parameters must be a non-empty mapping")
    sample = [(key, _sample_value(spec)) for key, spec in parameters.items() if isinstance(spec, dict)]
    if len(sample) != len(parameters):
        raise ConfigError(f"sweep {path}: every parameter needs a mapping (value, values, min/max)")
    try:
        load_config(overrides=sample)
    except ConfigError as exc:
        raise ConfigError(f"sweep {path}: parameters do not fit the configuration: {exc}") from exc
    return sweep


def goal(sweep: dict[str, Any]) -> str:
    """``maximize`` or ``minimize`` (W&B's default is minimize)."""
    return str(sweep["metric"].get("goal", "minimize"))


@contextlib.contextmanager
def _global_generators_seeded(seed: int) -> Iterator[None]:
    """The global generators of numpy and Python seeded for a block, then put back as they were."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def propose(sweep: dict[str, Any], trials: list[Trial], seed: int) -> dict[str, Any] | None:
    """The next trial's parameters from W&B's engine, or None when a grid is exhausted.

    Random and bayes sampling draw from numpy's and Python's global generators (the engine takes no
    generator), so they are seeded per trial (``seed`` + trial number) for the call and restored after
    it: a sweep rerun with the same seed proposes the same trials, and no other code's draws change.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sweeps 0.2.0 declares pydantic v1-style config keys
        import sweeps

    engine_config = {
        "method": sweep["method"],
        "parameters": sweep["parameters"],
        "metric": {"name": "_metric", "goal": goal(sweep)},
    }
    if "early_terminate" in sweep:
        engine_config["early_terminate"] = sweep["early_terminate"]
    index = len(trials)
    with _global_generators_seeded(seed + index), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proposal = sweeps.next_run(  # type: ignore[attr-defined]
            engine_config, [t.as_sweep_run() for t in trials], validate=False
        )
    if proposal is None:
        return None
    return {key: spec["value"] for key, spec in proposal.config.items()}


def best(trials: list[Trial], sweep: dict[str, Any]) -> Trial | None:
    """The finished trial with the best metric (ties: the earlier trial)."""
    done = [t for t in trials if t.state == "finished" and t.metric is not None]
    if not done:
        return None
    sign = -1 if goal(sweep) == "maximize" else 1
    return min(done, key=lambda t: (sign * float(t.metric), t.index))  # type: ignore[arg-type]


def trial_cap(sweep: dict[str, Any], count: int | None) -> int | None:
    """How many trials to run: ``--count``, else ``run_cap``; None only for a grid (runs to exhaustion).

    Raises:
        ConfigError: a random or bayes sweep without a count (it would never end).
    """
    cap = count if count is not None else sweep.get("run_cap")
    if cap is None and sweep["method"] != "grid":
        raise ConfigError(f"a {sweep['method']} sweep never ends on its own: pass --count N or set run_cap")
    return None if cap is None else int(cap)
