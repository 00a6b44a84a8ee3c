"""Scoring rows: validate a chunk's rows, assign the valid ones a segment and a confidence.

:func:`score_columns` validates the rows (:class:`segmentation.contract.validator.ChunkValidator`) and
passes the valid ones through preprocessing, featurizer and clusterer in blocks of
:data:`MODEL_BLOCK_ROWS`; it returns the scored rows as Arrow (ID or ``row``, ``segment``,
``segment_name``, ``confidence``, ``model_version``) and one line per failed check of the rejected rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from segmentation.bundle import SegmentationModel
from segmentation.contract.checks import CheckedColumns, column_rows
from segmentation.contract.validator import ChunkValidator
from segmentation.scoring.plan import Chunk, ScoringPlan
from segmentation.scoring.read import ChunkData, read_chunk

ROW_COLUMN = "row"
NOISE_NAME = "noise"

MODEL_BLOCK_ROWS = 32_768
"""Rows per pass through preprocessing, featurizer and clusterer inside a chunk: work arrays of about
16 MB at 124 features, which stay in cache between the steps (eight passes per 262k-row chunk). The block
size can change a row's result by float32 rounding only (some BLAS kernels sum products of another shape in
another order); tested against whole-table prediction: the same segment except at ties, confidence to 1e-5."""


def _text_column(values: np.ndarray, labels: Sequence[str]) -> pa.Array:
    """Strings chosen by integer codes, built in Arrow (no Python string per row)."""
    dictionary = pa.DictionaryArray.from_arrays(pa.array(values, type=pa.int32()), pa.array(list(labels)))
    return dictionary.cast(pa.string())


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


__all__ = ["MODEL_BLOCK_ROWS", "NOISE_NAME", "ROW_COLUMN", "score_chunk", "score_columns"]
