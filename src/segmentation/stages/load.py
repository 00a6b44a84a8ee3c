"""The load stage: a customer table read, its contract chosen or inferred, and every row validated.

A table in memory is validated whole by pandera (:func:`validate_table`); a file is validated chunk by
chunk by the one streamed validator (:func:`validate_source`, :class:`~segmentation.contract.validator.
ChunkValidator`), so millions of rows never sit in memory as one DataFrame. Either way the result is a
:class:`ValidatedTable`, which later stages read rows from.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from segmentation.config import DataConfig
from segmentation.contract.frame import validate_frame
from segmentation.contract.inference import SchemaScan, apply_declared_overrides, detect_id_column
from segmentation.contract.notes import columns_read_text
from segmentation.contract.report import ValidationReport, table_failure
from segmentation.contract.schema import CC_GENERAL_ID, TableSchema, cc_general_schema, looks_like_cc_general
from segmentation.contract.validator import ChunkValidator
from segmentation.data.chunks import (
    DEFAULT_CHUNK_ROWS,
    PARQUET_ROW_GROUP,
    map_chunks,
    read_ahead,
    read_columns,
    sample_positions,
    table_info,
    take_rows,
)
from segmentation.data.io import (
    atomic_path,
    is_url,
    read_table,
    require_table_file,
    table_format,
    unreadable_table,
)
from segmentation.errors import ConfigError, DataValidationError

logger = logging.getLogger(__name__)


@dataclass
class ValidatedTable:
    """A table that passed validation, with its schema.

    Either in memory (``frame``: notebooks, tests, the bundled sample) or a Parquet file read in chunks
    (``path``: what the flow uses, so millions of rows never sit in memory as one DataFrame). Stages
    reach rows only through :meth:`chunks`, :meth:`read` and :meth:`take`, which work the same for both.
    """

    schema: TableSchema
    report: ValidationReport
    frame: pd.DataFrame | None = None
    path: str | None = None
    n_rows: int = 0
    ids: np.ndarray | None = None  # file-backed tables: the ID column, read once during validation
    sample: pd.DataFrame | None = None  # file-backed tables: seeded rows kept in memory, indexed by position

    def __post_init__(self) -> None:
        if (self.frame is None) == (self.path is None):
            raise ValueError("a ValidatedTable holds either a frame or a path")
        if self.frame is not None:
            self.n_rows = len(self.frame)

    def chunks(
        self, chunk_rows: int = DEFAULT_CHUNK_ROWS, columns: list[str] | None = None
    ) -> Iterator[pd.DataFrame]:
        """The rows in chunks, each indexed by row position."""
        if self.frame is None:
            yield from read_ahead(str(self.path), chunk_rows=chunk_rows, columns=columns)
            return
        frame = self.frame if columns is None else self.frame[columns]
        for start in range(0, len(frame), chunk_rows):
            part = frame.iloc[start : start + chunk_rows]
            yield part.set_axis(pd.RangeIndex(start, start + len(part)))

    def read(self, columns: list[str]) -> pd.DataFrame:
        """Whole columns (a file-backed table decodes only these)."""
        if self.frame is None:
            return read_columns(str(self.path), columns)
        return self.frame[columns].reset_index(drop=True)

    def take(self, rows: np.ndarray) -> pd.DataFrame:
        """The rows at these sorted positions, indexed by position.

        A file-backed table answers from its in-memory ``sample`` when it holds every requested row (the
        preprocessing, agreement and drift-reference samples are the same seeded draw), else reads them.
        """
        if self.frame is None:
            if self.sample is not None and len(rows) and np.isin(rows, self.sample.index).all():
                return self.sample.loc[rows]
            return take_rows(str(self.path), rows)
        return self.frame.iloc[rows].set_axis(pd.Index(rows))


def validate_table(frame: pd.DataFrame, config: DataConfig, *, source: str, seed: int = 0) -> ValidatedTable:
    """Choose the ID column and schema, then validate lazily.

    Raises:
        DataValidationError: with a report naming every failing column and check.
    """
    fail = functools.partial(_one_failure, source, len(frame), frame.shape[1])
    schema, _ = _choose_schema([frame], [str(c) for c in frame.columns], config, len(frame), seed, fail)
    validated, report = validate_frame(frame, schema, source=source)
    if not report.ok:
        raise DataValidationError(report)
    _warn_ignored(schema)
    return ValidatedTable(schema=schema, report=report, frame=validated)


def _one_failure(
    source: str, n_rows: int, n_columns: int, column: str, check: str, example: str
) -> DataValidationError:
    """A validation error with one failure (table-level problems found before the checks run)."""
    return DataValidationError(table_failure(source, n_rows, n_columns, column, check, example))


def _warn_ignored(schema: TableSchema) -> None:
    if schema.columns_read:
        logger.info("columns read:\n%s", columns_read_text(schema.columns_read))
    set_aside = [n for n in schema.columns_read if not n.used and n.name != schema.id_column]
    if set_aside:
        logger.warning(
            "ignored columns (see how each column was read in the report): %s",
            ", ".join(f"{n.name} ({n.kind})" for n in set_aside),
        )
    elif schema.ignored_columns:
        logger.warning(
            "ignored columns (constant, free text or dropped): %s", ", ".join(schema.ignored_columns)
        )


def rate(rows: int, seconds: float) -> str:
    """``N rows in S s (R rows/s)`` for progress logs."""
    return f"{rows:,} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s)"


def stage_parquet(path: str, target: Path) -> str:
    """A local Parquet copy of a CSV (or remote) table, so later stages read it in chunks by column.

    Local Parquet files are used in place. The copy is written atomically with 256k-row row groups.
    """
    if table_format(path) == "parquet" and not is_url(path):
        return path
    if not target.is_file():
        started = time.perf_counter()
        frame = read_table(path)
        with atomic_path(target) as tmp:
            frame.to_parquet(tmp, index=False, row_group_size=PARQUET_ROW_GROUP)
        logger.info("staged %s as Parquet: %s", path, rate(len(frame), time.perf_counter() - started))
    return str(target)


def _choose_schema(
    chunks: Iterable[pd.DataFrame],
    columns: list[str],
    config: DataConfig,
    n_rows: int,
    seed: int,
    fail: Callable[[str, str, str], DataValidationError],
) -> tuple[TableSchema, list[np.ndarray]]:
    """The ID column and schema (CC GENERAL's, or inferred from every row), and the IDs, in one pass.

    A table in memory is one chunk; a file is read chunk by chunk (:func:`validate_source`).
    """
    use_cc = config.schema_kind == "cc_general" or (
        config.schema_kind == "auto" and looks_like_cc_general(columns)
    )
    id_column = CC_GENERAL_ID if use_cc else config.id_column
    if id_column is not None and id_column not in columns and not use_cc:
        raise fail(id_column, "missing_required_column", "configured ID column not in the table")
    check_overrides(config, columns, id_column)
    id_reason = "the customer ID (data.id_column)" if config.id_column else "the customer ID (detected)"
    scan: SchemaScan | None = None
    id_parts: list[np.ndarray] = []
    for chunk in chunks:
        if not use_cc and id_column is None and scan is None:
            try:
                id_column = detect_id_column(chunk)
            except ValueError as exc:
                raise fail("<id>", "unambiguous_id_column", str(exc)) from exc
            check_overrides(config, columns, id_column)
        if not use_cc:
            if scan is None:
                scan = SchemaScan(
                    id_column,
                    max_categories=config.max_categories,
                    drop_columns=config.drop_columns,
                    reference_date=config.reference_date,
                    seed=seed,
                    expected_rows=n_rows,
                    columns=config.columns,
                    id_reason=id_reason if id_column else "",
                )
            scan.update(chunk)
        if id_column is not None and id_column in chunk.columns:
            id_parts.append(chunk[id_column].to_numpy())
    schema = declared_schema(columns, config) if use_cc else cast(SchemaScan, scan).schema()
    if not schema.columns:
        raise fail(
            "<table>",
            "has_feature_columns",
            "no usable feature column (all identifiers, codes, constant, empty, duplicate or text; "
            "data.columns.NAME.kind sets how a column is read)",
        )
    return schema, id_parts


def check_overrides(config: DataConfig, columns: list[str], id_column: str | None) -> None:
    """``data.columns`` names only columns of the table, never the ID column.

    Raises:
        ConfigError: naming each column the table does not have (and the table's columns), or the ID column.
    """
    unknown = [name for name in config.columns if name not in columns]
    if unknown:
        shown = ", ".join(columns[:30]) + (" ..." if len(columns) > 30 else "")
        raise ConfigError(
            f"data.columns: the table has no column {', '.join(map(repr, unknown))} (its columns: {shown})"
        )
    if id_column is not None and id_column in config.columns:
        raise ConfigError(f"data.columns: {id_column!r} is the ID column (set data.id_column to change it)")


def declared_schema(columns: list[str], config: DataConfig) -> TableSchema:
    """CC GENERAL's declared contract, with ``data.columns`` weights and ``kind: ignore`` applied.

    The declared kinds stand: another kind for one of its columns is a configuration error. Its notes say
    how each column of the table is read (declared columns, the ID, extra columns left out).

    Raises:
        ConfigError: a ``data.columns`` kind other than ``ignore`` or ``numeric``.
    """
    declared = cc_general_schema()
    for name, override in config.columns.items():
        if override.kind not in (None, "ignore", "numeric"):
            raise ConfigError(
                f"data.columns.{name}.kind: {override.kind!r} cannot change the declared CC GENERAL schema "
                "(only weight and kind: ignore apply; schema_kind: inferred reads the table afresh)"
            )
    return apply_declared_overrides(declared, columns, config.columns)


def validate_source(
    path: str,
    config: DataConfig,
    *,
    source: str,
    seed: int = 0,
    staged: Path | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    sample_size: int = 0,
    schema: TableSchema | None = None,
) -> ValidatedTable:
    """Validate a table file chunk by chunk; the result reads its rows from the file, never all at once.

    Two streaming passes: the first infers the schema (:class:`SchemaScan`: the rules of
    :func:`validate_table`, from every row) and reads the ID column; the second validates every chunk
    against it (:class:`ChunkValidator`, the contract's checks). Checks that span chunks (unique IDs,
    columns without any value) are made over the whole table. CSV and remote tables are first copied to a
    local Parquet file (``staged``), which later stages read by column and by row group. The validation
    pass also keeps a seeded sample of ``sample_size`` rows in memory (the rows preprocessing is fitted
    on), so later stages do not read the file again for it. With ``schema`` (a trained model's contract)
    nothing is inferred: the table is checked against it.

    Raises:
        DataValidationError: with a report naming every failing column and check (counts over all rows).
    """
    if staged is not None:
        path = stage_parquet(path, staged)
    elif table_format(path) != "parquet":
        raise ValueError("validate_source needs a Parquet file or a staging path for a CSV copy")
    started = time.perf_counter()
    columns, n_rows = _table_shape(path, source)
    fail = functools.partial(_one_failure, source, n_rows, len(columns))
    if schema is not None:  # a model's contract (``segment report``): nothing to infer
        id_parts = (
            [read_columns(path, [schema.id_column])[schema.id_column].to_numpy()]
            if schema.id_column and schema.id_column in columns
            else []
        )
    else:
        chunks = tqdm(
            read_ahead(path, chunk_rows=chunk_rows),
            desc="scan",
            total=-(-n_rows // chunk_rows),
            disable=None,
            leave=False,
        )
        schema, id_parts = _choose_schema(chunks, columns, config, n_rows, seed, fail)
    scanned = time.perf_counter()
    logger.info("scanned %s: %s", source, rate(n_rows, scanned - started))

    validator = ChunkValidator(
        schema,
        source=source,
        columns=columns,
        n_rows=n_rows,
        missing="report",
        infinities="allow",  # training imputes infinities like missing values (pandera lets them through)
        whole_table=True,
    )
    ids = np.concatenate(id_parts) if id_parts else None
    validator.check_ids(ids)
    sample = _validate_chunks(validator, path, n_rows, chunk_rows, sample_size, seed)
    report = validator.raise_for_failures()
    logger.info("validated %s: %s", source, rate(n_rows, time.perf_counter() - scanned))
    _warn_ignored(schema)
    return ValidatedTable(schema=schema, report=report, path=path, n_rows=n_rows, ids=ids, sample=sample)


def _table_shape(path: str, source: str) -> tuple[list[str], int]:
    """The columns and row count of a Parquet file; a table with no rows or one column fails here.

    Raises:
        DataValidationError: the file is missing, empty, not a table, or has no rows or too few columns.
    """
    require_table_file(path)
    try:
        info = table_info(path)
    except Exception as exc:  # pyarrow raises many types for a file that is not Parquet
        raise unreadable_table(path, exc) from exc
    n_rows = int(info.n_rows or 0)
    if n_rows == 0:
        raise _one_failure(
            source, n_rows, len(info.columns), "<table>", "has_rows", "the table has a header but no rows"
        )
    if len(info.columns) < 2:
        raise _one_failure(
            source,
            n_rows,
            len(info.columns),
            "<table>",
            "has_columns",
            f"found {len(info.columns)} column(s); a customer table needs an ID and features",
        )
    return list(info.columns), n_rows


def _validate_chunks(
    validator: ChunkValidator, path: str, n_rows: int, chunk_rows: int, sample_size: int, seed: int
) -> pd.DataFrame | None:
    """Every chunk through the validator, two at a time; returns the seeded sample of rows it kept."""
    sample_rows = sample_positions(n_rows, sample_size, seed) if sample_size else np.empty(0, np.int64)

    def check(chunk: pd.DataFrame) -> pd.DataFrame:
        validator.check(chunk)
        return chunk.loc[sample_rows[(sample_rows >= chunk.index[0]) & (sample_rows <= chunk.index[-1])]]

    parts = [
        part
        for part in tqdm(
            map_chunks(check, read_ahead(path, chunk_rows=chunk_rows)),
            desc="validate",
            total=-(-n_rows // chunk_rows),
            disable=None,
            leave=False,
        )
        if len(part)
    ]
    return pd.concat(parts) if parts else None


def customer_ids(table: ValidatedTable) -> pd.Series:
    """The ID column, or row numbers named ``row`` when the table has none."""
    if table.schema.id_column:
        if table.frame is None:
            return pd.Series(table.ids, name=table.schema.id_column)
        return table.frame[table.schema.id_column].reset_index(drop=True)
    return pd.Series(np.arange(table.n_rows), name="row")


__all__ = [
    "ValidatedTable",
    "customer_ids",
    "rate",
    "stage_parquet",
    "validate_source",
    "validate_table",
]
