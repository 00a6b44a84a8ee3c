"""The contract's checks row by row: which rows break the schema, and why.

:func:`segmentation.contract.frame.validate_frame` runs pandera over a whole table and reports failures per
column (about 5 s per million rows x 100 columns). Batch scoring needs something else: it scores the valid
rows of every chunk and writes the invalid ones to a rejects file, so it must know *which* rows failed, and
it must keep up with scoring (millions of rows per second). :func:`row_failures` implements the same
contract as :meth:`TableSchema.to_pandera` (``require_id=False``) with vectorised NumPy checks:

============== ==================================================================================
kind           a row is rejected when the value
============== ==================================================================================
numeric        cannot be read as a number (``coerce_dtype('float64')``), is missing in a non-nullable
               column (``not_nullable``), lies below/above the column's bounds
               (``greater_than_or_equal_to(lo)`` / ``less_than_or_equal_to(hi)``), or is infinite
               (``finite``; pandera lets an unbounded infinity through, serving and scoring do not)
boolean        is not one of True/False/0/1 (``boolean_values``), or is missing when not nullable
datetime       cannot be parsed as a date (``coerce_dtype('datetime64[ns]')``), or is missing when not
               nullable
categorical    is missing when not nullable; unseen levels are *not* errors (they encode as "other")
ordinal        is not one of the declared levels (``ordinal_level``: an unseen level has no rank), or is
               missing when not nullable
============== ==================================================================================

Most columns of most chunks break nothing, so :func:`check_columns` first asks each column as a whole:
numbers (Arrow or NumPy, read without a copy) pass on their minimum and maximum, a nullable column's
missing values on their positions (Arrow's validity bitmap). Only a column that fails that question is
converted to pandas and checked row by row as above; the verdicts are the same either way (tested). The
columns come back in the form :meth:`segmentation.preprocess.Preprocessor.transform_columns` reads, so a
Parquet chunk goes from Arrow to the model without a pandas frame. :func:`row_failures` is the same for a
pandas frame.

A column the schema needs that is absent fails the whole table (:class:`DataValidationError` naming it):
no row could be scored. Table-level checks of training (unique IDs, a column entirely empty) do not apply
row by row and are not made here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from segmentation.contract.report import Failure, ValidationReport
from segmentation.contract.schema import ColumnSpec, TableSchema
from segmentation.contract.values import boolean_values, level_codes, parse_dates
from segmentation.errors import DataValidationError

REJECT_COLUMNS = ("row", "column", "check", "value")
"""Columns of the rejects frame :func:`row_failures` returns (one line per failed check of a row)."""

_MAX_FINITE = np.finfo(np.float64).max


def missing_columns(columns: Iterable[str], schema: TableSchema) -> list[str]:
    """Feature columns of ``schema`` that are not among ``columns``, in schema order."""
    present = set(columns)
    return [name for name in schema.feature_names if name not in present]


def require_columns(columns: Iterable[str], schema: TableSchema, source: str = "<frame>") -> None:
    """Fail the whole table when a feature column is missing.

    Raises:
        DataValidationError: one ``missing_required_column`` failure per absent column.
    """
    columns = list(columns)
    missing = missing_columns(columns, schema)
    if missing:
        report = ValidationReport(
            source=source,
            n_rows=0,
            n_columns=len(columns),
            schema_kind=schema.kind,
            failures=[Failure(column=name, check="missing_required_column", count=1) for name in missing],
        )
        raise DataValidationError(report)


def _fmt_bound(value: float) -> str:
    return repr(float(value))


def _numeric_values(series: pd.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """The column as float64 (NaN for missing) and, for text columns, the mask of non-numeric values."""
    if pd.api.types.is_float_dtype(series.dtype) or pd.api.types.is_integer_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), None
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), None
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    uncoercible = np.isnan(values) & series.notna().to_numpy()
    return values, (uncoercible if uncoercible.any() else None)


def _numeric_checks(spec: ColumnSpec, series: pd.Series) -> list[tuple[str, np.ndarray]]:
    values, uncoercible = _numeric_values(series)
    lo = -_MAX_FINITE if spec.min_value is None else spec.min_value
    hi = _MAX_FINITE if spec.max_value is None else spec.max_value
    # Fast path: one pass finds rows that are fine on every count (NaN and infinities compare False).
    ok = ((values > lo) if spec.min_exclusive else (values >= lo)) & (values <= hi)
    if ok.all():
        return []
    missing = np.isnan(values)
    if spec.nullable and uncoercible is None and (ok | missing).all():
        return []  # only missing values, which the preprocessor imputes
    if uncoercible is not None:
        missing &= ~uncoercible
    out: list[tuple[str, np.ndarray]] = []
    if uncoercible is not None:
        out.append(("coerce_dtype('float64')", uncoercible))
    if not spec.nullable:
        out.append(("not_nullable", missing))
    if spec.min_value is not None:
        out.append(
            (f"greater_than({_fmt_bound(spec.min_value)})", values <= spec.min_value)
            if spec.min_exclusive
            else (f"greater_than_or_equal_to({_fmt_bound(spec.min_value)})", values < spec.min_value)
        )
    if spec.max_value is not None:
        out.append((f"less_than_or_equal_to({_fmt_bound(spec.max_value)})", values > spec.max_value))
    out.append(("finite", np.isinf(values)))
    return out


def _boolean_checks(spec: ColumnSpec, series: pd.Series) -> list[tuple[str, np.ndarray]]:
    missing = series.isna().to_numpy()
    if pd.api.types.is_bool_dtype(series.dtype):
        bad = np.zeros(len(series), dtype=bool)
    else:
        bad = boolean_values(series).isna().to_numpy() & ~missing
    out = [("boolean_values", bad)]
    if not spec.nullable:
        out.append(("not_nullable", missing))
    return out


def _datetime_checks(spec: ColumnSpec, series: pd.Series) -> list[tuple[str, np.ndarray]]:
    missing = series.isna().to_numpy()
    out: list[tuple[str, np.ndarray]] = []
    if not pd.api.types.is_datetime64_any_dtype(series.dtype):
        out.append(("coerce_dtype('datetime64[ns]')", parse_dates(series).isna().to_numpy() & ~missing))
    if not spec.nullable:
        out.append(("not_nullable", missing))
    return out


def _categorical_checks(spec: ColumnSpec, series: pd.Series) -> list[tuple[str, np.ndarray]]:
    if spec.nullable:
        return []
    return [("not_nullable", series.isna().to_numpy())]


def _ordinal_checks(spec: ColumnSpec, series: pd.Series) -> list[tuple[str, np.ndarray]]:
    missing = series.isna().to_numpy()
    out = [("ordinal_level", (level_codes(series, list(spec.categories)) < 0) & ~missing)]
    if not spec.nullable:
        out.append(("not_nullable", missing))
    return out


_CHECKS = {
    "numeric": _numeric_checks,
    "boolean": _boolean_checks,
    "datetime": _datetime_checks,
    "categorical": _categorical_checks,
    "ordinal": _ordinal_checks,
}


def _as_text(values: np.ndarray) -> np.ndarray:
    return np.array(["" if v is None or v is pd.NA else str(v) for v in values], dtype=object)


@dataclass(frozen=True)
class CheckedNumbers:
    """A numeric (or boolean) column whose every value satisfies the schema, as plain NumPy numbers.

    What :func:`check_columns` hands the preprocessor for a column that passed on its whole-column summary
    (no row-level masks were built): every present value is a finite number within the bounds; missing
    values only occur where the column is nullable, at the positions ``missing`` lists.

    Attributes:
        values: the column as float or integer numbers (a view of the caller's data: never modified).
        missing: positions of the missing values (NaN, or anything, in ``values``), or None when nothing is
            missing.
    """

    values: np.ndarray
    missing: np.ndarray | None = None

    def rows(self, start: int, stop: int) -> CheckedNumbers:
        """Rows ``start:stop`` (views; missing positions renumbered from ``start``)."""
        return CheckedNumbers(self.values[start:stop], _missing_rows(self.missing, start, stop))


@dataclass(frozen=True)
class CheckedTimestamps:
    """A date column whose every present value is a timestamp, as integer ticks since the epoch (UTC).

    Attributes:
        ticks: int64 ticks of ``unit`` (a view of the caller's data; undefined at missing positions).
        unit: ``s``, ``ms``, ``us`` or ``ns``.
        missing: positions of the missing values, or None when nothing is missing.
    """

    ticks: np.ndarray
    unit: str
    missing: np.ndarray | None = None

    def rows(self, start: int, stop: int) -> CheckedTimestamps:
        """Rows ``start:stop`` (views; missing positions renumbered from ``start``)."""
        return CheckedTimestamps(self.ticks[start:stop], self.unit, _missing_rows(self.missing, start, stop))


def _missing_rows(missing: np.ndarray | None, start: int, stop: int) -> np.ndarray | None:
    if missing is None:
        return None
    return missing[np.searchsorted(missing, start) : np.searchsorted(missing, stop)] - start


ColumnData: TypeAlias = pd.Series | pa.Array | pa.ChunkedArray
"""One column as it was read: a pandas Series (CSV, in-memory frames) or Arrow data (Parquet)."""

CheckedColumn: TypeAlias = CheckedNumbers | CheckedTimestamps | pd.Series | pa.Array
"""One column after :func:`check_columns`: plain checked numbers or timestamps (an ordinal feature's Arrow
text as its ranks), an Arrow text column of a categorical feature, or a pandas Series (everything else:
text, columns with failures)."""


def column_rows(column: CheckedColumn, start: int, stop: int) -> CheckedColumn:
    """Rows ``start:stop`` of a checked column, without copying."""
    if isinstance(column, CheckedNumbers | CheckedTimestamps):
        return column.rows(start, stop)
    if isinstance(column, pd.Series):
        return column.iloc[start:stop]
    return column.slice(start, stop - start)


@dataclass
class CheckedColumns:
    """The result of :func:`check_columns`.

    Attributes:
        columns: every feature column in the form the preprocessor reads
            (:meth:`segmentation.preprocess.Preprocessor.transform_columns`).
        valid: which rows satisfy the schema.
        rejects: one line per failed check (the frame :func:`row_failures` returns).
    """

    columns: dict[str, CheckedColumn]
    valid: np.ndarray
    rejects: pd.DataFrame


def _combined(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One Arrow array (a row group's column is a single chunk: taken as is, without a copy)."""
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _null_positions(array: pa.Array) -> np.ndarray | None:
    """Positions of the nulls of an Arrow array (from its validity bitmap), or None without nulls."""
    if not array.null_count:
        return None
    return np.flatnonzero(_bits(array, 0) == 0)


def _bits(array: pa.Array, buffer: int) -> np.ndarray:
    """A bit-packed buffer of an Arrow array (0: validity, 1: boolean values) as one 0/1 byte per row."""
    packed = np.frombuffer(array.buffers()[buffer], dtype=np.uint8)
    return np.unpackbits(packed, count=len(array) + array.offset, bitorder="little")[array.offset :]


def _arrow_values(array: pa.Array, dtype: np.dtype[Any] | None = None) -> np.ndarray:
    """The data buffer of a fixed-width Arrow array, without a copy (null slots: undefined).

    ``dtype`` defaults to the NumPy type of the Arrow numbers (timestamps pass ``int64``).
    """
    dtype = np.dtype(array.type.to_pandas_dtype()) if dtype is None else np.dtype(dtype)
    offset = array.offset * dtype.itemsize
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=offset)


def _plain_numbers(
    spec: ColumnSpec, column: pd.Series | pa.Array
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The column as NumPy numbers and the positions of its Arrow nulls, when it is held as numbers.

    Arrow floats and integers are read without a copy, Arrow booleans unpacked to 0/1 bytes: the values at
    null positions are undefined (the nulls' positions say which). pandas columns hold NaN where missing
    (no positions); NumPy booleans become 0.0/1.0. Anything else (text, dates, pandas extension types) is
    None: it takes the row-by-row route.
    """
    if isinstance(column, pd.Series):
        dtype = column.dtype
        if not isinstance(dtype, np.dtype):
            return None
        if spec.kind == "numeric" and dtype.kind in "fiu":
            return column.to_numpy(), None
        if spec.kind == "boolean" and dtype.kind == "b":
            return column.to_numpy(dtype=np.float64), None
        return None
    array = column
    kind = array.type
    if spec.kind == "boolean" and pa.types.is_boolean(kind):  # bit-packed: unpacked to 0/1 bytes
        return _bits(array, 1), _null_positions(array)
    if spec.kind == "numeric" and (
        pa.types.is_integer(kind) or pa.types.is_float32(kind) or pa.types.is_float64(kind)
    ):
        return _arrow_values(array), _null_positions(array)
    return None


def _checked_numbers(
    spec: ColumnSpec, values: np.ndarray, nulls: np.ndarray | None = None
) -> CheckedNumbers | None:
    """``values`` as :class:`CheckedNumbers` when the whole column passes, else None (check row by row).

    Two or three reductions instead of one mask per check: the minimum (NaN if a value is NaN), the
    maximum and, only for NaN in a pandas column, their positions. A column passes when nothing is
    missing (or it is nullable) and every present value lies within the bounds; infinities never do, as
    the bounds default to the largest finite float. Equivalent to :func:`_numeric_checks` finding nothing.
    With Arrow nulls (``nulls``: their positions), the minimum and maximum also see the undefined values
    in the null slots: a column can only fail spuriously (and then be checked row by row), never pass
    wrongly; a NaN anywhere sends it row by row too.
    """
    if nulls is not None and not spec.nullable:
        return None
    if not len(values):
        return CheckedNumbers(values)
    missing = nulls
    low = values.min()
    if values.dtype.kind == "f" and np.isnan(low):
        if nulls is not None or not spec.nullable:
            return None
        missing = np.flatnonzero(np.isnan(values))
        if len(missing) == len(values):
            return CheckedNumbers(values, missing)
        low, high = np.fmin.reduce(values), np.fmax.reduce(values)
    else:
        high = values.max()
    lo = -_MAX_FINITE if spec.min_value is None else spec.min_value
    hi = _MAX_FINITE if spec.max_value is None else spec.max_value
    above = lo < low if spec.min_exclusive else lo <= low
    return CheckedNumbers(values, missing) if above and high <= hi else None


def _passes_whole(spec: ColumnSpec, column: ColumnData) -> CheckedColumn | None:
    """The column itself when it passes as a whole without row masks, else None."""
    data = column if isinstance(column, pd.Series) else _combined(column)
    numbers = _plain_numbers(spec, data)
    if numbers is not None:
        return _checked_numbers(spec, *numbers)
    if isinstance(data, pd.Series):
        return None
    if spec.kind == "datetime" and pa.types.is_timestamp(data.type):
        nulls = _null_positions(data)
        if nulls is not None and not spec.nullable:
            return None
        return CheckedTimestamps(_arrow_values(data, np.dtype(np.int64)), data.type.unit, nulls)
    text = pa.types.is_string(data.type) or pa.types.is_large_string(data.type)
    if spec.kind == "categorical" and text and (spec.nullable or not data.null_count):
        return data
    if spec.kind == "ordinal" and text and (spec.nullable or not data.null_count):
        return _ordinal_ranks(spec, data)
    return None


def _ordinal_ranks(spec: ColumnSpec, data: pa.Array) -> CheckedNumbers | None:
    """An Arrow text column of an ordinal feature as ranks, when every present value is a level."""
    codes = pc.index_in(data, value_set=pa.array(list(spec.categories), type=data.type))
    if codes.null_count != data.null_count:
        return None  # a value that is not a level: row by row
    nulls = _null_positions(data)
    ranks = pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype(np.float64)
    if nulls is not None:
        ranks[nulls] = np.nan
    return CheckedNumbers(ranks, nulls)


def check_columns(
    columns: Mapping[str, ColumnData],
    schema: TableSchema,
    rows: np.ndarray,
    *,
    source: str = "<frame>",
) -> CheckedColumns:
    """Check every feature column against ``schema``; keep each in the form the preprocessor reads.

    A column that passes as a whole (numbers within bounds, missing only where allowed: the common case)
    costs a couple of reductions and stays plain numbers (:class:`CheckedNumbers`) or Arrow text. Only the
    other columns are converted to pandas and checked row by row, with the checks :func:`row_failures`
    documents; their failures become rejects lines.

    Args:
        columns: at least the schema's feature columns, equally long (extra columns are ignored).
        schema: the model's input contract.
        rows: the row label of every row (global row numbers for chunks), written into the rejects.
        source: the table's name for the error raised when columns are missing.

    Returns:
        The checked columns, the valid-row mask and the rejects lines (sorted by row, column, check).

    Raises:
        DataValidationError: a feature column is missing (the report names every missing column).
    """
    require_columns(columns, schema, source)
    valid = np.ones(len(rows), dtype=bool)
    parts: list[pd.DataFrame] = []
    checked: dict[str, CheckedColumn] = {}
    for spec in schema.columns:
        column = columns[spec.name]
        whole = _passes_whole(spec, column)
        if whole is not None:
            checked[spec.name] = whole
            continue
        series = column if isinstance(column, pd.Series) else column.to_pandas()
        checked[spec.name] = series
        for check, mask in _CHECKS[spec.kind](spec, series):
            positions = np.flatnonzero(mask)
            if not len(positions):
                continue
            valid[positions] = False
            parts.append(
                pd.DataFrame(
                    {
                        "row": rows[positions].astype(np.int64),
                        "column": spec.name,
                        "check": check,
                        "value": _as_text(series.to_numpy()[positions]),
                    }
                )
            )
    if not parts:
        return CheckedColumns(checked, valid, empty_rejects())
    rejects = pd.concat(parts, ignore_index=True).sort_values(["row", "column", "check"], kind="stable")
    return CheckedColumns(checked, valid, rejects.reset_index(drop=True))


def row_failures(
    frame: pd.DataFrame, schema: TableSchema, *, source: str = "<frame>"
) -> tuple[np.ndarray, pd.DataFrame]:
    """Which rows of ``frame`` satisfy ``schema``, and every failed check of the others.

    Args:
        frame: rows to check; its index names the rows in the rejects (chunks carry global row numbers).
        schema: the model's input contract; only feature columns are checked (the ID column is optional).
        source: the table's name for the error raised when columns are missing.

    Returns:
        ``(valid, rejects)``: a boolean mask over the rows of ``frame``, and a frame with one line per
        failed check: ``row`` (the index label), ``column``, ``check`` (pandera's check names, plus
        ``finite``) and ``value`` (the offending value as text; empty for a missing value).

    Raises:
        DataValidationError: a feature column is missing (the report names every missing column).
    """
    columns = {name: frame[name] for name in frame.columns}
    result = check_columns(columns, schema, frame.index.to_numpy(), source=source)
    return result.valid, result.rejects


def empty_rejects() -> pd.DataFrame:
    """A rejects frame with no lines (the columns and dtypes :func:`row_failures` returns)."""
    return pd.DataFrame(
        {
            "row": np.empty(0, dtype=np.int64),
            "column": np.empty(0, dtype=object),
            "check": np.empty(0, dtype=object),
            "value": np.empty(0, dtype=object),
        }
    )


__all__ = [
    "REJECT_COLUMNS",
    "CheckedColumn",
    "CheckedColumns",
    "CheckedNumbers",
    "CheckedTimestamps",
    "ColumnData",
    "check_columns",
    "column_rows",
    "empty_rejects",
    "missing_columns",
    "require_columns",
    "row_failures",
]
