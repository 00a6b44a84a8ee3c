"""The drift report: each feature's PSI and status, the segment shares', and the report's views of them.

:class:`DriftReport` holds what :func:`segmentation.drift.measure.compare` measured; its ``status`` is the
worst of the features and the segment shares. It gives the terminal summary, the ``drift.csv`` table and the
``drift.json`` dict; :mod:`segmentation.drift.write` writes the files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd

from segmentation.contract.report import Failure
from segmentation.errors import SegmentationError

Status = Literal["ok", "warn", "alert"]


class DriftAlertError(SegmentationError):
    """The snapshot drifted past an alert threshold (the report was written first). Exit code 5."""

    exit_code = 5


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


__all__ = ["DriftAlertError", "DriftReport", "FeatureDrift", "Status"]
