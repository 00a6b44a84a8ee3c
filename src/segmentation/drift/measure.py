"""Measuring drift: a snapshot streamed through the reference's bins, and the PSI of every distribution.

:func:`compare` streams the snapshot in chunks (``segmentation.data.chunks``), validates each chunk
against the model's schema (invalid rows are counted, reported and left out, never fatal), bins every
feature, predicts the segment of every valid row, and computes the population stability index

    PSI = sum over bins of (a - e) * ln(a / e)

with ``e`` the reference share and ``a`` the snapshot share of a bin, both floored at ``epsilon``. A
feature is ``warn`` at ``drift.warn`` and ``alert`` at ``drift.alert`` (0.1 / 0.25 by default: the
usual rule of thumb); the segment shares have their own thresholds. The report is ``alert`` when any
feature or the segment shares alert. Memory is bounded by one chunk, whatever the snapshot's size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segmentation.bundle import SegmentationModel, bundle_digest
from segmentation.clustering import NOISE
from segmentation.config import DriftConfig
from segmentation.contract.report import Failure, ValidationReport
from segmentation.contract.validator import ChunkValidator
from segmentation.data.chunks import iter_chunks, table_info
from segmentation.data.io import file_digest
from segmentation.drift.reference import bin_labels, categorical_bins, numeric_bins, shares
from segmentation.drift.report import DriftReport, FeatureDrift, Status
from segmentation.errors import DataValidationError, SegmentationError

logger = logging.getLogger(__name__)

_SEVERITY: dict[str, int] = {"ok": 0, "warn": 1, "alert": 2}


class NoReferenceError(SegmentationError):
    """The bundle has no ``reference.json`` (trained before drift monitoring existed): retrain it."""


# ------------------------------------------------------------------------------------------- PSI
def psi(
    expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, epsilon: float = 1e-4
) -> float:
    """Population stability index of two share vectors over the same bins.

    Args:
        expected: reference share per bin (sums to 1).
        actual: snapshot share per bin (sums to 1).
        epsilon: floor applied to every share, so an empty bin contributes a finite amount.

    Returns:
        ``sum((a - e) * ln(a / e))``: 0 for identical distributions, symmetric, always >= 0.
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def status_of(value: float, warn: float, alert: float) -> Status:
    """``ok`` below ``warn``, ``warn`` from ``warn``, ``alert`` from ``alert``."""
    if value >= alert:
        return "alert"
    if value >= warn:
        return "warn"
    return "ok"


def _worst(statuses: Iterable[str]) -> Status:
    worst: Status = "ok"
    for status in statuses:
        if _SEVERITY[status] > _SEVERITY[worst]:
            worst = status  # type: ignore[assignment]
    return worst


# -------------------------------------------------------------------------------------- comparing
def model_info(model: SegmentationModel, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the drift report says about the model (name, version, alias, digest, training data)."""
    meta = meta or {}
    return {
        "name": meta.get("name") or model.name,
        "version": meta.get("version"),
        "alias": meta.get("alias"),
        "source": meta.get("source"),
        "digest": bundle_digest(model.manifest) if "files" in model.manifest else None,
        "trained_at": model.manifest.get("created_at"),
        "training_data_hash": model.manifest.get("data", {}).get("content_hash"),
        "training_rows": model.manifest.get("data", {}).get("n_rows"),
    }


@dataclass
class _Counts:
    """What streaming a snapshot counted: rows per bin of every reference feature, rows per segment."""

    features: list[np.ndarray]
    segments: dict[int, int]
    rows: int
    valid_rows: int


def _count_snapshot(
    model: SegmentationModel,
    reference: dict[str, Any],
    snapshot: str | Path,
    validator: ChunkValidator,
    chunk_rows: int,
) -> _Counts:
    """Stream the snapshot: validate each chunk, bin the valid rows' features and predict their segments."""
    features = reference["features"]
    names = [f["name"] for f in features]
    counts = [np.zeros(len(f["shares"]), dtype=np.int64) for f in features]
    edges = [np.asarray(f.get("edges", []), dtype=np.float64) for f in features]
    seg_counts: dict[int, int] = dict.fromkeys((int(i) for i in reference["segments"]["ids"]), 0)
    total = valid_rows = 0
    for chunk in iter_chunks(snapshot, chunk_rows=chunk_rows, columns=names):
        total += len(chunk)
        valid = chunk[validator.check(chunk)]
        if not len(valid):
            continue
        valid_rows += len(valid)
        for j, feature in enumerate(features):
            if feature["kind"] == "categorical":
                index = categorical_bins(valid[feature["name"]], feature["levels"])
            else:
                index = numeric_bins(model.preprocessor.raw_column(valid, feature["name"]), edges[j])
            counts[j] += np.bincount(index, minlength=len(counts[j]))
        ids, n = np.unique(model.predict(valid, validate=False), return_counts=True)
        for seg, c in zip(ids.tolist(), n.tolist(), strict=True):
            seg_counts[int(seg)] = seg_counts.get(int(seg), 0) + int(c)
        logger.info("drift: %d rows read, %d valid", total, valid_rows)
    return _Counts(counts, seg_counts, total, valid_rows)


def _feature_drift(
    features: list[dict[str, Any]], counts: list[np.ndarray], config: DriftConfig
) -> list[FeatureDrift]:
    """PSI and status of every reference feature, from the snapshot's counts per bin."""
    results = []
    for feature, count in zip(features, counts, strict=True):
        actual = shares(count)
        value = psi(feature["shares"], actual, config.epsilon)
        results.append(
            FeatureDrift(
                feature["name"],
                feature["kind"],
                value,
                status_of(value, config.warn, config.alert),
                bin_labels(feature),
                [float(s) for s in feature["shares"]],
                actual,
            )
        )
    return results


def _segment_drift(
    model: SegmentationModel, reference: dict[str, Any], seg_counts: dict[int, int], config: DriftConfig
) -> FeatureDrift:
    """PSI and status of the segment shares (training segments and any the snapshot added; noise last).

    ``reference`` is the reference's ``segments`` entry (ids and shares).
    """
    expected_by_id = dict(zip((int(i) for i in reference["ids"]), reference["shares"], strict=True))
    order = sorted(seg_counts, key=lambda s: (s == NOISE, s))
    seg_expected = [float(expected_by_id.get(s, 0.0)) for s in order]
    seg_actual = shares(np.array([seg_counts[s] for s in order]))
    seg_psi = psi(seg_expected, seg_actual, config.epsilon)
    segment_names = model.segment_names
    return FeatureDrift(
        "segment shares",
        "segments",
        seg_psi,
        status_of(seg_psi, config.segment_warn, config.segment_alert),
        [f"{s}: {segment_names.get(s, 'noise' if s == NOISE else '?')}" for s in order],
        seg_expected,
        seg_actual,
    )


def compare(
    model: SegmentationModel,
    snapshot: str | Path,
    config: DriftConfig,
    *,
    model_meta: dict[str, Any] | None = None,
) -> DriftReport:
    """Measure the drift of a snapshot against the model's training reference, streaming in chunks.

    Args:
        model: a loaded bundle with a ``reference`` (bundles trained with drift monitoring).
        snapshot: the new customer table (CSV or Parquet, local or fsspec URL).
        config: thresholds, epsilon and chunk size (``drift`` section).
        model_meta: name, version, alias and source of the model as resolved from the registry.

    Returns:
        The report (nothing is written; see :func:`segmentation.drift.write.write_report`).

    Raises:
        NoReferenceError: the bundle has no drift reference.
        DataValidationError: the snapshot lacks a feature column or has no valid row (invalid rows
            are otherwise left out and listed in the report's ``invalid``).
    """
    began = time.monotonic()
    reference = model.reference
    if not reference:
        raise NoReferenceError(
            f"model {model.name!r} has no drift reference (reference.json); it was trained before drift "
            "monitoring existed: retrain it to monitor drift"
        )
    source = str(snapshot)
    info = table_info(snapshot)
    # Rows are checked as batch scoring checks them; a missing feature column fails the snapshot at once.
    validator = ChunkValidator(model.schema, source=source, columns=info.columns, n_rows=info.n_rows)
    counted = _count_snapshot(model, reference, snapshot, validator, config.chunk_rows)
    total, valid_rows = counted.rows, counted.valid_rows
    checked = validator.report()
    if not valid_rows:
        listed = checked.failures or [Failure("<table>", "has_rows", 1, ["no rows"])]
        raise DataValidationError(
            ValidationReport(source, total, len(info.columns), listed, model.schema.kind)
        )

    results = _feature_drift(reference["features"], counted.features, config)
    segments = _segment_drift(model, reference["segments"], counted.segments, config)
    status = _worst([*(f.status for f in results), segments.status])
    ref_rows = int(reference["rows"])
    report = DriftReport(
        model=model_info(model, model_meta),
        snapshot={
            "path": source,
            "sha256": file_digest(snapshot),
            "rows": total,
            "valid_rows": valid_rows,
            "invalid_rows": total - valid_rows,
            "reference_rows": ref_rows,
            # PSI of two samples from one distribution is about (bins - 1) * (1/n + 1/m), not 0.
            "noise_floor_psi": (reference["bins"] - 1) * (1 / ref_rows + 1 / valid_rows),
        },
        thresholds={
            "warn": config.warn,
            "alert": config.alert,
            "segment_warn": config.segment_warn,
            "segment_alert": config.segment_alert,
            "epsilon": config.epsilon,
        },
        features=results,
        segments=segments,
        status=status,
        invalid=sorted(checked.failures, key=lambda f: (-f.count, f.column)),
    )
    report.seconds = round(time.monotonic() - began, 2)
    logger.info(
        "drift %s: %d features (%d warn, %d alert), segment shares PSI %.4f, %d rows in %.1f s",
        status,
        len(results),
        sum(f.status == "warn" for f in results),
        sum(f.status == "alert" for f in results),
        segments.psi,
        total,
        report.seconds,
    )
    return report


__all__ = ["NoReferenceError", "compare", "model_info", "psi", "status_of"]
