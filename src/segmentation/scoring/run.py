"""Running a scoring plan: every chunk in this process on a thread pool, or chunk by chunk on workers.

:func:`score_table` plans, skips an up-to-date output, scores the chunks on a thread pool (NumPy and Arrow
release the GIL) and combines them. Workers that score chunks of a plan one by one (the ``score-customers``
flow's tasks, on threads or Dask processes) load the bundle once each with :func:`cached_model`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from threadpoolctl import threadpool_limits

from segmentation.bundle import SegmentationModel, bundle_digest, load_bundle
from segmentation.data.chunks import DEFAULT_CHUNK_ROWS
from segmentation.scoring.output import ScoringSummary, combine, up_to_date
from segmentation.scoring.parts import PartResult, score_part
from segmentation.scoring.plan import ScoringPlan, plan_scoring

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ one process
def score_table(
    model: SegmentationModel,
    data: str | Path,
    out: str | Path,
    *,
    model_version: str | None = None,
    rejects: str | Path | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    threads: int | None = None,
    force: bool = False,
    on_part: Callable[[PartResult], None] | None = None,
) -> ScoringSummary:
    """Score a whole table in this process, chunks on a thread pool (NumPy and Arrow release the GIL).

    Args:
        model: the loaded model.
        data: CSV or Parquet table.
        out: output Parquet file.
        model_version: label written into every row (default
            :func:`~segmentation.scoring.plan.model_version_label`).
        rejects: rejects Parquet file (default ``<out stem>.rejects.parquet``).
        chunk_rows: rows per chunk.
        threads: scoring threads (default: the CPUs available, at most 4).
        force: rewrite even when a previous run with the same inputs is complete.
        on_part: called with each chunk's result as it completes (progress).

    Returns:
        The run's summary (``skipped`` when the output was already up to date).
    """
    began = time.perf_counter()
    plan = plan_scoring(model, data, out, model_version=model_version, rejects=rejects, chunk_rows=chunk_rows)
    if not force:
        done = up_to_date(plan)
        if done is not None:
            logger.info("%s is up to date (same model, data and chunking): nothing to do", plan.out)
            return done
    workers = threads or min(4, len(os.sched_getaffinity(0)))
    logger.info(
        "scoring %s (%d rows, %d chunks) with %s on %d thread(s)",
        plan.data,
        plan.n_rows,
        len(plan.chunks),
        plan.model_version,
        workers,
    )
    # One BLAS thread per scoring thread: chunks already use every core, nested BLAS threads only contend.
    with threadpool_limits(limits=1 if workers > 1 else None):
        parts = list(_map_parts(model, plan, workers, on_part))
    return combine(plan, parts, seconds=time.perf_counter() - began)


def _map_parts(
    model: SegmentationModel,
    plan: ScoringPlan,
    workers: int,
    on_part: Callable[[PartResult], None] | None,
) -> Iterator[PartResult]:
    if workers <= 1 or len(plan.chunks) <= 1:
        for chunk in plan.chunks:
            result = score_part(model, plan, chunk)
            if on_part:
                on_part(result)
            yield result
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="score") as pool:
        for result in pool.map(lambda c: score_part(model, plan, c), plan.chunks):
            if on_part:
                on_part(result)
            yield result


# ------------------------------------------------------------------------------- worker-side cache
_MODELS: dict[tuple[str, str], SegmentationModel] = {}
_MODELS_LOCK = threading.Lock()


def cached_model(bundle_path: str, digest: str) -> SegmentationModel:
    """Load a bundle once per process (Dask workers score many chunks with the same model).

    Raises:
        BundleError: the bundle fails its file digests.
        ValueError: the bundle's digest is not ``digest`` (it changed since the run was planned).
    """
    key = (bundle_path, digest)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = load_bundle(bundle_path)
            if bundle_digest(model.manifest) != digest:
                raise ValueError(f"{bundle_path}: bundle digest changed since the scoring run was planned")
            _MODELS.clear()  # one model per worker process is enough
            _MODELS[key] = model
    return model


__all__ = ["cached_model", "score_table"]
