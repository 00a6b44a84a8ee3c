"""``train-segmentation``: the training flow. Tasks are thin wrappers over ``segmentation.pipeline``.

Caching: every stage task receives a ``cache_key`` computed by :func:`segmentation.pipeline.stage_keys`
from the data's content hash, the stage's own parameters and its library code, chained through the
stages before it. The task's cache policy is that key plus the task's own source
(``CacheKeyFnPolicy + TASK_SOURCE``), so the run id never enters the key and reruns reuse results.
Results are persisted to a local directory (``SEGMENT_HOME``, default ``./.segment``) so the cache
survives across processes without a Prefect server.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy
from prefect.context import TaskRunContext
from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings
from prefect.states import State

from segmentation import pipeline
from segmentation.bundle import SegmentationModel
from segmentation.clustering import ClusterResult
from segmentation.config import SegmentConfig
from segmentation.data.io import file_digest, read_table
from segmentation.errors import DataValidationError
from segmentation.features import Featurizer
from segmentation.preprocess import Preprocessor


def _stage_key(_context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return str(parameters["cache_key"])


STAGE_CACHE = CacheKeyFnPolicy(cache_key_fn=_stage_key) + TASK_SOURCE
_EXPIRY = timedelta(days=30)


def _retry_io_only(_task: Any, _task_run: Any, state: State) -> bool:
    """Retry IO hiccups, never bad data: a validation failure is final."""
    try:
        state.result()
    except DataValidationError:
        return False
    except OSError:
        return True
    except Exception:
        return False
    return False


def state_home() -> Path:
    """Directory for persisted task results (the cache): ``$SEGMENT_HOME`` or ``./.segment``."""
    return Path(os.environ.get("SEGMENT_HOME", ".segment")).resolve()


@task(name="hash-data", retries=2, retry_delay_seconds=1, retry_condition_fn=_retry_io_only)
def hash_data(path: str) -> str:
    """Content hash (SHA-256) of the input file: the root of every cache key."""
    return file_digest(path)


@task(
    name="load-validate",
    cache_policy=STAGE_CACHE,
    cache_expiration=_EXPIRY,
    persist_result=True,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_retry_io_only,
)
def load_validate(path: str, config: SegmentConfig, cache_key: str) -> pipeline.ValidatedTable:
    """Read the table and validate it lazily (validation failures are never retried)."""
    return pipeline.validate_table(read_table(path), config.data, source=path, seed=config.seed)


@task(name="preprocess", cache_policy=STAGE_CACHE, cache_expiration=_EXPIRY, persist_result=True)
def preprocess(
    table: pipeline.ValidatedTable, config: SegmentConfig, cache_key: str
) -> tuple[Preprocessor, np.ndarray]:
    """Fit preprocessing on the training table."""
    return pipeline.fit_preprocessing(table, config.preprocess, float32=config.data.float32, seed=config.seed)


@task(name="featurize", cache_policy=STAGE_CACHE, cache_expiration=_EXPIRY, persist_result=True)
def featurize(x: np.ndarray, config: SegmentConfig, cache_key: str) -> tuple[Featurizer, np.ndarray]:
    """Fit the featurizer (none, PCA or autoencoder)."""
    return pipeline.fit_features(x, config.featurize, seed=config.seed)


@task(name="cluster", cache_policy=STAGE_CACHE, cache_expiration=_EXPIRY, persist_result=True)
def cluster(z: np.ndarray, x: np.ndarray, config: SegmentConfig, cache_key: str) -> ClusterResult:
    """Fit the clusterer, choosing k by the configured criterion when it is not fixed."""
    return pipeline.fit_segments(
        z, x, config.cluster, seed=config.seed, silhouette_sample=config.evaluate.silhouette_sample
    )


@task(name="evaluate", cache_policy=STAGE_CACHE, cache_expiration=_EXPIRY, persist_result=True)
def evaluate(
    x: np.ndarray,
    z: np.ndarray,
    result: ClusterResult,
    featurizer: Featurizer,
    config: SegmentConfig,
    cache_key: str,
) -> dict[str, Any]:
    """Metrics in the common (preprocessed) space."""
    return pipeline.evaluate(x, z, result, featurizer, config=config)


@task(name="write-outputs", retries=2, retry_delay_seconds=1, retry_condition_fn=_retry_io_only)
def write_outputs(
    out_dir: str,
    table: pipeline.ValidatedTable,
    pre: Preprocessor,
    featurizer: Featurizer,
    result: ClusterResult,
    x: np.ndarray,
    metrics: dict[str, Any],
    config: SegmentConfig,
    data_hash: str,
    source: str,
) -> dict[str, str]:
    """Assemble the bundle and write it with metrics and labels (atomically)."""
    model: SegmentationModel = pipeline.assemble_model(
        table, pre, featurizer, result, x, metrics, config=config, data_hash=data_hash, source=source
    )
    return pipeline.write_run_outputs(Path(out_dir), model, table, result.labels, featurizer)


@flow(name="train-segmentation", log_prints=False, persist_result=False)
def train_segmentation(data_path: str, out_dir: str, config: SegmentConfig) -> dict[str, Any]:
    """Validate → preprocess → featurize → cluster → evaluate → write the bundle.

    Returns:
        ``{"out_dir", "paths", "metrics", "stages"}`` where ``stages`` maps each stage to its final
        state name (``Cached`` when it was skipped).
    """
    logger = get_run_logger()
    data_hash = hash_data(data_path)
    keys = pipeline.stage_keys(data_hash, config)
    stages: dict[str, str] = {}

    def run(stage: str, task_fn: Any, *args: Any) -> Any:
        state = task_fn(*args, config=config, cache_key=keys[stage], return_state=True)
        stages[stage] = state.name
        return state.result()

    try:
        table = run("load", load_validate, data_path)
    except DataValidationError as exc:
        pipeline.write_validation_report(Path(out_dir), exc.report)
        raise
    pre, x = run("preprocess", preprocess, table)
    featurizer, z = run("featurize", featurize, x)
    result = run("cluster", cluster, z, x)
    metrics = run("evaluate", evaluate, x, z, result, featurizer)
    paths = write_outputs(out_dir, table, pre, featurizer, result, x, metrics, config, data_hash, data_path)
    logger.info("stages: %s", ", ".join(f"{k}={v}" for k, v in stages.items()))
    return {
        "out_dir": out_dir,
        "paths": paths,
        "metrics": metrics,
        "stages": stages,
        "n_rows": len(table.frame),
    }


def run_training(data_path: str | Path, out_dir: str | Path, config: SegmentConfig) -> dict[str, Any]:
    """Run the flow with results persisted under :func:`state_home` (what the CLI calls)."""
    with temporary_settings(updates={PREFECT_RESULTS_LOCAL_STORAGE_PATH: state_home() / "results"}):
        return train_segmentation(
            data_path=str(Path(data_path).resolve()), out_dir=str(Path(out_dir).resolve()), config=config
        )
