"""Schema inference: the contract of a table seen for the first time, from every row, chunk by chunk.

:class:`SchemaScan` reads a table in chunks and decides each column's kind and bounds; :func:`infer_schema`
is the same for a table in memory; :func:`detect_id_column` picks the customer ID column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from segmentation.contract.schema import ColumnSpec, TableSchema
from segmentation.contract.values import is_text, parse_dates

_ID_NAME = re.compile(
    r"^(id|.*[_\s-]id|.*id$|cust(omer)?([_\s-]?(no|number|key))?|client[_\s-]?key|account[_\s-]?(no|number))$",
    re.IGNORECASE,
)


def detect_id_column(frame: pd.DataFrame) -> str | None:
    """Pick the customer ID column when it is unambiguous.

    Name-based first (``CUST_ID``, ``customer_id``, ``id``...), preferring a unique column among several
    name matches; otherwise the single string column whose values are all distinct.

    Returns:
        The column name, or None when the table has no recognisable ID (rows are then numbered).

    Raises:
        ValueError: several equally good candidates; the message lists them.
    """
    by_name = [c for c in frame.columns if _ID_NAME.match(str(c))]
    if len(by_name) == 1:
        return str(by_name[0])
    if len(by_name) > 1:
        unique = [c for c in by_name if frame[c].is_unique]
        if len(unique) == 1:
            return str(unique[0])
        raise ValueError(f"ambiguous ID column: candidates {by_name}; pass --id-column / data.id_column")
    textual = [
        c for c in frame.columns if is_text(frame[c]) and frame[c].notna().all() and frame[c].is_unique
    ]
    if len(textual) == 1:
        return str(textual[0])
    if len(textual) > 1:
        raise ValueError(f"ambiguous ID column: candidates {textual}; pass --id-column / data.id_column")
    return None


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)


def _mostly(parsed: pd.Series, original: pd.Series, share: float = 0.95) -> bool:
    present = original.notna()
    if not present.any():
        return False
    return bool(parsed[present].notna().mean() >= share)


@dataclass
class _ColumnScan:
    """What schema inference needs to know about one column, accumulated chunk by chunk."""

    kind: str | None = None  # decided on the first chunk with values: numeric/boolean/datetime/categorical
    text: bool = False  # numeric or dates stored as text
    rows: int = 0
    present: int = 0
    lo: float = np.inf
    hi: float = -np.inf
    integer: bool = True
    latest: pd.Timestamp | None = None
    counts: pd.Series | None = None  # level counts of categorical text (dropped once hopelessly many)
    too_many: bool = False


def _update_numeric(scan: _ColumnScan, series: pd.Series) -> None:
    """Bounds and the integer flag of a numeric column (text holding numbers read as numbers)."""
    values = pd.to_numeric(series, errors="coerce") if scan.text else series
    lo, hi = values.min(), values.max()  # NaN skipped, as in a whole-table min/max
    if not pd.isna(lo):
        scan.lo, scan.hi = min(scan.lo, float(lo)), max(scan.hi, float(hi))
    if scan.integer and not pd.api.types.is_integer_dtype(series):
        scan.integer = bool((values.dropna() % 1 == 0).all())


def _update_datetime(scan: _ColumnScan, series: pd.Series) -> None:
    """The latest date of a date column (the default reference date)."""
    latest = parse_dates(series).max()
    if not pd.isna(latest):
        scan.latest = latest if scan.latest is None else max(scan.latest, latest)


class SchemaScan:
    """Schema inference over a table read in chunks: the rules of :func:`infer_schema`, streamed.

    Feed every chunk to :meth:`update`, then call :meth:`schema`. Numeric bounds, the integer flag,
    constant columns, category counts and the latest date come from every row; whether a text column
    holds numbers or dates is decided on a sample of the first chunk that has values in it.
    """

    def __init__(
        self,
        id_column: str | None,
        *,
        max_categories: int = 20,
        drop_columns: tuple[str, ...] = (),
        reference_date: str | None = None,
        seed: int = 0,
        expected_rows: int | None = None,
    ) -> None:
        self.id_column = id_column
        self.max_categories = max_categories
        self.drop_columns = drop_columns
        self.reference_date = reference_date
        self.rng = np.random.default_rng(seed)
        self.expected_rows = expected_rows
        self.columns: dict[str, _ColumnScan] = {}
        self.n_rows = 0

    def _level_limit(self) -> int:
        # More levels than this means free text (ignored); known before the end when the row count is.
        return max(50, (self.expected_rows or 0) // 100) if self.expected_rows else 1 << 62

    def update(self, frame: pd.DataFrame) -> None:
        """Accumulate one chunk."""
        self.n_rows += len(frame)
        probe_idx: np.ndarray = self.rng.choice(len(frame), min(len(frame), 2000), replace=False)
        for name in frame.columns:
            if name == self.id_column or name in self.drop_columns:
                continue
            scan = self.columns.setdefault(str(name), _ColumnScan())
            series = frame[name]
            scan.rows += len(series)
            n_present = int(series.notna().sum())
            scan.present += n_present
            if n_present == 0:
                continue
            if scan.kind is None:
                scan.kind, scan.text = self._decide(series, probe_idx)
            if scan.kind == "numeric":
                _update_numeric(scan, series)
            elif scan.kind == "datetime":
                _update_datetime(scan, series)
            elif scan.kind == "categorical" and not scan.too_many:
                self._update_levels(scan, series)

    def _update_levels(self, scan: _ColumnScan, series: pd.Series) -> None:
        counts = series.astype("string").value_counts()
        scan.counts = counts if scan.counts is None else scan.counts.add(counts, fill_value=0)
        if len(scan.counts) > self._level_limit():
            scan.counts, scan.too_many = None, True

    @staticmethod
    def _decide(series: pd.Series, probe_idx: Any) -> tuple[str, bool]:
        if pd.api.types.is_bool_dtype(series):
            return "boolean", False
        if pd.api.types.is_datetime64_any_dtype(series):
            return "datetime", False
        if pd.api.types.is_numeric_dtype(series):
            return "numeric", False
        probe = series.iloc[probe_idx]
        if _mostly(pd.to_numeric(probe, errors="coerce"), probe):
            return "numeric", True
        if _mostly(parse_dates(probe), probe):
            return "datetime", True
        return "categorical", False

    def schema(self) -> TableSchema:
        """The inferred contract of everything seen so far."""
        specs: list[ColumnSpec] = []
        ignored: list[str] = list(self.drop_columns)
        latest: pd.Timestamp | None = None
        for name, scan in self.columns.items():
            if scan.present == 0:
                # Reported by validation as an entirely empty column; keep it so the check names it.
                specs.append(ColumnSpec(name=name, kind="numeric"))
            elif scan.kind == "boolean":
                specs.append(ColumnSpec(name=name, kind="boolean"))
            elif scan.kind == "numeric":
                if scan.lo == scan.hi:
                    ignored.append(name)
                    continue
                specs.append(
                    ColumnSpec(
                        name=name,
                        kind="numeric",
                        integer=scan.integer,
                        min_value=0.0 if scan.lo >= 0 else None,
                        max_value=1.0 if scan.lo >= 0 and scan.hi <= 1 else None,
                    )
                )
            elif scan.kind == "datetime":
                if scan.latest is not None:
                    latest = scan.latest if latest is None else max(latest, scan.latest)
                specs.append(ColumnSpec(name=name, kind="datetime"))
            else:
                counts = scan.counts
                if (
                    scan.too_many
                    or counts is None
                    or len(counts) <= 1
                    or len(counts) > max(50, self.n_rows // 100)
                ):
                    ignored.append(name)
                    continue
                # Most frequent first; ties in the order the levels were first seen (as value_counts does).
                order = counts.sort_values(ascending=False, kind="stable")
                levels = tuple(str(v) for v in order.index[: self.max_categories])
                specs.append(ColumnSpec(name=name, kind="categorical", categories=levels))
        ref = self.reference_date or (
            latest.date().isoformat() if latest is not None and not pd.isna(latest) else None
        )
        return TableSchema(
            kind="inferred",
            id_column=self.id_column,
            columns=tuple(specs),
            ignored_columns=tuple(ignored),
            reference_date=ref,
        )


def infer_schema(
    frame: pd.DataFrame,
    id_column: str | None,
    *,
    max_categories: int = 20,
    drop_columns: tuple[str, ...] = (),
    reference_date: str | None = None,
    seed: int = 0,
) -> TableSchema:
    """Infer the input contract of a table on first training.

    Rules: bool dtype -> boolean; numbers (or text that is at least 95 % numeric) -> numeric; datetimes
    (or text that is at least 95 % ISO dates) -> datetime, encoded later as days before the reference
    date; other text -> categorical when it has at most ``max(50, 1 % of rows)`` levels. High-cardinality
    text and constant columns carry no segment information and are ignored (listed in the schema).
    Natural bounds are inferred: a column that is never negative gets ``>= 0``, and one within [0, 1]
    gets ``<= 1`` as well, so later data that breaks them is reported. Tables read in chunks use
    :class:`SchemaScan`, which applies the same rules.
    """
    scan = SchemaScan(
        id_column,
        max_categories=max_categories,
        drop_columns=drop_columns,
        reference_date=reference_date,
        seed=seed,
        expected_rows=len(frame),
    )
    scan.update(frame)
    return scan.schema()


__all__ = ["SchemaScan", "detect_id_column", "infer_schema"]
