"""``score-customers``: batch scoring as a Prefect flow; thin tasks over ``segmentation.scoring``.

Shape: ``resolve-model`` -> ``plan-scoring`` -> subflow ``score-chunks`` (one ``score-chunk`` task per chunk,
on the chosen task runner) -> ``combine-parts`` -> ``report``. The chunk tasks fan out on

* a ``ThreadPoolTaskRunner`` in the flow's process (default), or
* a ``prefect_dask.DaskTaskRunner``: a ``distributed.LocalCluster`` of ``dask_workers`` processes with one
  thread each, or an existing Dask cluster at ``dask_address`` (``tcp://scheduler:8786``) in production.

Every chunk task receives only the plan (plain values) and the bundle's path and digest; a worker loads the
bundle once (verified) and reuses it for all its chunks. A chunk writes its part atomically into the staging
directory beside the output, so a task retried after an IO error, a rerun after a crash, or a chunk that
landed on another worker all converge on the same files: ``combine-parts`` concatenates them in row order.
IO errors are retried; bad data (a missing column) and bad bundles never are.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.task_runners import ThreadPoolTaskRunner
from threadpoolctl import threadpool_limits

from segmentation import scoring
from segmentation.bundle import bundle_digest
from segmentation.data.chunks import DEFAULT_CHUNK_ROWS
from segmentation.errors import requires_extra
from segmentation.registry import ModelSource
from segmentation.settings import Settings
from segmentation_workflows.retries import IO_RETRIES


@task(name="resolve-model", **IO_RETRIES)
def resolve_model(source: ModelSource) -> dict[str, str]:
    """Load (and verify) the model once; chunk tasks get its path, digest and version label."""
    model, meta = source.load()
    return {
        "bundle_path": str(meta["bundle_path"]),
        "digest": bundle_digest(model.manifest),
        "model_version": scoring.model_version_label(model, meta.get("version")),
    }


@task(name="plan-scoring", **IO_RETRIES)
def plan_scoring(
    resolved: dict[str, str], data_path: str, out_path: str, rejects_path: str | None, chunk_rows: int
) -> scoring.ScoringPlan:
    """Check the table's columns, hash it, and split it into chunks."""
    model = scoring.cached_model(resolved["bundle_path"], resolved["digest"])
    return scoring.plan_scoring(
        model,
        data_path,
        out_path,
        model_version=resolved["model_version"],
        rejects=rejects_path,
        chunk_rows=chunk_rows,
    )


@task(name="score-chunk", **IO_RETRIES)
def score_chunk(
    plan: scoring.ScoringPlan, chunk: scoring.Chunk, bundle_path: str, digest: str
) -> scoring.PartResult:
    """Score one chunk into its part files (or reuse the part an interrupted run completed)."""
    return scoring.score_part(scoring.cached_model(bundle_path, digest), plan, chunk)


@task(name="combine-parts", **IO_RETRIES)
def combine_parts(
    plan: scoring.ScoringPlan, parts: list[scoring.PartResult], seconds: float
) -> scoring.ScoringSummary:
    """Concatenate the parts into the output and rejects files; write the summary."""
    return scoring.combine(plan, parts, seconds=seconds)


@task(name="report")
def report(summary: scoring.ScoringSummary) -> dict[str, Any]:
    """Log the counts; the summary is the flow's result."""
    logger = get_run_logger()
    logger.info(
        "scored %d of %d rows (%d rejected) with %s into %s%s",
        summary.scored,
        summary.rows,
        summary.rejected,
        summary.model_version,
        summary.out,
        " (up to date: nothing rescored)" if summary.skipped else f" in {summary.seconds:.1f} s",
    )
    for name, count in summary.rejects_by_check.items():
        logger.info("rejects: %s: %d", name, count)
    return summary.to_dict()


@flow(name="score-chunks")
def score_chunks(plan: scoring.ScoringPlan, bundle_path: str, digest: str) -> list[scoring.PartResult]:
    """Every chunk of the plan, fanned out on this subflow's task runner; results in chunk order."""
    futures = score_chunk.map(
        plan=unmapped(plan),
        chunk=list(plan.chunks),
        bundle_path=unmapped(bundle_path),
        digest=unmapped(digest),
    )
    return [future.result() for future in futures]


def task_runner(dask_address: str | None = None, dask_workers: int | None = None) -> Any:
    """The runner for the chunk tasks: Dask (an existing cluster or a local one), else threads."""
    if dask_address or dask_workers:
        with requires_extra("dask", "scoring on Dask"):
            from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": int(dask_workers or 1),
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            },
        )
    return ThreadPoolTaskRunner(max_workers=min(4, len(os.sched_getaffinity(0))))


@flow(name="score-customers")
def score_customers(
    data_path: str,
    out_path: str,
    model: str = "production",
    bundle: str | None = None,
    registry_dir: str | None = None,
    model_name: str = "customer-segments",
    rejects_path: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    dask_address: str | None = None,
    dask_workers: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Score a customer table with a registered model (alias or version) or a bundle.

    Args:
        data_path: CSV or Parquet table.
        out_path: output Parquet file (rejects and summary are written beside it).
        model: registry alias or version (ignored when ``bundle`` is given).
        bundle: a bundle directory (or run directory) instead of the registry.
        registry_dir: registry root (default ``$SEGMENT_HOME/registry``, from the flow run's environment).
        model_name: the registered model's name.
        rejects_path: rejects Parquet file (default ``<out stem>.rejects.parquet``).
        chunk_rows: rows per chunk.
        dask_address: fan the chunks out on this Dask scheduler.
        dask_workers: fan the chunks out on a local Dask cluster of this many worker processes.
        force: rescore even when the output is up to date.

    Returns:
        The run's summary (see :class:`segmentation.scoring.ScoringSummary`).
    """
    began = time.perf_counter()
    source = (
        ModelSource(bundle=str(Path(bundle).resolve()))
        if bundle
        else ModelSource(
            registry_root=str(Settings.from_environ(os.environ).registry_dir(registry_dir)),
            name=model_name,
            alias=model,
        )
    )
    resolved = resolve_model(source)
    plan = plan_scoring(resolved, data_path, out_path, rejects_path, chunk_rows)
    done = None if force else scoring.up_to_date(plan)
    if done is not None:
        return report(done)
    runner = task_runner(dask_address, dask_workers)
    # Threads in this process: one BLAS thread each (the chunks already use every core).
    with threadpool_limits(limits=None if dask_address or dask_workers else 1):
        parts = score_chunks.with_options(task_runner=runner)(
            plan, resolved["bundle_path"], resolved["digest"]
        )
    summary = combine_parts(plan, parts, time.perf_counter() - began)
    return report(summary)


def run_scoring(
    source: ModelSource,
    data: str | Path,
    out: str | Path,
    *,
    rejects: str | Path | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    dask_address: str | None = None,
    dask_workers: int | None = None,
    force: bool = False,
) -> scoring.ScoringSummary:
    """Run ``score-customers`` in this process (what ``segment score --dask ...`` calls)."""
    result = score_customers(
        data_path=str(data),
        out_path=str(out),
        model=source.alias or "production",
        bundle=source.bundle,
        registry_dir=source.registry_root,
        model_name=source.name or "customer-segments",
        rejects_path=str(rejects) if rejects else None,
        chunk_rows=chunk_rows,
        dask_address=dask_address,
        dask_workers=dask_workers,
        force=force,
    )
    return scoring.ScoringSummary(**result)
