"""Drift monitoring: how far a new customer snapshot has moved from the production model's training data.

At training time :func:`build_reference` summarises (a seeded sample of) the training rows into
``reference.json`` inside the bundle: quantile bin edges and the share of rows per bin for every numeric,
boolean and date feature (missing values are a bin of their own), the share of every training level of
each categorical (plus ``other`` and ``missing``), and the share of every segment. Drift time needs only
the bundle, never the training file.

:func:`compare` streams the snapshot in chunks (``segmentation.data.chunks``), validates each chunk
against the model's schema (invalid rows are counted, reported and left out, never fatal), bins every
feature, predicts the segment of every valid row, and computes the population stability index

    PSI = sum over bins of (a - e) * ln(a / e)

with ``e`` the reference share and ``a`` the snapshot share of a bin, both floored at ``epsilon``. A
feature is ``warn`` at ``drift.warn`` and ``alert`` at ``drift.alert`` (0.1 / 0.25 by default: the
usual rule of thumb); the segment shares have their own thresholds. The report is ``alert`` when any
feature or the segment shares alert. Memory is bounded by one chunk, whatever the snapshot's size.

:func:`write_report` writes ``drift.json``, ``drift.csv``, ``drift.png``, ``drift.md`` and ``drift.html``.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from segmentation.bundle import SegmentationModel, bundle_digest
from segmentation.clustering import NOISE
from segmentation.config import DriftConfig
from segmentation.contract.report import Failure, ValidationReport
from segmentation.contract.schema import TableSchema
from segmentation.contract.validator import ChunkValidator
from segmentation.data.chunks import iter_chunks, table_info
from segmentation.data.io import atomic_path, file_digest, write_json, write_table, write_text
from segmentation.errors import DataValidationError, SegmentationError
from segmentation.preprocess import Preprocessor

logger = logging.getLogger(__name__)

REFERENCE_FORMAT = 1
Status = Literal["ok", "warn", "alert"]
_SEVERITY: dict[str, int] = {"ok": 0, "warn": 1, "alert": 2}
_OTHER, _MISSING = "__other__", "__missing__"


class DriftAlertError(SegmentationError):
    """The snapshot drifted past an alert threshold (the report was written first). Exit code 5."""

    exit_code = 5


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


# ------------------------------------------------------------------------------------- binning
def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges from the quantiles of the non-missing values (ties and constants handled).

    Bins are right-closed: ``(-inf, e1], (e1, e2], ..., (ek, inf)``, so a point mass (zero amounts, a
    flag) sits in one bin. Repeated quantiles collapse to one edge, and edges at or above the maximum
    are dropped (their upper bin would be empty); at least one edge is kept, so a constant column has
    a bin for values above it.
    """
    present = values[~np.isnan(values)]
    if len(present) == 0:
        return np.array([0.0])
    edges = np.unique(np.quantile(present, np.arange(1, bins) / bins))
    below_max = edges[edges < present.max()]
    return below_max if len(below_max) else edges[:1]


def _numeric_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index per value: ``0..len(edges)`` for values, ``len(edges) + 1`` for missing."""
    # The number of edges strictly below each value (what searchsorted(side="left") gives, but with a
    # handful of edges one comparison pass per edge is 2-3x faster than a binary search per value).
    index = np.zeros(len(values), dtype=np.uint8)  # bins <= 100, so edges + 2 < 256
    for edge in edges:
        index += values > edge
    index[np.isnan(values)] = len(edges) + 1
    return index


def _categorical_bins(series: pd.Series, levels: list[str]) -> np.ndarray:
    """Bin index per value: the level's position, ``len(levels)`` for other, ``len(levels) + 1`` missing."""
    codes = pd.Categorical(series.astype("string"), categories=levels).codes.astype(np.int64)
    missing = series.isna().to_numpy()
    codes[(codes < 0) & ~missing] = len(levels)
    codes[missing] = len(levels) + 1
    return codes


def _numeric_labels(edges: list[float]) -> list[str]:
    def fmt(v: float) -> str:
        return f"{v:.4g}"

    if not edges:
        return ["all", "missing"]
    labels = [f"<= {fmt(edges[0])}"]
    labels += [f"({fmt(lo)}, {fmt(hi)}]" for lo, hi in itertools.pairwise(edges)]
    return [*labels, f"> {fmt(edges[-1])}", "missing"]


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return [float(c / total) if total else 0.0 for c in counts]


def build_reference(
    part: pd.DataFrame,
    preprocessor: Preprocessor,
    labels: np.ndarray,
    *,
    bins: int = 10,
) -> dict[str, Any]:
    """The training distributions drift is measured against (``reference.json`` in the bundle).

    Args:
        part: validated training rows that set the bin edges and feature shares: all of them, or a
            seeded sample (:func:`segmentation.data.chunks.sample_positions`; ``drift.reference_sample``
            rows, 100,000 by default, pin every share down to about +-0.002).
        preprocessor: the fitted preprocessor (its schema names the features and their kinds; its
            ``raw_column`` gives numeric, boolean and date columns in original units).
        labels: the training segment of every training row (-1 is noise), for the segment shares.
        bins: quantile bins per numeric or date feature (booleans get two), plus one for missing.

    Returns:
        A JSON-able dict: ``features`` (name, kind, ``edges`` or ``levels``, ``shares``) and
        ``segments`` (ids, shares).
    """
    schema: TableSchema = preprocessor.schema
    features: list[dict[str, Any]] = []
    for spec in schema.columns:
        if spec.kind == "categorical":
            levels = [str(level) for level in spec.categories]
            counts = np.bincount(_categorical_bins(part[spec.name], levels), minlength=len(levels) + 2)
            features.append(
                {"name": spec.name, "kind": spec.kind, "levels": levels, "shares": _shares(counts)}
            )
            continue
        values = preprocessor.raw_column(part, spec.name)
        edges = np.array([0.0]) if spec.kind == "boolean" else quantile_edges(values, bins)
        counts = np.bincount(_numeric_bins(values, edges), minlength=len(edges) + 2)
        features.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "edges": [float(e) for e in edges],
                "shares": _shares(counts),
            }
        )
    ids, seg_counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    logger.info("drift reference: %d features from %d training rows", len(features), len(part))
    return {
        "format": REFERENCE_FORMAT,
        "bins": bins,
        "rows": len(part),
        "training_rows": len(labels),
        "features": features,
        "segments": {"ids": [int(i) for i in ids], "shares": _shares(seg_counts), "rows": len(labels)},
    }


# ------------------------------------------------------------------------------------ the report
@dataclass
class FeatureDrift:
    """PSI of one feature (or of the segment shares), with both distributions."""

    name: str
    kind: str
    psi: float
    status: Status
    bins: list[str]
    expected: list[float]
    actual: list[float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (every field)."""
        return asdict(self)


@dataclass
class DriftReport:
    """Everything :func:`compare` measured; ``status`` is the worst of the features and the segments."""

    model: dict[str, Any]
    snapshot: dict[str, Any]
    thresholds: dict[str, float]
    features: list[FeatureDrift]
    segments: FeatureDrift
    status: Status
    invalid: list[Failure] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    seconds: float = 0.0

    @property
    def alert(self) -> bool:
        """True when any feature or the segment shares reached their alert threshold."""
        return self.status == "alert"

    def by_status(self, status: Status) -> list[str]:
        """Names of the features with this status (segment shares as ``segment shares``)."""
        names = [f.name for f in self.features if f.status == status]
        return names + (["segment shares"] if self.segments.status == status else [])

    def table(self) -> pd.DataFrame:
        """One row per feature plus one for the segment shares, highest PSI first (``drift.csv``)."""
        rows = [
            {
                "feature": f.name,
                "kind": f.kind,
                "psi": f.psi,
                "status": f.status,
                "bins": len(f.bins),
                "reference_missing": f.expected[-1] if f.kind != "segments" else None,
                "snapshot_missing": f.actual[-1] if f.kind != "segments" else None,
            }
            for f in [*self.features, self.segments]
        ]
        frame = pd.DataFrame(rows)
        return frame.sort_values(["psi", "feature"], ascending=[False, True], kind="stable").reset_index(
            drop=True
        )

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-able (``drift.json``)."""
        return {
            "status": self.status,
            "created_at": self.created_at,
            "seconds": self.seconds,
            "model": self.model,
            "snapshot": self.snapshot,
            "thresholds": self.thresholds,
            "counts": {s: len(self.by_status(s)) for s in ("ok", "warn", "alert")},
            "alerts": self.by_status("alert"),
            "warnings": self.by_status("warn"),
            "segments": self.segments.to_dict(),
            "features": [f.to_dict() for f in sorted(self.features, key=lambda f: -f.psi)],
            "invalid": [
                {"column": f.column, "check": f.check, "count": f.count, "examples": f.examples}
                for f in self.invalid
            ],
        }

    def summary(self, top: int = 15) -> str:
        """A plain-text table for the terminal: status, rows, the top features and the segment shares."""
        snap = self.snapshot
        lines = [
            f"drift {self.status.upper()}: {self.model.get('name')} {self.model.get('version') or ''} vs "
            f"{snap['path']} ({snap['valid_rows']:,} valid rows, {snap['invalid_rows']:,} invalid left out)",
            f"thresholds: features warn {self.thresholds['warn']} / alert {self.thresholds['alert']}, "
            f"segments warn {self.thresholds['segment_warn']} / alert {self.thresholds['segment_alert']}",
            f"  {'feature':<32} {'kind':<11} {'psi':>8}  status",
        ]
        table = self.table()
        for row in table.head(top).itertuples():
            lines.append(f"  {str(row.feature)[:32]:<32} {row.kind:<11} {row.psi:8.4f}  {row.status}")
        if len(table) > top:
            lines.append(f"  ... {len(table) - top} more in drift.csv")
        if self.segments.name not in set(table.head(top)["feature"]):
            seg = self.segments
            lines.append(f"  {seg.name:<32} {seg.kind:<11} {seg.psi:8.4f}  {seg.status}")
        return "\n".join(lines)


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
        The report (nothing is written; see :func:`write_report`).

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
    features = reference["features"]
    names = [f["name"] for f in features]
    info = table_info(snapshot)
    # Rows are checked as batch scoring checks them; a missing feature column fails the snapshot at once.
    validator = ChunkValidator(model.schema, source=source, columns=info.columns, n_rows=info.n_rows)
    counts = [np.zeros(len(f["shares"]), dtype=np.int64) for f in features]
    edges = [np.asarray(f.get("edges", []), dtype=np.float64) for f in features]
    seg_ids = [int(i) for i in reference["segments"]["ids"]]
    seg_counts: dict[int, int] = dict.fromkeys(seg_ids, 0)
    total = valid_rows = 0
    for chunk in iter_chunks(snapshot, chunk_rows=config.chunk_rows, columns=names):
        total += len(chunk)
        valid = chunk[validator.check(chunk)]
        if not len(valid):
            continue
        valid_rows += len(valid)
        for j, feature in enumerate(features):
            if feature["kind"] == "categorical":
                index = _categorical_bins(valid[feature["name"]], feature["levels"])
            else:
                index = _numeric_bins(model.preprocessor.raw_column(valid, feature["name"]), edges[j])
            counts[j] += np.bincount(index, minlength=len(counts[j]))
        ids, n = np.unique(model.predict(valid, validate=False), return_counts=True)
        for seg, c in zip(ids.tolist(), n.tolist(), strict=True):
            seg_counts[int(seg)] = seg_counts.get(int(seg), 0) + int(c)
        logger.info("drift: %d rows read, %d valid", total, valid_rows)
    checked = validator.report()
    if not valid_rows:
        listed = checked.failures or [Failure("<table>", "has_rows", 1, ["no rows"])]
        raise DataValidationError(
            ValidationReport(source, total, len(info.columns), listed, model.schema.kind)
        )

    eps = config.epsilon
    results = []
    for feature, count in zip(features, counts, strict=True):
        actual = _shares(count)
        value = psi(feature["shares"], actual, eps)
        labels = (
            [*feature["levels"], _OTHER, _MISSING]
            if feature["kind"] == "categorical"
            else _numeric_labels(feature["edges"])
        )
        results.append(
            FeatureDrift(
                feature["name"],
                feature["kind"],
                value,
                status_of(value, config.warn, config.alert),
                labels,
                [float(s) for s in feature["shares"]],
                actual,
            )
        )
    expected_by_id = dict(zip(seg_ids, reference["segments"]["shares"], strict=True))
    order = sorted(seg_counts, key=lambda s: (s == NOISE, s))
    seg_expected = [float(expected_by_id.get(s, 0.0)) for s in order]
    seg_actual = _shares(np.array([seg_counts[s] for s in order]))
    seg_psi = psi(seg_expected, seg_actual, eps)
    segment_names = model.segment_names
    segments = FeatureDrift(
        "segment shares",
        "segments",
        seg_psi,
        status_of(seg_psi, config.segment_warn, config.segment_alert),
        [f"{s}: {segment_names.get(s, 'noise' if s == NOISE else '?')}" for s in order],
        seg_expected,
        seg_actual,
    )
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
            "epsilon": eps,
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
        seg_psi,
        total,
        report.seconds,
    )
    return report


# ---------------------------------------------------------------------------------------- writing
_COLOURS = {"ok": "#2ca02c", "warn": "#ff7f0e", "alert": "#d62728"}


def plot_drift(report: DriftReport, path: Path, top: int = 20) -> Path:
    """``drift.png``: the top features by PSI (coloured by status, threshold lines) and segment shares."""
    from segmentation.insights.plots import plt  # Agg backend, as every plot of the project

    ranked = sorted(report.features, key=lambda f: -f.psi)[:top][::-1]
    seg = report.segments
    height = max(4.0, 0.3 * max(len(ranked), len(seg.bins)) + 1.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, height), gridspec_kw={"width_ratios": [3, 2]})
    left.barh([f.name for f in ranked], [f.psi for f in ranked], color=[_COLOURS[f.status] for f in ranked])
    for name, style in (("warn", "--"), ("alert", "-")):
        left.axvline(
            report.thresholds[name],
            color=_COLOURS[name],
            linestyle=style,
            label=f"{name} {report.thresholds[name]}",
        )
    left.set_xlabel("population stability index")
    left.set_title(f"Top {len(ranked)} features by PSI ({report.status})")
    left.legend(loc="lower right")
    y = np.arange(len(seg.bins))
    right.barh(y - 0.2, seg.expected, height=0.4, color="#7f7f7f", label="training")
    right.barh(y + 0.2, seg.actual, height=0.4, color=_COLOURS[seg.status], label="snapshot")
    right.set_yticks(y, [b if len(b) <= 40 else b[:39] + "\u2026" for b in seg.bins])
    right.invert_yaxis()
    right.set_xlabel("share of customers")
    right.set_title(f"Segment shares: PSI {seg.psi:.3f} ({seg.status})")
    right.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _blocks(report: DriftReport, top: int = 25) -> list[Any]:
    from segmentation.insights.report import Heading, Image, Para, Table, Warnings

    model, snap, th = report.model, report.snapshot, report.thresholds
    alerts, warns = report.by_status("alert"), report.by_status("warn")
    items = [f"ALERT (PSI >= threshold): {', '.join(alerts)}"] if alerts else []
    items += [f"warn: {', '.join(warns)}"] if warns else []
    if snap["invalid_rows"]:
        items.append(f"{snap['invalid_rows']:,} invalid rows were left out (see below)")
    table = report.table()
    blocks: list[Any] = [
        Heading(1, f"Drift report: {report.status.upper()}"),
        Para(
            f"Model {model['name']} {model.get('version') or ''} (digest {str(model.get('digest'))[:12]}, "
            f"trained {model.get('trained_at')}) vs snapshot {snap['path']} (sha256 {snap['sha256'][:12]}, "
            f"{snap['rows']:,} rows, {snap['valid_rows']:,} valid), {report.created_at}."
        ),
        Para(
            f"Population stability index per feature against {snap['reference_rows']:,} training rows: "
            f"warn at {th['warn']}, alert at {th['alert']}; segment shares warn at {th['segment_warn']}, "
            f"alert at {th['segment_alert']}. Two samples of the same population give about "
            f"{snap['noise_floor_psi']:.4f}."
        ),
        Warnings(items),
        Image("drift.png", "top features by PSI and segment shares"),
        Heading(2, "Segment shares"),
        Table(
            ["segment", "training", "snapshot"],
            [
                [b, f"{e:.1%}", f"{a:.1%}"]
                for b, e, a in zip(
                    report.segments.bins, report.segments.expected, report.segments.actual, strict=True
                )
            ],
        ),
        Heading(2, f"Features (top {min(top, len(table))} of {len(table)}; all in drift.csv)"),
        Table(
            ["feature", "kind", "PSI", "status"],
            [
                [str(r.feature), str(r.kind), f"{r.psi:.4f}", str(r.status)]
                for r in table.head(top).itertuples()
            ],
        ),
    ]
    if report.invalid:
        blocks += [
            Heading(2, "Invalid rows (left out)"),
            Table(
                ["column", "check", "count", "examples"],
                [[f.column, f.check, str(f.count), ", ".join(map(str, f.examples))] for f in report.invalid],
            ),
        ]
    return blocks


def write_report(report: DriftReport, out_dir: str | Path) -> dict[str, str]:
    """Write ``drift.json``, ``drift.csv``, ``drift.png``, ``drift.md`` and ``drift.html`` (atomically)."""
    from segmentation.insights.report import render_html, render_markdown

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": write_json(report.to_dict(), out / "drift.json"),
        "csv": write_table(report.table(), out / "drift.csv"),
        "png": plot_drift(report, out / "drift.png"),
    }
    blocks = _blocks(report)
    paths["md"] = write_text(render_markdown(blocks), out / "drift.md")
    paths["html"] = write_text(render_html(blocks, out), out / "drift.html")
    return {k: str(v) for k, v in paths.items()}


__all__ = [
    "DriftAlertError",
    "DriftReport",
    "FeatureDrift",
    "NoReferenceError",
    "build_reference",
    "compare",
    "model_info",
    "plot_drift",
    "psi",
    "quantile_edges",
    "status_of",
    "write_report",
]
