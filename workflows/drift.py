"""``monitor-drift``: compare a new customer snapshot with the production model's training data.

Thin tasks over :mod:`segmentation.drift`: resolve and verify the model (registry alias/version or a
bundle), stream the snapshot and measure PSI per feature and for the segment shares, write the report.
On alert the report is written first and the flow then raises :class:`~segmentation.drift.DriftAlertError`,
so the flow run ends ``Failed`` and a schedule's automation (or whoever watches failed runs) can page
someone; ``ok`` and ``warn`` end ``Completed``.

Nothing is cached or persisted: every run must read the snapshot it is given, and the results are the
files in ``out_dir``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from segmentation import drift
from segmentation.bundle import SegmentationModel
from segmentation.config import DriftConfig, SegmentConfig, load_config
from segmentation.registry import ModelSource
from segmentation.settings import Settings
from segmentation_workflows.retries import IO_RETRIES


@task(
    name="load-model",
    cache_policy=NO_CACHE,
    persist_result=False,
    **IO_RETRIES,
)
def load_model(source: ModelSource) -> tuple[SegmentationModel, dict[str, Any]]:
    """Resolve the alias (or bundle) and load the model, verified against its digests."""
    return source.load()


@task(name="measure-drift", cache_policy=NO_CACHE, persist_result=False)
def measure_drift(
    model: SegmentationModel, meta: dict[str, Any], data_path: str, config: DriftConfig
) -> drift.DriftReport:
    """Stream the snapshot and compute PSI per feature and for the segment shares."""
    return drift.compare(model, data_path, config, model_meta=meta)


@task(
    name="write-drift-report",
    cache_policy=NO_CACHE,
    persist_result=False,
    **IO_RETRIES,
)
def write_drift_report(report: drift.DriftReport, out_dir: str) -> dict[str, str]:
    """``drift.json``, ``drift.csv``, ``drift.png``, ``drift.md``, ``drift.html`` (atomic writes)."""
    return drift.write_report(report, out_dir)


@flow(name="monitor-drift", log_prints=False, persist_result=False)
def monitor_drift(
    data_path: str,
    out_dir: str,
    model: str = "production",
    bundle: str | None = None,
    config: SegmentConfig | None = None,
    overrides: list[str] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Measure the drift of a snapshot against a model's training reference; fail on alert.

    Args:
        data_path: the new customer snapshot (CSV or Parquet; local path or fsspec URL).
        out_dir: where the report goes.
        model: registry alias or version (``production``, ``v3``); ignored when ``bundle`` is given.
        bundle: a bundle directory (or run directory) instead of the registry.
        config: the resolved configuration (thresholds in ``drift``, registry location in ``registry``);
            None means the packaged defaults with ``overrides``.
        overrides: ``key=value`` overrides (deployment runs: ``-p overrides='["drift.alert=0.3"]'``).
        settings: where the registry lives by default; None means the flow run's environment, read here.

    Returns:
        ``{"status", "out_dir", "paths", "alerts", "warnings", "rows", "invalid_rows"}`` when the status
        is ``ok`` or ``warn``.

    Raises:
        DriftAlertError: a feature or the segment shares reached the alert threshold (after the report
            was written), so the flow run ends Failed.
    """
    logger = get_run_logger()
    if config is None:
        config = load_config(overrides=overrides or [])
    if settings is None:
        settings = Settings.from_environ(os.environ)
    if bundle:
        source = ModelSource(bundle=str(Path(bundle).resolve()))
    else:
        source = ModelSource(
            registry_root=str(settings.registry_dir(config.registry.dir)),
            name=config.registry.name or config.model_name,
            alias=model,
        )
    loaded, meta = load_model(source)
    report = measure_drift(loaded, meta, data_path, config.drift)
    paths = write_drift_report(report, out_dir)
    logger.info("%s", report.summary())
    result = {
        "status": report.status,
        "out_dir": out_dir,
        "paths": paths,
        "alerts": report.by_status("alert"),
        "warnings": report.by_status("warn"),
        "rows": report.snapshot["rows"],
        "invalid_rows": report.snapshot["invalid_rows"],
    }
    if report.alert:
        raise drift.DriftAlertError(
            f"drift alert for {meta.get('name')} {meta.get('version') or ''}: "
            f"{', '.join(result['alerts'])} reached PSI >= threshold; report in {paths['md']}"
        )
    return result
