"""``train-segmentation``: the training flow. Tasks are thin wrappers over ``segmentation.stages``.

Caching: every stage task receives a ``cache_key`` computed by :func:`~.caching.stage_keys` from the
data's content hash, the stage's own parameters and its library code, chained through the stages before
it. The task's cache policy is that key plus the task's own source (:data:`~.caching.STAGE_CACHE`), so
the run id never enters the key and reruns reuse results.
Stage outputs (tables, matrices, fitted models) live in a local stage store
(``$SEGMENT_HOME/stages``, default ``./.segment``) as plain pickle files; Prefect persists only the
small handles (``$SEGMENT_HOME/results``), so a cache hit reads one file instead of decoding a large
JSON/base64 result record. If a stored output disappears, the flow recomputes that stage and
refreshes its cache entry. The cache survives across processes and needs no Prefect server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

from segmentation import tracking
from segmentation.bundle import load_bundle
from segmentation.clustering import ClusterResult
from segmentation.config import SegmentConfig, load_config
from segmentation.data.io import file_digest, is_url
from segmentation.errors import DataValidationError
from segmentation.registry import LocalRegistry
from segmentation.resources import measure
from segmentation.settings import Settings
from segmentation.stage_store import StageRef, save_stage, stage_array_path
from segmentation.stages import assemble, fit, load, outputs
from segmentation.stages.evaluate import evaluate as evaluate_run
from segmentation_workflows.caching import EXPIRY, STAGE_CACHE, stage_keys
from segmentation_workflows.retries import IO_RETRIES, retry_io_only


@task(name="hash-data", **IO_RETRIES)
def hash_data(path: str) -> str:
    """Content hash (SHA-256) of the input file: the root of every cache key."""
    return file_digest(path)


@task(
    name="load-validate",
    cache_policy=STAGE_CACHE,
    cache_expiration=EXPIRY,
    persist_result=True,
    **IO_RETRIES,
)
def load_validate(path: str, config: SegmentConfig, cache_key: str, settings: Settings) -> StageRef:
    """Validate the table chunk by chunk (failures are never retried); rows stay in the file.

    CSV and remote tables are staged once as a local Parquet copy in the stage store.
    """
    with measure("load-validate", log=get_run_logger()) as meter:
        table = load.validate_source(
            path,
            config.data,
            source=path,
            seed=config.seed,
            staged=stage_array_path(settings.stages_dir, cache_key, "table").with_suffix(".parquet"),
            sample_size=config.preprocess.fit_sample,
        )
        meter.rows = table.n_rows
        return save_stage(settings.stages_dir, cache_key, table)


@task(name="preprocess", cache_policy=STAGE_CACHE, cache_expiration=EXPIRY, persist_result=True)
def preprocess(table: StageRef, config: SegmentConfig, cache_key: str, settings: Settings) -> StageRef:
    """Fit preprocessing on the training table; stores ``(preprocessor, x)``, x memory-mapped."""
    with measure("preprocess", log=get_run_logger()) as meter:
        fitted = fit.fit_preprocessing(
            table.load(),
            config.preprocess,
            float32=config.data.float32,
            seed=config.seed,
            out=stage_array_path(settings.stages_dir, cache_key, "x"),
        )
        meter.rows = len(fitted[1])
        return save_stage(settings.stages_dir, cache_key, fitted)


@task(name="featurize", cache_policy=STAGE_CACHE, cache_expiration=EXPIRY, persist_result=True)
def featurize(preprocessed: StageRef, config: SegmentConfig, cache_key: str, settings: Settings) -> StageRef:
    """Fit the featurizer (none, PCA or autoencoder); stores ``(featurizer, z)``."""
    _, x = preprocessed.load()
    with measure("featurize", rows=len(x), log=get_run_logger()):
        return save_stage(
            settings.stages_dir, cache_key, fit.fit_features(x, config.featurize, seed=config.seed)
        )


@task(name="cluster", cache_policy=STAGE_CACHE, cache_expiration=EXPIRY, persist_result=True)
def cluster(
    features: StageRef,
    preprocessed: StageRef,
    table: StageRef,
    config: SegmentConfig,
    cache_key: str,
    settings: Settings,
) -> StageRef:
    """Fit the clusterer (choosing k when it is not fixed); keep a previous model's IDs when asked."""
    (pre, x), (_, z) = preprocessed.load(), features.load()
    with measure("cluster", rows=len(z), log=get_run_logger()):
        result = fit.fit_segments(
            z, x, config.cluster, seed=config.seed, silhouette_sample=config.evaluate.silhouette_sample
        )
    if config.insights.align_to:
        previous, _ = fit.previous_model(config.insights.align_to)
        result = fit.align_segments(
            result,
            table.load(),
            x,
            pre.feature_names_out_,
            previous,
            reference=str(Path(config.insights.align_to).resolve()),
            sample=config.evaluate.agreement_sample,
            seed=config.seed,
        )
    return save_stage(settings.stages_dir, cache_key, result)


@task(name="evaluate", cache_policy=STAGE_CACHE, cache_expiration=EXPIRY, persist_result=True)
def evaluate(
    clustered: StageRef,
    features: StageRef,
    preprocessed: StageRef,
    config: SegmentConfig,
    cache_key: str,
    settings: Settings,
) -> dict[str, Any]:
    """Metrics in the common (preprocessed) space (small: persisted by Prefect itself)."""
    (pre, x), (featurizer, z) = preprocessed.load(), features.load()
    with measure("evaluate", rows=len(x), log=get_run_logger()):
        names = pre.feature_names_out_
        return evaluate_run(x, z, clustered.load(), featurizer, config=config, feature_names=names)


@task(name="write-outputs", **IO_RETRIES)
def write_outputs(
    out_dir: str,
    stages: dict[str, StageRef],
    metrics: dict[str, Any],
    config: SegmentConfig,
    data_hash: str,
    source: str,
) -> dict[str, str]:
    """Assemble the bundle and write it with metrics and labels (atomically)."""
    table: load.ValidatedTable = stages["load"].load()
    pre, x = stages["preprocess"].load()
    featurizer, _ = stages["featurize"].load()
    result: ClusterResult = stages["cluster"].load()
    with measure("write-outputs", rows=table.n_rows, log=get_run_logger()):
        model = assemble.assemble_model(
            table, pre, featurizer, result, x, metrics, config=config, data_hash=data_hash, source=source
        )
        return outputs.write_run_outputs(Path(out_dir), model, table, result.labels, featurizer)


@task(name="visualize")
def visualize(out_dir: str, stages: dict[str, StageRef], config: SegmentConfig) -> dict[str, str]:
    """Profile, plots and report, from the bundle just written (names, metrics) and the stored stages."""
    model = load_bundle(Path(out_dir) / "bundle")
    table: load.ValidatedTable = stages["load"].load()
    _, x = stages["preprocess"].load()
    featurizer, _ = stages["featurize"].load()
    labels = stages["cluster"].load().labels
    with measure("visualize", rows=table.n_rows, log=get_run_logger()):
        return outputs.write_insights(
            Path(out_dir), model, table, labels, x, featurizer.history, seed=config.seed
        )


@task(name="register", **IO_RETRIES)
def register(out_dir: str, config: SegmentConfig, settings: Settings) -> dict[str, str]:
    """Register the bundle as a new version of the model (``candidate``); production moves only by promote."""
    if not config.registry.auto_register:
        return {}
    registry = LocalRegistry(
        settings.registry_dir(config.registry.dir), config.registry.name or config.model_name
    )
    version = registry.register(Path(out_dir) / "bundle", source=out_dir)
    get_run_logger().info("registered %s %s (digest %s)", registry.name, version.tag, version.digest[:12])
    return {"registry": f"{registry.name}:{version.tag}"}


@task(name="track", retries=1, retry_delay_seconds=2, retry_condition_fn=retry_io_only)
def track(
    out_dir: str,
    config: SegmentConfig,
    data_path: str,
    paths: dict[str, str],
    group: str | None,
    settings: Settings,
) -> dict[str, str]:
    """Log the run to W&B (offline files unless an API key is set; nothing when disabled)."""
    extra = {"registry_version": paths["registry"]} if "registry" in paths else {}
    tracked = tracking.track_training(
        Path(out_dir),
        config=config,
        data_path=data_path,
        model_name=config.registry.name or config.model_name,
        paths=paths,
        settings=settings,
        group=group,
        summary_extra=extra,
    )
    if tracked is None:
        return {}
    out = {"wandb_run": str(tracked.run_path), "wandb_mode": tracked.mode}
    if tracked.url:
        out["wandb_url"] = tracked.url
    return out


@flow(name="train-segmentation", log_prints=False, persist_result=False)
def train_segmentation(
    data_path: str,
    out_dir: str,
    config: SegmentConfig | None = None,
    overrides: list[str] | None = None,
    tracking_group: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Validate, preprocess, featurize, cluster, evaluate, bundle, insights, register, track (W&B).

    Args:
        data_path: the customer table (CSV or Parquet).
        out_dir: the run directory to write.
        config: the resolved configuration (the CLI passes it); None means the packaged defaults.
        overrides: ``key=value`` overrides applied to the defaults when ``config`` is None (deployment
            runs, e.g. ``-p overrides='["cluster.n_clusters=5"]'``).
        tracking_group: W&B run group (sweeps).
        settings: what the environment says (the CLI passes it); None means the flow run's environment,
            read here, at the flow's entry (deployment runs).

    Returns:
        ``{"out_dir", "paths", "metrics", "stages", "n_rows"}`` where ``stages`` maps each stage to its
        final state name (``Cached`` when it was skipped).
    """
    logger = get_run_logger()
    if config is None:
        config = load_config(overrides=overrides or [])
    if settings is None:
        settings = Settings.from_environ(os.environ)
    data_hash = hash_data(data_path)
    # The bundle whose IDs are kept is part of the cluster stage's key (and is checked before any work).
    align_digest = fit.previous_model(config.insights.align_to)[1] if config.insights.align_to else None
    keys = stage_keys(data_hash, config, align_digest)
    states: dict[str, str] = {}

    def run(stage: str, task_fn: Any, *args: Any) -> Any:
        state = task_fn(*args, config=config, cache_key=keys[stage], settings=settings, return_state=True)
        value = state.result()
        if isinstance(value, StageRef) and not value.path.is_file():
            # Prefect remembers an output the stage store no longer has (the store was cleaned):
            # recompute it and refresh the cache entry instead of handing on a dangling reference.
            logger.warning("stage %s: stored output %s is gone; recomputing", stage, value.path)
            refreshed = task_fn.with_options(refresh_cache=True)
            state = refreshed(
                *args, config=config, cache_key=keys[stage], settings=settings, return_state=True
            )
            value = state.result()
        states[stage] = state.name
        return value

    try:
        table = run("load", load_validate, data_path)
    except DataValidationError as exc:
        outputs.write_validation_report(Path(out_dir), exc.report)
        raise
    preprocessed = run("preprocess", preprocess, table)
    features = run("featurize", featurize, preprocessed)
    clustered = run("cluster", cluster, features, preprocessed, table)
    metrics = run("evaluate", evaluate, clustered, features, preprocessed)
    refs = {"load": table, "preprocess": preprocessed, "featurize": features, "cluster": clustered}
    paths = write_outputs(out_dir, refs, metrics, config, data_hash, data_path)
    paths |= visualize(out_dir, refs, config)
    paths |= register(out_dir, config, settings)
    paths |= track(out_dir, config, data_path, paths, tracking_group, settings)
    logger.info("stages: %s", ", ".join(f"{k}={v}" for k, v in states.items()))
    return {
        "out_dir": out_dir,
        "paths": paths,
        "metrics": metrics,
        "stages": states,
        "n_rows": metrics["n_rows"],
    }


def run_training(
    data_path: str | Path,
    out_dir: str | Path,
    config: SegmentConfig,
    *,
    settings: Settings | None = None,
    tracking_group: str | None = None,
) -> dict[str, Any]:
    """Run the flow with results persisted under ``settings.results_dir`` (what the CLI calls).

    ``settings`` is what the caller read at its entry; None reads this process's environment (notebooks,
    tests).
    """
    settings = settings or Settings.from_environ(os.environ)
    with temporary_settings(updates={PREFECT_RESULTS_LOCAL_STORAGE_PATH: settings.results_dir}):
        return train_segmentation(
            data_path=str(data_path) if is_url(data_path) else str(Path(data_path).resolve()),
            out_dir=str(Path(out_dir).resolve()),
            config=config,
            tracking_group=tracking_group,
            settings=settings,
        )
