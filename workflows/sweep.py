"""``segment sweep``: run a W&B sweep YAML offline, one training flow run per trial.

Trials are proposed by W&B's own engine (:mod:`segmentation.sweep`); each is a full ``train-segmentation``
flow run whose W&B run is grouped under the sweep ID and tagged ``sweep``. Trial records are appended to
``<sweep dir>/trials.jsonl`` as they finish. A failing trial is recorded as failed (and as a failed W&B run)
and the sweep goes on; Ctrl-C records the current trial as killed and stops. ``promote=True`` registers the
best trial's bundle (by the sweep's metric and goal) and runs the promotion gate.
"""

from __future__ import annotations

import json
import logging
import secrets
import signal
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from prefect import flow

from segmentation import sweep as sweeps_lib
from segmentation import tracking
from segmentation.config import SegmentConfig, load_config
from segmentation.errors import SegmentationError
from segmentation.registry import (
    LocalRegistry,
    ModelVersion,
    PromotionRefusedError,
    metric_value,
    registry_root,
)
from workflows.train import run_training, state_home

logger = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """What an offline sweep did."""

    sweep_id: str
    directory: Path
    trials: list[sweeps_lib.Trial]
    best: sweeps_lib.Trial | None
    interrupted: bool = False
    promoted: ModelVersion | None = None
    refused: list[str] = field(default_factory=list)


def _record(directory: Path, trial: sweeps_lib.Trial) -> None:
    with (directory / "trials.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(trial), default=str, sort_keys=True) + "\n")


def _failed_run(config: SegmentConfig | None, params: dict[str, Any], group: str, error: str) -> None:
    """A W&B run for a trial that never reached tracking, so the dashboard shows it as failed."""
    base = config or load_config()
    if tracking.resolve_mode(base.tracking) == "disabled":
        return
    import wandb

    run = wandb.init(
        project=base.tracking.project,
        entity=base.tracking.entity,
        dir=str(tracking.tracking_dir(base.tracking)),
        mode=cast(Any, tracking.resolve_mode(base.tracking)),
        job_type="train",
        group=group,
        tags=["segmentation", "sweep", "failed"],
        config=params,
        reinit="finish_previous",
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
    )
    run.summary["error"] = error[:2000]
    run.finish(exit_code=1)


def run_sweep(
    sweep_path: str | Path,
    *,
    data: str,
    config_path: str | Path | None = None,
    overrides: list[str] | None = None,
    count: int | None = None,
    seed: int = 0,
    promote: bool = False,
    out_root: Path | None = None,
) -> SweepResult:
    """Run trials until the grid is exhausted or ``count`` (or the YAML's ``run_cap``) is reached.

    Args:
        sweep_path: a sweep YAML (W&B format).
        data: the training table.
        config_path: base configuration (default: the packaged defaults).
        overrides: ``key=value`` overrides applied before each trial's parameters.
        count: number of trials (required for random and bayes unless the YAML has ``run_cap``).
        seed: seeds the engine's random and bayes proposals.
        promote: register the best trial and run the promotion gate.
        out_root: where sweep directories go (default ``$SEGMENT_HOME/sweeps``).
    """
    sweep = sweeps_lib.load_sweep(sweep_path)
    cap = sweeps_lib.trial_cap(sweep, count)
    base_overrides = list(overrides or [])
    base = load_config(config_path, base_overrides)  # fail early on a bad base configuration
    metric = sweep["metric"]["name"]
    sweep_id = f"{Path(sweep_path).stem}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    directory = (out_root or state_home() / "sweeps") / sweep_id
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sweep.yaml").write_text(Path(sweep_path).read_text(encoding="utf-8"), encoding="utf-8")
    trials: list[sweeps_lib.Trial] = []
    interrupted = False
    # Ctrl-C may land inside a Prefect task, which reports it as a crashed run (an ordinary exception)
    # rather than letting KeyboardInterrupt through: remember the signal itself.
    stop = threading.Event()
    in_trial = threading.Event()
    previous_handler = None
    if threading.current_thread() is threading.main_thread():

        def on_sigint(_signum: int, _frame: object) -> None:
            stop.set()
            if in_trial.is_set():  # between trials the loop just stops at its next check
                raise KeyboardInterrupt

        previous_handler = signal.signal(signal.SIGINT, on_sigint)
    logger.info("sweep %s: %s, metric %s (%s)", sweep_id, sweep["method"], metric, sweeps_lib.goal(sweep))
    while cap is None or len(trials) < cap:
        if stop.is_set():
            interrupted = True
            break
        params = sweeps_lib.propose(sweep, trials, seed)
        if params is None:
            logger.info("sweep %s: grid exhausted after %d trials", sweep_id, len(trials))
            break
        trial = sweeps_lib.Trial(index=len(trials), params=params)
        run_dir = directory / f"trial-{trial.index:03d}"
        logger.info("sweep %s: trial %d %s", sweep_id, trial.index, params)
        config: SegmentConfig | None = None
        try:
            config = load_config(config_path, [*base_overrides, *params.items()])
            in_trial.set()
            try:
                trained = run_training(data, run_dir, config, tracking_group=sweep_id)
            finally:
                in_trial.clear()
            trial.run_dir = str(run_dir)
            trial.registry = trained["paths"].get("registry")
            trial.metric = metric_value(trained["metrics"], metric)
            if trial.metric is None:
                raise SegmentationError(f"training did not log the sweep metric {metric!r}")
            trial.state = "finished"
        except KeyboardInterrupt:
            stop.set()
        except Exception as exc:  # a failed trial must not end the sweep
            if not stop.is_set():
                trial.state, trial.error = "failed", f"{type(exc).__name__}: {exc}"
                logger.warning("sweep %s: trial %d failed: %s", sweep_id, trial.index, trial.error)
                _failed_run(config, params, sweep_id, trial.error)
        if stop.is_set():
            trial.state, trial.error, interrupted = "killed", "interrupted (Ctrl-C)", True
        trials.append(trial)
        _record(directory, trial)
        if interrupted:
            logger.warning("sweep %s: interrupted; %d trials recorded", sweep_id, len(trials))
            break
    if previous_handler is not None:
        signal.signal(signal.SIGINT, previous_handler)
    tracking.flush()  # every trial's W&B files complete on disk before anyone reads or syncs them
    winner = sweeps_lib.best(trials, sweep)
    result = SweepResult(sweep_id, directory, trials, winner, interrupted)
    if promote and winner is not None and not interrupted:
        registry = LocalRegistry(registry_root(base.registry.dir), base.registry.name or base.model_name)
        version = registry.register(Path(str(winner.run_dir)) / "bundle", source=winner.run_dir)
        try:
            result.promoted = registry.promote(version.version, base.registry)
        except PromotionRefusedError as exc:
            result.refused = exc.reasons
    (directory / "summary.json").write_text(
        json.dumps(
            {
                "sweep_id": sweep_id,
                "method": sweep["method"],
                "metric": metric,
                "goal": sweeps_lib.goal(sweep),
                "trials": len(trials),
                "states": {s: sum(t.state == s for t in trials) for s in ("finished", "failed", "killed")},
                "best": asdict(winner) if winner else None,
                "promoted": result.promoted.tag if result.promoted else None,
                "refused": result.refused,
                "interrupted": interrupted,
            },
            indent=2,
            default=str,
        ),
        encoding="utf-8",
    )
    return result


@flow(name="sweep-segmentation", log_prints=False, persist_result=False)
def sweep_segmentation(
    sweep_file: str,
    data_path: str,
    count: int | None = None,
    seed: int = 0,
    promote: bool = False,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """A sweep as a deployable flow: every trial is a ``train-segmentation`` subflow run.

    Returns:
        The sweep's summary: ID, directory, trial states and metrics, best trial, promotion outcome.
    """
    result = run_sweep(
        sweep_file, data=data_path, overrides=overrides, count=count, seed=seed, promote=promote
    )
    return {
        "sweep_id": result.sweep_id,
        "directory": str(result.directory),
        "trials": [
            {"index": t.index, "state": t.state, "metric": t.metric, "params": t.params}
            for t in result.trials
        ],
        "best": None if result.best is None else result.best.index,
        "promoted": None if result.promoted is None else result.promoted.tag,
        "refused": result.refused,
    }
