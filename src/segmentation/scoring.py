"""Batch scoring: a whole customer table through a model bundle, in chunks, restartable.

The table is split into chunks (Parquet: whole row groups, coalesced up to ``chunk_rows``; CSV: ranges of
rows). Each chunk is read, validated (:class:`segmentation.contract.validator.ChunkValidator`),
its valid rows scored, and written as a *part* (scored rows + rejects + a small JSON marker written last)
into a staging directory beside the output::

    <out dir>/.<out name>.parts-<key>/part-00000.parquet, part-00000.rejects.parquet, part-00000.json

``key`` is a digest of everything that decides the output: the bundle digest, the data's content hash,
the chunking and the model version written into the rows. A run that is interrupted (even by SIGKILL)
leaves only completed parts (each is renamed into place when complete) and no final output; rerunning the
same command resumes from those parts. :func:`combine` concatenates the parts in row order into the output
Parquet and the rejects Parquet (temporary file + rename each), writes the JSON summary last and removes
the staging directory. A rerun whose summary matches the key and whose files are present does nothing, so
reruns never duplicate rows; a forced rerun on the same machine and thread settings rewrites byte-identical
files (parts are combined in order).
After a successful combine, leftovers of interrupted runs for the same output (temporary files, staging
directories of other keys) are removed, so run one scoring per output path at a time.

Output columns: the schema's ID column (or ``row``, the 0-based row number in the file, when the model has
no ID column or the table lacks it), ``segment`` (int32, -1 noise), ``segment_name``, ``confidence``
(float32) and ``model_version`` (``name:vN`` for a registry model, else ``bundle:<digest12>``). Rejects:
``row``, ``id``, ``column``, ``check``, ``value`` (one line per failed check of a rejected row).

This module is pure library code (no Prefect): the ``score-customers`` flow in ``workflows/score.py`` and
``segment score`` both drive :func:`plan_scoring`, :func:`score_part` and :func:`combine`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from segmentation.bundle import SegmentationModel, bundle_digest, load_bundle
from segmentation.contract.checks import CheckedColumns, ColumnData, column_rows
from segmentation.contract.validator import ChunkValidator
from segmentation.data.chunks import DEFAULT_CHUNK_ROWS, PARQUET_ROW_GROUP, table_info
from segmentation.data.io import _sniff_delimiter, atomic_path, file_digest, table_format, write_json

logger = logging.getLogger(__name__)

SCORING_FORMAT = 1
"""Bumped when the output layout changes, so parts of an older layout are never resumed."""

ROW_COLUMN = "row"
NOISE_NAME = "noise"
REJECTS_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("column", pa.string()),
        ("check", pa.string()),
        ("value", pa.string()),
    ]
)


# ------------------------------------------------------------------------------------------ plan
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
    for frame in pd.read_csv(path, sep=_sniff_delimiter(path), usecols=[0], chunksize=1_000_000):
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


# ----------------------------------------------------------------------------------------- read
@dataclass
class ChunkData:
    """One chunk as read: its feature columns, row numbers and IDs.

    Attributes:
        columns: every feature column, as Arrow data (Parquet: never converted to pandas) or pandas
            Series (CSV).
        rows: the global row number of every row.
        ids: the ID column (Arrow; never converted to Python objects: it is only filtered and written),
            or None.
    """

    columns: dict[str, ColumnData]
    rows: np.ndarray
    ids: pa.Array | None


def read_chunk(plan: ScoringPlan, chunk: Chunk) -> ChunkData:
    """The chunk's feature columns and IDs."""
    features = [c for c in plan.columns if c != plan.id_column]
    ids: pa.Array | None = None
    columns: dict[str, ColumnData]
    if plan.format == "parquet":
        table = pq.ParquetFile(plan.data).read_row_groups(list(chunk.row_groups), columns=list(plan.columns))
        if plan.id_column:
            ids = table.column(plan.id_column).combine_chunks()
        columns = {name: table.column(name) for name in features}
        n_rows = table.num_rows
    else:
        frame = pd.read_csv(
            plan.data,
            sep=_sniff_delimiter(plan.data),
            usecols=list(plan.columns),
            skiprows=range(1, chunk.start + 1),
            nrows=chunk.n_rows,
            dtype={plan.id_column: str} if plan.id_column else None,
        )
        if plan.id_column:
            ids = pa.array(frame.pop(plan.id_column), type=pa.string())
        columns = {name: frame[name] for name in features}
        n_rows = len(frame)
    if n_rows != chunk.n_rows:
        raise OSError(f"{plan.data}: chunk {chunk.index} has {n_rows} rows, expected {chunk.n_rows}")
    return ChunkData(columns, np.arange(chunk.start, chunk.stop, dtype=np.int64), ids)


# ---------------------------------------------------------------------------------------- score
def _text_column(values: np.ndarray, labels: Sequence[str]) -> pa.Array:
    """Strings chosen by integer codes, built in Arrow (no Python string per row)."""
    dictionary = pa.DictionaryArray.from_arrays(pa.array(values, type=pa.int32()), pa.array(list(labels)))
    return dictionary.cast(pa.string())


MODEL_BLOCK_ROWS = 32_768
"""Rows per pass through preprocessing, featurizer and clusterer inside a chunk: work arrays of about
16 MB at 124 features, which stay in cache between the steps (eight passes per 262k-row chunk). The block
size can change a row's result by float32 rounding only (some BLAS kernels sum products of another shape in
another order); tested against whole-table prediction: the same segment except at ties, confidence to 1e-5."""


def _assign(model: SegmentationModel, checked: CheckedColumns) -> tuple[np.ndarray, np.ndarray]:
    """Segment and confidence of the valid rows, block by block.

    Each block goes through preprocessing, featurizer and clusterer while its work arrays are in cache
    (invalid rows too: their values are never used); only a block that holds invalid rows is filtered (a
    copy of that block) before the model.
    """
    valid = checked.valid
    n_valid = int(valid.sum())
    labels = np.empty(n_valid, dtype=np.int64)
    confidence = np.empty(n_valid, dtype=np.float32)
    done = 0
    for lo in range(0, len(valid), MODEL_BLOCK_ROWS):
        hi = min(lo + MODEL_BLOCK_ROWS, len(valid))
        keep = valid[lo:hi]
        if not keep.any():
            continue
        columns = {name: column_rows(column, lo, hi) for name, column in checked.columns.items()}
        with np.errstate(all="ignore"):  # invalid rows may hold anything until they are dropped
            block = model.preprocessor.transform_columns(columns, hi - lo).T
        if not keep.all():
            block = block[np.flatnonzero(keep)]
        block_labels, block_confidence, _ = model.clusterer.predict_details(model.featurizer.transform(block))
        labels[done : done + len(block)] = block_labels
        confidence[done : done + len(block)] = block_confidence
        done += len(block)
    return labels, confidence


def _segment_codes(model: SegmentationModel, labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Codes into the list of segment names; noise (-1, unless it has a name) gets the extra last name."""
    names = model.segment_names
    ids = np.asarray(sorted(names), dtype=np.int64)
    lookup = np.full(int(max(ids.max(initial=0), labels.max(initial=0))) + 2, len(ids), dtype=np.int32)
    lookup[ids + 1] = np.arange(len(ids), dtype=np.int32)  # IDs >= -1; shifted by one
    return lookup[labels + 1], [*(names[int(i)] for i in ids), NOISE_NAME]


def score_columns(
    model: SegmentationModel,
    data: ChunkData,
    *,
    model_version: str,
    id_column: str | None = None,
    source: str = "<frame>",
) -> tuple[pa.Table, pd.DataFrame]:
    """Validate and score rows: the scored valid rows, and one line per failed check of the others.

    Args:
        model: the loaded model.
        data: the rows' feature columns, row numbers and (optionally) IDs.
        model_version: the label written into every scored row.
        id_column: the ID column's name in the output (``row`` is written instead when it or the IDs are
            missing).
        source: the table's name, for the error raised when a feature column is missing.

    Returns:
        ``(scored, rejects)``: an Arrow table (ID or ``row``, ``segment``, ``segment_name``,
        ``confidence``, ``model_version``) and a rejects frame (``row``, ``id``, ``column``, ``check``,
        ``value``).
    """
    validator = ChunkValidator(model.schema, source=source, columns=list(data.columns))
    checked = validator.check_columns(data.columns, data.rows)
    valid, rejects = checked.valid, checked.rejects
    all_valid = bool(valid.all())
    labels, confidence = _assign(model, checked)
    codes, segment_names = _segment_codes(model, labels)
    columns: dict[str, pa.Array] = {}
    ids = data.ids
    if ids is not None and id_column:
        columns[id_column] = ids if all_valid else ids.filter(pa.array(valid))
    else:
        rows = data.rows
        columns[ROW_COLUMN] = pa.array(rows if all_valid else rows[valid], type=pa.int64())
    columns["segment"] = pa.array(labels.astype(np.int32, copy=False), type=pa.int32())
    columns["segment_name"] = _text_column(codes, segment_names)
    columns["confidence"] = pa.array(np.asarray(confidence, dtype=np.float32), type=pa.float32())
    columns["model_version"] = pa.repeat(pa.scalar(model_version, type=pa.string()), len(labels))
    scored = pa.table(columns)
    if len(rejects):
        if ids is not None:
            positions = np.searchsorted(data.rows, rejects["row"].to_numpy())
            rejects.insert(1, "id", pc.take(ids, pa.array(positions)).cast(pa.string()).to_pylist())
        else:
            rejects.insert(1, "id", None)
    else:
        rejects.insert(1, "id", pd.Series([], dtype=object))
    return scored, rejects


def score_chunk(model: SegmentationModel, plan: ScoringPlan, chunk: Chunk) -> tuple[pa.Table, pd.DataFrame]:
    """Read, validate and score one chunk (nothing is written)."""
    data = read_chunk(plan, chunk)
    return score_columns(
        model, data, model_version=plan.model_version, id_column=plan.id_column, source=plan.data
    )


def _part_paths(plan: ScoringPlan, index: int) -> tuple[Path, Path, Path]:
    base = Path(plan.staging) / f"part-{index:05d}"
    return base.with_suffix(".parquet"), base.with_suffix(".rejects.parquet"), base.with_suffix(".json")


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


# -------------------------------------------------------------------------------------- combine
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
    files = [Path(plan.staging) / f"part-{c.index:05d}{suffix}" for c in plan.chunks]
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
        model_version: label written into every row (default :func:`model_version_label`).
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


__all__ = [
    "Chunk",
    "ChunkData",
    "PartResult",
    "ScoringPlan",
    "ScoringSummary",
    "cached_model",
    "combine",
    "completed_part",
    "default_rejects_path",
    "model_version_label",
    "plan_chunks",
    "plan_scoring",
    "read_chunk",
    "score_chunk",
    "score_columns",
    "score_part",
    "score_table",
    "summary_path",
    "up_to_date",
]
