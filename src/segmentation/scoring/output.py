"""The run's output: the parts combined in row order into the output and rejects files, and its summary.

:func:`combine` concatenates the parts into the output Parquet and the rejects Parquet (temporary file +
rename each), writes the JSON summary (:class:`ScoringSummary`) last and removes the staging directory and
the leftovers of interrupted runs for the same output. :func:`up_to_date` finds a finished run with the
same key whose files are still in place, so reruns never duplicate rows.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from segmentation.data.chunks import PARQUET_ROW_GROUP
from segmentation.data.io import atomic_path, write_json
from segmentation.scoring.assign import ROW_COLUMN
from segmentation.scoring.parts import REJECTS_SCHEMA, PartResult, part_path
from segmentation.scoring.plan import ScoringPlan

logger = logging.getLogger(__name__)


@dataclass
class ScoringSummary:
    """What one scoring run did (written as ``<out stem>.summary.json``)."""

    data: str
    out: str
    rejects: str
    rows: int
    scored: int
    rejected: int
    reject_lines: int
    rejects_by_check: dict[str, int]
    model_version: str
    bundle_digest: str
    data_hash: str
    chunk_rows: int
    chunks: int
    resumed_chunks: int
    key: str
    seconds: float
    rows_per_second: float
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def combine(plan: ScoringPlan, parts: Sequence[PartResult], *, seconds: float) -> ScoringSummary:
    """Concatenate the parts in row order into the output and rejects files; write the summary.

    The output and the rejects file are each written to a temporary file and renamed; the summary is
    written last and the staging directory removed after it.

    Raises:
        ValueError: a chunk of the plan has no part.
    """
    by_index = {p.index: p for p in parts}
    missing = [c.index for c in plan.chunks if c.index not in by_index]
    if missing:
        raise ValueError(f"cannot combine: chunks {missing[:10]} have not been scored")
    _concat_parts(plan, Path(plan.rejects), ".rejects.parquet", REJECTS_SCHEMA)
    _concat_parts(plan, Path(plan.out), ".parquet", None)
    by_check: dict[str, int] = {}
    for part in parts:
        for name, count in part.rejects_by_check.items():
            by_check[name] = by_check.get(name, 0) + count
    ordered = [by_index[c.index] for c in plan.chunks]
    summary = ScoringSummary(
        data=plan.data,
        out=plan.out,
        rejects=plan.rejects,
        rows=plan.n_rows,
        scored=sum(p.scored for p in ordered),
        rejected=sum(p.rejected for p in ordered),
        reject_lines=sum(p.reject_lines for p in ordered),
        rejects_by_check=dict(sorted(by_check.items())),
        model_version=plan.model_version,
        bundle_digest=plan.bundle_digest,
        data_hash=plan.data_hash,
        chunk_rows=plan.chunk_rows,
        chunks=len(plan.chunks),
        resumed_chunks=sum(p.resumed for p in ordered),
        key=plan.key,
        seconds=round(seconds, 3),
        rows_per_second=round(plan.n_rows / seconds, 1) if seconds > 0 else 0.0,
    )
    write_json(summary.to_dict(), plan.summary)
    shutil.rmtree(plan.staging, ignore_errors=True)
    _remove_leftovers(plan)
    return summary


def _remove_leftovers(plan: ScoringPlan) -> None:
    """Temporary files of a run killed while combining, and parts of interrupted runs with other inputs."""
    out = Path(plan.out)
    patterns = [f".{Path(p).name}.tmp-*" for p in (plan.out, plan.rejects, plan.summary)]
    for pattern in [*patterns, f".{out.name}.parts-*"]:
        for stale in out.parent.glob(pattern):
            logger.info("removing %s, left by an interrupted run", stale)
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def _concat_parts(plan: ScoringPlan, target: Path, suffix: str, schema: pa.Schema | None) -> None:
    files = [part_path(plan, c.index, suffix) for c in plan.chunks]
    if schema is None:
        schema = pq.read_schema(files[0]) if files else _empty_output_schema(plan)
    # The writer closes (writes its footer) before atomic_path renames the file into place.
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for file in files:
            writer.write_table(pq.read_table(file, schema=schema), row_group_size=PARQUET_ROW_GROUP)


def _empty_output_schema(plan: ScoringPlan) -> pa.Schema:
    first = pa.field(plan.id_column, pa.string()) if plan.id_column else pa.field(ROW_COLUMN, pa.int64())
    return pa.schema(
        [
            first,
            ("segment", pa.int32()),
            ("segment_name", pa.string()),
            ("confidence", pa.float32()),
            ("model_version", pa.string()),
        ]
    )


def up_to_date(plan: ScoringPlan) -> ScoringSummary | None:
    """The summary of a finished run with the same key whose files are still in place, else None."""
    path = Path(plan.summary)
    if not (path.is_file() and Path(plan.out).is_file() and Path(plan.rejects).is_file()):
        return None
    try:
        summary = ScoringSummary(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        return None
    if summary.key != plan.key or summary.out != plan.out or summary.rejects != plan.rejects:
        return None
    try:
        if pq.ParquetFile(plan.out).metadata.num_rows != summary.scored:
            return None
    except (OSError, pa.ArrowException):
        return None
    summary.skipped = True
    return summary


__all__ = ["ScoringSummary", "combine", "up_to_date"]
