"""``segment sweep``: run a W&B sweep YAML offline, one training flow run per trial.

Trials are proposed by W&B's own engine (:mod:`segmentation.sweep`); each is a full ``train-segmentation``
flow run whose W&B run is grouped under the sweep ID and tagged ``sweep``. Trial records are appended to
``<sweep dir>/trials.jsonl`` as they finish. A failing trial is recorded as failed (and as a failed W&B run)
and the sweep goes on; Ctrl-C records the current trial as killed and stops. ``promote=True`` registers the
best trial's bundle (by the sweep's metric and goal) and runs the promotion gate.

Two ways to run the trials:

- in-process (the default): one trial after another, each a ``train-segmentation`` subflow of this process;
- on a work pool (``deployment="train-segmentation/local"``): each trial is a flow run of that deployment,
  submitted with :func:`prefect.deployments.run_deployment` and picked up by whichever worker polls the
  pool; up to ``parallel`` are in flight at once and their states are polled through the Prefect client.
  What actually runs at once on a machine is bounded by the pool's concurrency limit
  (``prefect work-pool set-concurrency-limit POOL N``) and the worker's (``prefect worker start --limit N``).
  The trial's ``out_dir`` must be a path the worker can write and this process can read (the same machine,
  or a shared file system): its ``metrics.json`` carries the trial's metric.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from prefect import flow

from segmentation import sweep as sweeps_lib
from segmentation import tracking
from segmentation.config import SegmentConfig, load_config
from segmentation.data.io import is_url
from segmentation.errors import ConfigError, SegmentationError
from segmentation.registry import (
    LocalRegistry,
    ModelVersion,
    PromotionRefusedError,
    metric_value,
)
from segmentation.settings import Settings
from segmentation_workflows.train import run_training

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun, State

logger = logging.getLogger(__name__)

POLL_SECONDS = 2.0  # how often the states of in-flight trial flow runs are read


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


@dataclass
class _Plan:
    """What every trial of one sweep shares."""

    sweep: dict[str, Any]
    sweep_id: str
    directory: Path
    data: str
    config_path: str | Path | None
    overrides: list[str]
    cap: int | None
    seed: int
    metric: str
    stop: threading.Event
    settings: Settings

    def run_dir(self, trial: sweeps_lib.Trial) -> Path:
        return self.directory / f"trial-{trial.index:03d}"

    def config(self, trial: sweeps_lib.Trial) -> SegmentConfig:
        return load_config(self.config_path, [*self.overrides, *trial.params.items()])

    def wants_more(self, trials: list[sweeps_lib.Trial]) -> bool:
        return not self.stop.is_set() and (self.cap is None or len(trials) < self.cap)


def _record(directory: Path, trial: sweeps_lib.Trial) -> None:
    with (directory / "trials.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(trial), default=str, sort_keys=True) + "\n")


def _failed_run(
    config: SegmentConfig | None, params: dict[str, Any], group: str, error: str, settings: Settings
) -> None:
    """A W&B run for a trial that never reached tracking, so the dashboard shows it as failed."""
    base = config or load_config()
    mode = tracking.resolve_mode(base.tracking, settings)
    if mode == "disabled":
        return
    import wandb

    run = wandb.init(
        project=base.tracking.project,
        entity=base.tracking.entity,
        dir=str(tracking.tracking_dir(base.tracking, settings)),
        mode=cast(Any, mode),
        job_type="train",
        group=group,
        tags=["segmentation", "sweep", "failed"],
        config=params,
        reinit="finish_previous",
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
    )
    run.summary["error"] = error[:2000]
    run.finish(exit_code=1)


def _fail(plan: _Plan, trial: sweeps_lib.Trial, config: SegmentConfig | None, error: str) -> None:
    trial.state, trial.error = "failed", error
    logger.warning("sweep %s: trial %d failed: %s", plan.sweep_id, trial.index, error)
    _failed_run(config, trial.params, plan.sweep_id, error, plan.settings)


def _sequential_trials(plan: _Plan, in_trial: threading.Event) -> tuple[list[sweeps_lib.Trial], bool]:
    """One trial after another, each a ``train-segmentation`` subflow run in this process."""
    trials: list[sweeps_lib.Trial] = []
    interrupted = False
    while plan.cap is None or len(trials) < plan.cap:
        if plan.stop.is_set():
            interrupted = True
            break
        params = sweeps_lib.propose(plan.sweep, trials, plan.seed)
        if params is None:
            logger.info("sweep %s: grid exhausted after %d trials", plan.sweep_id, len(trials))
            break
        trial = sweeps_lib.Trial(index=len(trials), params=params)
        run_dir = plan.run_dir(trial)
        logger.info("sweep %s: trial %d %s", plan.sweep_id, trial.index, params)
        config: SegmentConfig | None = None
        try:
            config = plan.config(trial)
            in_trial.set()
            try:
                trained = run_training(
                    plan.data, run_dir, config, settings=plan.settings, tracking_group=plan.sweep_id
                )
            finally:
                in_trial.clear()
            trial.run_dir = str(run_dir)
            trial.registry = trained["paths"].get("registry")
            trial.metric = metric_value(trained["metrics"], plan.metric)
            if trial.metric is None:
                raise SegmentationError(f"training did not log the sweep metric {plan.metric!r}")
            trial.state = "finished"
        except KeyboardInterrupt:
            plan.stop.set()
        except Exception as exc:  # a failed trial must not end the sweep
            if not plan.stop.is_set():
                _fail(plan, trial, config, f"{type(exc).__name__}: {exc}")
        if plan.stop.is_set():
            trial.state, trial.error, interrupted = "killed", "interrupted (Ctrl-C)", True
        trials.append(trial)
        _record(plan.directory, trial)
        if interrupted:
            logger.warning("sweep %s: interrupted; %d trials recorded", plan.sweep_id, len(trials))
            break
    return trials, interrupted


@contextmanager
def _api_client(deployment: str) -> Iterator[SyncPrefectClient]:
    """A client of the Prefect server that holds ``deployment``; never a temporary server.

    Raises:
        ConfigError: no ``PREFECT_API_URL``, the server does not answer, or the deployment is unknown.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    if not api:
        raise ConfigError(
            f"--deployment {deployment} needs a Prefect server: run `make server` (or `prefect server start` "
            "plus a worker on the deployment's pool) and export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(deployment)
        except ObjectNotFound as exc:
            raise ConfigError(
                f"deployment {deployment!r} not found on {api}: deploy it (`make server` deploys the local "
                f"ones, or `prefect deploy --name {deployment}`)"
            ) from exc
        except Exception as exc:  # connection refused, timeouts, a URL that is not a Prefect API
            raise ConfigError(
                f"Prefect server at {api} is not reachable ({type(exc).__name__}: {exc}); "
                "start one with `make server`"
            ) from exc
        yield client


def _submit(plan: _Plan, deployment: str, trial: sweeps_lib.Trial, config: SegmentConfig) -> FlowRun:
    """Create the trial's flow run; the idempotency key makes a repeated submission return the same run."""
    from prefect.deployments import run_deployment

    key = f"{plan.sweep_id}/trial-{trial.index:03d}"
    data = plan.data if is_url(plan.data) else str(Path(plan.data).resolve())
    return cast(
        "FlowRun",
        run_deployment(
            deployment,
            parameters={
                "data_path": data,
                "out_dir": str(plan.run_dir(trial).resolve()),
                # The resolved configuration (base file + overrides + the trial's parameters), validated here:
                # the worker needs neither the base file nor the override syntax.
                "config": config.model_dump(mode="json"),
                "tracking_group": plan.sweep_id,
            },
            timeout=0,
            flow_run_name=f"{plan.sweep_id}-trial-{trial.index:03d}",
            tags=["sweep", f"sweep:{plan.sweep_id}", f"trial:{trial.index}"],
            idempotency_key=key,
        ),
    )


def _registered(config: SegmentConfig, run_dir: Path, settings: Settings) -> str | None:
    """``name:vN`` of the version the trial's flow run registered (found by its source run directory)."""
    if not config.registry.auto_register:
        return None
    registry = LocalRegistry(
        settings.registry_dir(config.registry.dir), config.registry.name or config.model_name
    )
    try:
        versions = registry.versions()
    except (OSError, SegmentationError):  # the worker's registry may live on another machine
        return None
    found = [v for v in versions if v.source == str(run_dir)]
    return f"{registry.name}:{found[-1].tag}" if found else None


def _finish(plan: _Plan, trial: sweeps_lib.Trial, run: FlowRun, state: State, config: SegmentConfig) -> None:
    """Record a trial whose flow run reached a final ``state``."""
    run_dir = plan.run_dir(trial).resolve()
    trial.extra["flow_run_state"] = state.name
    if state.is_completed():
        trial.run_dir = str(run_dir)
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            _fail(
                plan, trial, config, f"flow run completed but {run_dir / 'metrics.json'} is unreadable: {exc}"
            )
            return
        trial.metric = metric_value(metrics, plan.metric)
        if trial.metric is None:
            _fail(plan, trial, config, f"training did not log the sweep metric {plan.metric!r}")
            return
        trial.registry = _registered(config, run_dir, plan.settings)
        trial.state = "finished"
    elif state.is_cancelled():
        trial.state, trial.error = "killed", f"flow run {run.name} was cancelled"
    else:  # Failed or Crashed
        _fail(plan, trial, config, f"flow run {run.name} {state.name}: {state.message or ''}".strip())


def _cancel(client: SyncPrefectClient, run_id: UUID) -> None:
    """Cancel a trial's flow run: a scheduled one directly, a started one through its worker."""
    from prefect.states import Cancelled, Cancelling

    run = client.read_flow_run(run_id)
    if run.state is not None and run.state.is_final():
        return
    if run.state is not None and run.state.is_scheduled():
        client.set_flow_run_state(run_id, Cancelled(message="sweep interrupted (Ctrl-C)"), force=True)
    else:  # the worker sees Cancelling and stops the process it started
        client.set_flow_run_state(run_id, Cancelling(message="sweep interrupted (Ctrl-C)"), force=True)


def _deployed_trials(plan: _Plan, deployment: str, parallel: int) -> tuple[list[sweeps_lib.Trial], bool]:
    """Trials as flow runs of ``deployment``, up to ``parallel`` in flight, polled until final.

    In-flight trials stay in the engine's view as ``running``: a grid skips their points, and bayes
    treats them as pending (it fits its model with their predicted values in place of the metric).
    """
    trials: list[sweeps_lib.Trial] = []
    in_flight: dict[UUID, tuple[sweeps_lib.Trial, SegmentConfig]] = {}
    exhausted = False
    with _api_client(deployment) as client:
        try:
            while True:
                while not exhausted and len(in_flight) < parallel and plan.wants_more(trials):
                    exhausted = not _submit_next(plan, deployment, trials, in_flight)
                if not in_flight or plan.stop.wait(POLL_SECONDS):
                    break
                _collect_finished(plan, client, in_flight)
        except KeyboardInterrupt:  # outside the main thread no handler turns Ctrl-C into `stop`
            plan.stop.set()
        interrupted = plan.stop.is_set()
        for run_id, (trial, _config) in in_flight.items():
            try:
                _cancel(client, run_id)
                trial.error = f"interrupted (Ctrl-C); flow run {run_id} cancelled"
            except Exception as exc:  # record the trial even if the server is gone
                trial.error = f"interrupted (Ctrl-C); cancelling flow run {run_id} failed: {exc}"
            trial.state = "killed"
            _record(plan.directory, trial)
    if interrupted:
        logger.warning("sweep %s: interrupted; %d trials recorded", plan.sweep_id, len(trials))
    return sorted(trials, key=lambda t: t.index), interrupted


def _submit_next(
    plan: _Plan,
    deployment: str,
    trials: list[sweeps_lib.Trial],
    in_flight: dict[UUID, tuple[sweeps_lib.Trial, SegmentConfig]],
) -> bool:
    """Propose the next trial and submit it as a flow run; False when a grid is exhausted.

    A trial whose configuration or submission fails is recorded as failed; the sweep goes on.
    """
    params = sweeps_lib.propose(plan.sweep, trials, plan.seed)
    if params is None:
        logger.info("sweep %s: grid exhausted after %d trials", plan.sweep_id, len(trials))
        return False
    trial = sweeps_lib.Trial(index=len(trials), params=params)
    trials.append(trial)  # state "running": the engine sees it as pending
    config: SegmentConfig | None = None
    try:
        config = plan.config(trial)
        run = _submit(plan, deployment, trial, config)
    except Exception as exc:  # a bad trial configuration must not end the sweep
        _fail(plan, trial, config, f"{type(exc).__name__}: {exc}")
        _record(plan.directory, trial)
        return True
    trial.extra["flow_run_id"] = str(run.id)
    in_flight[run.id] = (trial, config)
    logger.info(
        "sweep %s: trial %d submitted as flow run %s %s", plan.sweep_id, trial.index, run.name, params
    )
    return True


def _collect_finished(
    plan: _Plan, client: SyncPrefectClient, in_flight: dict[UUID, tuple[sweeps_lib.Trial, SegmentConfig]]
) -> None:
    """Read every in-flight trial's flow run; record and drop the ones that reached a final state."""
    for run_id, (trial, config) in list(in_flight.items()):
        try:
            run = client.read_flow_run(run_id)
        except Exception as exc:  # the server restarting: read it again at the next poll
            logger.warning("sweep %s: cannot read flow run %s: %s", plan.sweep_id, run_id, exc)
            continue
        if run.state is not None and run.state.is_final():
            del in_flight[run_id]
            _finish(plan, trial, run, run.state, config)
            _record(plan.directory, trial)
            logger.info("sweep %s: trial %d %s %s", plan.sweep_id, trial.index, trial.state, trial.metric)


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
    parallel: int = 1,
    deployment: str | None = None,
    settings: Settings,
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
        parallel: trials in flight at once (only with ``deployment``).
        deployment: run each trial as a flow run of this deployment (``train-segmentation/local``) on its
            work pool, through the Prefect server of ``PREFECT_API_URL``; None runs trials in-process.
        settings: where sweeps, the registry and W&B files live (``$SEGMENT_HOME``), as the entry point read.

    Raises:
        ConfigError: a bad sweep or base configuration, ``parallel`` below 1 or above 1 without a
            deployment, or (with a deployment) no reachable Prefect server or no such deployment.
    """
    if parallel < 1:
        raise ConfigError(f"parallel must be at least 1 (got {parallel})")
    if parallel > 1 and deployment is None:
        raise ConfigError(
            "parallel trials run as flow runs on a work pool: add --deployment train-segmentation/local "
            "(with `make server` running and PREFECT_API_URL set)"
        )
    sweep = sweeps_lib.load_sweep(sweep_path)
    cap = sweeps_lib.trial_cap(sweep, count)
    base_overrides = list(overrides or [])
    base = load_config(config_path, base_overrides)  # fail early on a bad base configuration
    metric = sweep["metric"]["name"]
    sweep_id = f"{Path(sweep_path).stem}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    directory = (out_root or settings.sweeps_dir) / sweep_id
    # Ctrl-C may land inside a Prefect task, which reports it as a crashed run (an ordinary exception)
    # rather than letting KeyboardInterrupt through: remember the signal itself.
    stop = threading.Event()
    in_trial = threading.Event()
    plan = _Plan(
        sweep, sweep_id, directory, data, config_path, base_overrides, cap, seed, metric, stop, settings
    )
    if deployment is not None:
        with _api_client(deployment):  # no server or no deployment: fail before anything is written
            pass
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sweep.yaml").write_text(Path(sweep_path).read_text(encoding="utf-8"), encoding="utf-8")
    logger.info(
        "sweep %s: %s, metric %s (%s)%s",
        sweep_id,
        sweep["method"],
        metric,
        sweeps_lib.goal(sweep),
        "" if deployment is None else f", trials on deployment {deployment}, {parallel} at a time",
    )
    with _ctrl_c_stops(stop, in_trial):
        if deployment is None:
            trials, interrupted = _sequential_trials(plan, in_trial)
        else:
            trials, interrupted = _deployed_trials(plan, deployment, parallel)
    tracking.flush()  # every trial's W&B files complete on disk before anyone reads or syncs them
    winner = sweeps_lib.best(trials, sweep)
    result = SweepResult(sweep_id, directory, trials, winner, interrupted)
    if promote and winner is not None and not interrupted:
        registry = LocalRegistry(
            settings.registry_dir(base.registry.dir), base.registry.name or base.model_name
        )
        version = registry.register(Path(str(winner.run_dir)) / "bundle", source=winner.run_dir)
        try:
            result.promoted = registry.promote(version.version, base.registry)
        except PromotionRefusedError as exc:
            result.refused = exc.reasons
    _write_summary(result, sweep, deployment, parallel)
    return result


@contextmanager
def _ctrl_c_stops(stop: threading.Event, in_trial: threading.Event) -> Iterator[None]:
    """In the main thread, Ctrl-C sets ``stop`` (and interrupts a trial in progress) for the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(_signum: int, _frame: object) -> None:
        stop.set()
        if in_trial.is_set():  # between trials the loop just stops at its next check
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _write_summary(result: SweepResult, sweep: dict[str, Any], deployment: str | None, parallel: int) -> None:
    """``summary.json`` in the sweep's directory: method, metric, trial states, best, promotion."""
    trials, winner = result.trials, result.best
    summary = {
        "sweep_id": result.sweep_id,
        "method": sweep["method"],
        "metric": sweep["metric"]["name"],
        "goal": sweeps_lib.goal(sweep),
        "deployment": deployment,
        "parallel": parallel,
        "trials": len(trials),
        "states": {s: sum(t.state == s for t in trials) for s in ("finished", "failed", "killed")},
        "best": asdict(winner) if winner else None,
        "promoted": result.promoted.tag if result.promoted else None,
        "refused": result.refused,
        "interrupted": result.interrupted,
    }
    (result.directory / "summary.json").write_text(
        json.dumps(summary, indent=2, default=str), encoding="utf-8"
    )


@flow(name="sweep-segmentation", log_prints=False, persist_result=False)
def sweep_segmentation(
    sweep_file: str,
    data_path: str,
    count: int | None = None,
    seed: int = 0,
    promote: bool = False,
    overrides: list[str] | None = None,
    parallel: int = 1,
    deployment: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """A sweep as a deployable flow: every trial a ``train-segmentation`` subflow, or a deployment's flow run.

    Args:
        sweep_file: a sweep YAML (W&B format).
        data_path: the training table.
        count: number of trials (random and bayes need it unless the YAML has ``run_cap``).
        seed: seeds the engine's random and bayes proposals.
        promote: register the best trial and run the promotion gate.
        overrides: ``key=value`` overrides applied before each trial's parameters.
        parallel: trials in flight at once (with ``deployment``).
        deployment: e.g. ``train-segmentation/local``: trials become flow runs of that deployment on its
            work pool (linked as subflows of this run). When this flow itself runs on the same pool it
            holds one of the pool's slots, so give the pool ``parallel + 1``.
        settings: the environment as the caller read it; None means this flow run's, read here.

    Returns:
        The sweep's summary: ID, directory, trial states and metrics, best trial, promotion outcome.
    """
    result = run_sweep(
        sweep_file,
        data=data_path,
        overrides=overrides,
        count=count,
        seed=seed,
        promote=promote,
        parallel=parallel,
        deployment=deployment,
        settings=settings or Settings.from_environ(os.environ),
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
