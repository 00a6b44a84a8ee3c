"""The scoring plan: a table's chunks, its columns, and the key and paths of one scoring run.

:func:`plan_scoring` checks the table's columns against the model, splits it into chunks
(:func:`plan_chunks`: Parquet row groups coalesced up to ``chunk_rows``, CSV ranges of rows) and fixes the
run's key (a digest of the bundle, the data's content hash, the chunking, the model version and the ID
column) and its files: the output, the rejects, the summary and the staging directory of the parts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from segmentation.bundle import SegmentationModel, bundle_digest
from segmentation.contract.validator import ChunkValidator
from segmentation.data.chunks import DEFAULT_CHUNK_ROWS, table_info
from segmentation.data.io import file_digest, sniff_delimiter, table_format

SCORING_FORMAT = 1
"""Bumped when the output layout changes, so parts of an older layout are never resumed."""


@dataclass(frozen=True)
class Chunk:
    """Rows ``start:stop`` of the table (Parquet: exactly the row groups listed)."""

    index: int
    start: int
    stop: int
    row_groups: tuple[int, ...] = ()

    @property
    def n_rows(self) -> int:
        """Rows in the chunk."""
        return self.stop - self.start


@dataclass(frozen=True)
class ScoringPlan:
    """Everything a scorer needs to score any chunk, in plain values (sent to Dask workers as is)."""

    data: str
    format: str
    n_rows: int
    chunk_rows: int
    chunks: tuple[Chunk, ...]
    columns: tuple[str, ...]  # what is read: the ID column (when present) and the feature columns
    id_column: str | None  # the ID column written to the output (None: ``row`` is written instead)
    data_hash: str
    bundle_digest: str
    model_version: str
    out: str
    rejects: str
    summary: str
    staging: str
    key: str


def model_version_label(model: SegmentationModel, registry_tag: str | None = None) -> str:
    """``name:vN`` for a registry version, else ``bundle:<first 12 hex of the bundle digest>``."""
    if registry_tag:
        return f"{model.name}:{registry_tag}"
    return f"bundle:{bundle_digest(model.manifest)[:12]}"


def default_rejects_path(out: str | Path) -> Path:
    """``<out stem>.rejects.parquet`` beside the output."""
    out = Path(out)
    return out.with_name(f"{out.stem}.rejects.parquet")


def summary_path(out: str | Path) -> Path:
    """``<out stem>.summary.json`` beside the output."""
    out = Path(out)
    return out.with_name(f"{out.stem}.summary.json")


def _plan_key(bundle: str, data_hash: str, chunk_rows: int, model_version: str, id_column: str | None) -> str:
    text = json.dumps(
        {
            "format": SCORING_FORMAT,
            "bundle": bundle,
            "data": data_hash,
            "chunk_rows": chunk_rows,
            "model_version": model_version,
            "id_column": id_column,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _csv_rows(path: str) -> int:
    rows = 0
    for frame in pd.read_csv(path, sep=sniff_delimiter(path), usecols=[0], chunksize=1_000_000):
        rows += len(frame)
    return rows


def plan_chunks(path: str | Path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[int, list[Chunk]]:
    """Split a table into chunks: Parquet row groups coalesced up to ``chunk_rows``, CSV by rows.

    A Parquet row group is never split (one larger than ``chunk_rows`` is a chunk of its own): readers
    decode whole row groups, so splitting one would decode it twice.

    Returns:
        The number of rows and the chunks, in row order.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    info = table_info(path)
    chunks: list[Chunk] = []
    if info.format == "parquet":
        start = 0
        groups: list[int] = []
        rows = 0
        for group, size in enumerate(info.row_groups):
            if groups and rows + size > chunk_rows:
                chunks.append(Chunk(len(chunks), start, start + rows, tuple(groups)))
                start, groups, rows = start + rows, [], 0
            groups.append(group)
            rows += size
        if groups:
            chunks.append(Chunk(len(chunks), start, start + rows, tuple(groups)))
        return int(info.n_rows or 0), chunks
    n_rows = _csv_rows(str(path))
    for start in range(0, n_rows, chunk_rows):
        chunks.append(Chunk(len(chunks), start, min(start + chunk_rows, n_rows)))
    return n_rows, chunks


def plan_scoring(
    model: SegmentationModel,
    data: str | Path,
    out: str | Path,
    *,
    model_version: str | None = None,
    rejects: str | Path | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    data_hash: str | None = None,
) -> ScoringPlan:
    """Check the table's columns against the model and plan its chunks.

    Args:
        model: the loaded model.
        data: CSV or Parquet table (local path).
        out: the output Parquet file.
        model_version: written into every row (default :func:`model_version_label`).
        rejects: the rejects Parquet file (default :func:`default_rejects_path`).
        chunk_rows: rows per chunk (Parquet: a target; row groups are never split).
        data_hash: the table's SHA-256 when already known (else it is computed).

    Raises:
        FileNotFoundError: no such table.
        DataValidationError: a feature column is missing (named in the report), or the format is unknown.
    """
    data = str(data)
    if not Path(data).is_file():
        raise FileNotFoundError(f"data file not found: {data}")
    fmt = table_format(data)
    info = table_info(data)
    ChunkValidator(model.schema, source=data, columns=info.columns)  # a missing feature column fails here
    id_column = model.schema.id_column if model.schema.id_column in info.columns else None
    columns = ([id_column] if id_column else []) + model.schema.feature_names
    n_rows, chunks = plan_chunks(data, chunk_rows)
    digest = bundle_digest(model.manifest)
    version = model_version or model_version_label(model)
    data_hash = data_hash or file_digest(data)
    key = _plan_key(digest, data_hash, chunk_rows, version, id_column)
    out_path = Path(out).resolve()
    return ScoringPlan(
        data=data,
        format=fmt,
        n_rows=n_rows,
        chunk_rows=chunk_rows,
        chunks=tuple(chunks),
        columns=tuple(columns),
        id_column=id_column,
        data_hash=data_hash,
        bundle_digest=digest,
        model_version=version,
        out=str(out_path),
        rejects=str(Path(rejects).resolve() if rejects else default_rejects_path(out_path)),
        summary=str(summary_path(out_path)),
        staging=str(out_path.with_name(f".{out_path.name}.parts-{key}")),
        key=key,
    )


__all__ = [
    "SCORING_FORMAT",
    "Chunk",
    "ScoringPlan",
    "default_rejects_path",
    "model_version_label",
    "plan_chunks",
    "plan_scoring",
    "summary_path",
]
