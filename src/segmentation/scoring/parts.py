"""Parts: one scored chunk on disk, written atomically into the run's staging directory, resumable.

A part is ``part-<index>.parquet`` (the scored rows), ``part-<index>.rejects.parquet`` and a small JSON
marker ``part-<index>.json`` (its :class:`PartResult`) written last, each to a temporary name and renamed:
a part counts as complete only when all of it is on disk, so a run killed at any point (even by SIGKILL)
resumes from the parts it completed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from segmentation.bundle import SegmentationModel
from segmentation.data.io import atomic_path, write_json
from segmentation.scoring.assign import score_chunk
from segmentation.scoring.plan import Chunk, ScoringPlan

REJECTS_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("column", pa.string()),
        ("check", pa.string()),
        ("value", pa.string()),
    ]
)


@dataclass
class PartResult:
    """What scoring one chunk produced (also the part's JSON marker)."""

    index: int
    rows: int
    scored: int
    rejected: int
    reject_lines: int
    seconds: float
    resumed: bool = False
    rejects_by_check: dict[str, int] = field(default_factory=dict)


def part_path(plan: ScoringPlan, index: int, suffix: str) -> Path:
    """A file of chunk ``index``'s part: ``<staging>/part-<index:05d><suffix>``."""
    return Path(plan.staging) / f"part-{index:05d}{suffix}"


def _part_paths(plan: ScoringPlan, index: int) -> tuple[Path, Path, Path]:
    data, rejects, marker = (part_path(plan, index, s) for s in (".parquet", ".rejects.parquet", ".json"))
    return data, rejects, marker


def _rejects_table(rejects: pd.DataFrame) -> pa.Table:
    frame = rejects[list(REJECTS_SCHEMA.names)]
    return pa.Table.from_pandas(frame, schema=REJECTS_SCHEMA, preserve_index=False)


def completed_part(plan: ScoringPlan, chunk: Chunk) -> PartResult | None:
    """The result of a chunk scored by an earlier (possibly interrupted) run, if its part is complete."""
    data_path, rejects_path, marker = _part_paths(plan, chunk.index)
    if not (marker.is_file() and data_path.is_file() and rejects_path.is_file()):
        return None
    try:
        result = PartResult(**json.loads(marker.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        return None
    result.resumed = True
    return result if result.rows == chunk.n_rows else None


def score_part(model: SegmentationModel, plan: ScoringPlan, chunk: Chunk) -> PartResult:
    """Score one chunk into its part files, or reuse the part a previous run completed.

    Each file is written to a temporary name and renamed; the JSON marker goes last, so a part counts as
    complete only when all of it is on disk.
    """
    done = completed_part(plan, chunk)
    if done is not None:
        return done
    began = time.perf_counter()
    scored, rejects = score_chunk(model, plan, chunk)
    data_path, rejects_path, marker = _part_paths(plan, chunk.index)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(data_path) as tmp:
        pq.write_table(scored, tmp)
    with atomic_path(rejects_path) as tmp:
        pq.write_table(_rejects_table(rejects), tmp)
    by_check: dict[str, int] = {}
    for column, check in zip(rejects["column"], rejects["check"], strict=True):
        name = f"{column}: {check}"
        by_check[name] = by_check.get(name, 0) + 1
    result = PartResult(
        index=chunk.index,
        rows=chunk.n_rows,
        scored=scored.num_rows,
        rejected=chunk.n_rows - scored.num_rows,
        reject_lines=len(rejects),
        seconds=round(time.perf_counter() - began, 4),
        rejects_by_check=dict(sorted(by_check.items())),
    )
    write_json({k: v for k, v in asdict(result).items() if k != "resumed"}, marker)
    return result


__all__ = ["REJECTS_SCHEMA", "PartResult", "completed_part", "part_path", "score_part"]
