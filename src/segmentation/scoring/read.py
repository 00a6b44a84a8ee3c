"""Reading one chunk of a scoring plan: its feature columns, row numbers and IDs.

Parquet chunks are read as whole row groups and stay Arrow data (never converted to pandas); CSV chunks are
read as a range of rows with pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from segmentation.contract.checks import ColumnData
from segmentation.data.io import sniff_delimiter
from segmentation.scoring.plan import Chunk, ScoringPlan


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
            sep=sniff_delimiter(plan.data),
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


__all__ = ["ChunkData", "read_chunk"]
