"""Reading customer tables in row chunks, so no stage needs the whole table in memory at once.

Parquet is read batch by batch with pyarrow (only the requested columns are decoded); CSV through
pandas' chunked reader. Every chunk carries its global row numbers as its index, so a rejected row can
be named by its position in the file whatever the chunk size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from segmentation.data.io import is_url, open_binary, sniff_delimiter, table_format

S = TypeVar("S")
T = TypeVar("T")

DEFAULT_CHUNK_ROWS = 262_144
"""Rows per chunk: about 120 MB of float32 at 120 features; big enough that per-chunk overhead vanishes."""

PARQUET_ROW_GROUP = 262_144
"""Row-group size of the Parquet files we write, so chunked readers and parallel scorers can split them."""


def sample_positions(n_rows: int, size: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of ``size`` of ``n_rows`` rows (all rows when fewer).

    Every sample of the training rows is this draw, so samples of equal size are the same rows: with the
    defaults, preprocessing, the agreement check and the drift reference share one 100,000-row sample.
    """
    if n_rows <= size:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size, replace=False))


def _parquet_file(path: str | Path) -> pq.ParquetFile:
    source: Any = open_binary(path) if is_url(path) else str(path)
    return pq.ParquetFile(source)


@dataclass(frozen=True)
class TableInfo:
    """What is known about a table without reading its rows."""

    path: str
    format: str
    columns: list[str]
    n_rows: int | None  # None for CSV until it has been read once
    row_groups: list[int]  # rows per Parquet row group (empty for CSV)


def _row_group_starts(meta: pq.FileMetaData) -> np.ndarray:
    """First row of every row group, then the row count: group ``g`` is rows ``starts[g]:starts[g + 1]``."""
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def table_info(path: str | Path) -> TableInfo:
    """Columns and (for Parquet) row count and row groups, from the file's metadata only."""
    fmt = table_format(path)
    if fmt == "parquet":
        meta = _parquet_file(path).metadata
        groups = np.diff(_row_group_starts(meta)).tolist()
        return TableInfo(str(path), fmt, list(meta.schema.to_arrow_schema().names), meta.num_rows, groups)
    head = pd.read_csv(path, nrows=0, sep=sniff_delimiter(path))
    return TableInfo(str(path), fmt, [str(c) for c in head.columns], None, [])


def iter_chunks(
    path: str | Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    columns: Sequence[str] | None = None,
    row_groups: Sequence[int] | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield the table in chunks of at most ``chunk_rows`` rows, indexed by global row number.

    Args:
        path: CSV or Parquet file (local or fsspec URL).
        chunk_rows: rows per chunk.
        columns: read only these columns (Parquet decodes nothing else).
        row_groups: Parquet only: read just these row groups (how parallel scorers split a file); the
            index still counts rows from the start of the file.
    """
    offset = 0
    if table_format(path) == "parquet":
        pf = _parquet_file(path)
        meta = pf.metadata
        starts = _row_group_starts(meta)
        groups = list(range(meta.num_row_groups)) if row_groups is None else list(row_groups)
        for group in groups:
            offset = int(starts[group])
            batches = pf.iter_batches(
                batch_size=chunk_rows, row_groups=[group], columns=list(columns) if columns else None
            )
            for batch in batches:
                frame = pa.Table.from_batches([batch]).to_pandas(split_blocks=True, self_destruct=True)
                frame.index = pd.RangeIndex(offset, offset + len(frame))
                offset += len(frame)
                yield frame
        return
    if row_groups is not None:
        raise ValueError("row_groups applies to Parquet files only")
    reader = pd.read_csv(
        path, sep=sniff_delimiter(path), chunksize=chunk_rows, usecols=list(columns) if columns else None
    )
    with reader:
        for frame in reader:
            frame.index = pd.RangeIndex(offset, offset + len(frame))
            offset += len(frame)
            yield frame


def map_chunks(fn: Callable[[S], T], chunks: Iterable[S], *, workers: int = 2) -> Iterator[T]:
    """``fn`` over chunks on ``workers`` threads, results in order, at most ``workers + 1`` chunks in flight.

    NumPy and pyarrow release the GIL in their kernels, so two threads use both cores of a small machine
    while the next chunk is being read; unlike ``Executor.map`` the input is consumed lazily, so memory
    stays bounded by a few chunks whatever the table size.
    """
    if workers <= 1:
        yield from map(fn, chunks)
        return
    pending: deque[Future[T]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chunk") as pool:
        for chunk in chunks:
            pending.append(pool.submit(fn, chunk))
            while len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def read_ahead(
    path: str | Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, columns: Sequence[str] | None = None
) -> Iterator[pd.DataFrame]:
    """:func:`iter_chunks` for Parquet with the next row groups decoded on background threads.

    The caller's work on one chunk overlaps the decoding of the following ones (pyarrow releases the
    GIL), in order; CSV is read as :func:`iter_chunks` reads it.
    """
    if table_format(path) != "parquet":
        yield from iter_chunks(path, chunk_rows=chunk_rows, columns=columns)
        return
    groups = range(_parquet_file(path).metadata.num_row_groups)

    def read(group: int) -> list[pd.DataFrame]:
        return list(iter_chunks(path, chunk_rows=chunk_rows, columns=columns, row_groups=[group]))

    for frames in map_chunks(read, groups):
        yield from frames


def read_columns(path: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """Just these columns of the whole table (Parquet decodes nothing else)."""
    if table_format(path) == "parquet":
        return (
            _parquet_file(path).read(columns=list(columns)).to_pandas(split_blocks=True, self_destruct=True)
        )
    return pd.read_csv(path, sep=sniff_delimiter(path), usecols=list(columns))


def take_rows(path: str | Path, rows: np.ndarray, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows at these (sorted, global) positions, indexed by position.

    Parquet: row group by row group, picking rows from the Arrow data before converting to pandas,
    so a 100,000-row sample of a 2,000,000-row table converts 100,000 rows, not 2,000,000.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if table_format(path) != "parquet":
        parts = []
        for chunk in iter_chunks(path, columns=columns):
            lo, hi = chunk.index[0], chunk.index[-1] + 1
            picked = rows[(rows >= lo) & (rows < hi)]
            if len(picked):
                parts.append(chunk.iloc[picked - lo])
        return pd.concat(parts) if parts else pd.DataFrame()
    pf = _parquet_file(path)
    meta = pf.metadata
    starts = _row_group_starts(meta)
    pieces = []
    for group in range(meta.num_row_groups):
        lo, hi = int(starts[group]), int(starts[group + 1])
        picked = rows[(rows >= lo) & (rows < hi)]
        if len(picked):
            data = pf.read_row_group(group, columns=list(columns) if columns else None)
            pieces.append(data.take(pa.array(picked - lo)))
    if not pieces:
        return pf.schema_arrow.empty_table().to_pandas()
    frame = pa.concat_tables(pieces).to_pandas(split_blocks=True, self_destruct=True)
    frame.index = pd.Index(rows[(rows >= 0) & (rows < starts[-1])])
    return frame


__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "PARQUET_ROW_GROUP",
    "TableInfo",
    "iter_chunks",
    "map_chunks",
    "read_ahead",
    "read_columns",
    "sample_positions",
    "table_info",
    "take_rows",
]
