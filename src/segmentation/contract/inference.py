"""Schema inference: the contract of a table seen for the first time, from every row, chunk by chunk.

:class:`SchemaScan` reads a table in chunks and decides each column's kind and bounds; :func:`infer_schema`
is the same for a table in memory; :func:`detect_id_column` picks the customer ID column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from segmentation.config import ColumnOverride
from segmentation.contract.interpret import (
    ColumnScan,
    Reading,
    coordinate_pairs,
    duplicates,
    forced_column,
    forced_scan_kind,
    level_limit,
    read_column,
    update_datetime,
    update_fingerprint,
    update_levels,
    update_numeric,
)
from segmentation.contract.notes import ColumnNote, NoteKind
from segmentation.contract.schema import ColumnSpec, TableSchema
from segmentation.contract.values import boolean_values, is_text, parse_dates

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


_ZERO_PADDED = re.compile(r"^0\d+$")


def _mostly(parsed: pd.Series, original: pd.Series, share: float = 0.95) -> bool:
    present = original.notna()
    if not present.any():
        return False
    return bool(parsed[present].notna().mean() >= share)


class SchemaScan:
    """Schema inference over a table read in chunks: the rules of :func:`infer_schema`, streamed.

    Feed every chunk to :meth:`update`, then call :meth:`schema`. Numeric bounds, the integer flag,
    constant columns, level counts, the dates' range and a row-by-row hash of every column (duplicates)
    come from every row; whether a text column holds numbers or dates is decided on a sample of the first
    chunk that has values in it. The rules of each column are :mod:`segmentation.contract.interpret`'s.

    Args:
        id_column: the customer ID column (not a feature), or None.
        max_categories: most frequent levels kept per categorical column.
        drop_columns: columns set aside (``data.drop_columns``).
        reference_date: ISO date for days-before features (default: the latest date seen).
        seed: seed of the sample that decides what text columns hold.
        expected_rows: the table's row count, when known (level counts stop early past the limit).
        columns: ``data.columns``: a kind, ordinal order or weight per column name.
        id_reason: how the ID column was chosen, for its note.
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
        columns: Mapping[str, ColumnOverride] | None = None,
        id_reason: str = "the customer ID",
    ) -> None:
        self.id_column = id_column
        self.max_categories = max_categories
        self.drop_columns = drop_columns
        self.reference_date = reference_date
        self.rng = np.random.default_rng(seed)
        self.expected_rows = expected_rows
        self.overrides = dict(columns or {})
        self.id_reason = id_reason
        self.columns: dict[str, ColumnScan] = {}
        self.order: list[str] = []  # every column of the table, in table order
        self.n_rows = 0

    def _level_limit(self) -> int:
        # More levels than this means free text (ignored); known before the end when the row count is.
        return level_limit(self.expected_rows) if self.expected_rows else 1 << 62

    def update(self, frame: pd.DataFrame) -> None:
        """Accumulate one chunk."""
        first_row = self.n_rows
        self.n_rows += len(frame)
        probe_idx: np.ndarray = self.rng.choice(len(frame), min(len(frame), 2000), replace=False)
        if not self.order:
            self.order = [str(c) for c in frame.columns]
        for name in frame.columns:
            override = self.overrides.get(str(name))
            ignore = override is not None and override.kind == "ignore"
            if name == self.id_column or name in self.drop_columns or ignore:
                continue
            scan = self.columns.setdefault(str(name), ColumnScan())
            series = frame[name]
            scan.rows += len(series)
            n_present = int(series.notna().sum())
            scan.present += n_present
            if n_present == 0:
                continue
            if scan.kind is None:
                scan.forced = override.kind if override is not None else None
                forced = forced_scan_kind(scan.forced, series)
                scan.kind, scan.text = forced or self._decide(series, probe_idx)
                if scan.kind == "code":  # digits with leading zeros: level counts of the text as it is
                    scan.kind, scan.zero_padded = "categorical", True
            self._update(scan, series)
            update_fingerprint(scan, series, first_row)

    def _update(self, scan: ColumnScan, series: pd.Series) -> None:
        if scan.kind == "numeric":  # whole numbers' levels: bounded even when the row count is unknown
            update_numeric(scan, series, min(self._level_limit(), 1 << 20))
        elif scan.kind == "datetime":
            update_datetime(scan, series)
        elif scan.kind == "boolean":
            scan.trues += int(boolean_values(series).sum())
        elif scan.kind == "categorical" and not scan.too_many:
            update_levels(scan, series, None if scan.forced else self._level_limit())

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
            return ("code", False) if _zero_padded(probe) else ("numeric", True)
        if _mostly(parse_dates(probe), probe):
            return "datetime", True
        return "categorical", False

    def readings(self) -> dict[str, Reading]:
        """How every column of the table is read (table order), the ID and set-aside columns included."""
        out: dict[str, Reading] = {}
        for name, scan in self.columns.items():
            override = self.overrides.get(name)
            if override is not None and override.kind is not None:
                out[name] = forced_column(name, scan, override, self.max_categories)
                continue
            reading = read_column(name, scan, self.n_rows, self.max_categories)
            if override is not None and reading.spec is not None:
                spec = reading.spec.model_copy(update={"weight": override.weight})
                reading = Reading(spec, reading.note.model_copy(update={"weight": override.weight}))
            out[name] = reading
        out |= coordinate_pairs(out, self.columns)
        out |= duplicates(out, self.columns)
        return {name: out.get(name) or self._set_aside(name) for name in self.order or list(out)}

    def _set_aside(self, name: str) -> Reading:
        if name == self.id_column:
            return Reading(None, ColumnNote(name=name, kind="id", reason=self.id_reason, used=False))
        if name in self.drop_columns:
            return Reading(
                None, ColumnNote(name=name, kind="ignored", reason="listed in data.drop_columns", used=False)
            )
        return forced_column(name, ColumnScan(), self.overrides[name], self.max_categories)

    def schema(self) -> TableSchema:
        """The inferred contract of everything seen so far."""
        readings = self.readings()
        specs = [r.spec for r in readings.values() if r.spec is not None]
        ignored = [n for n, r in readings.items() if r.spec is None and n != self.id_column]
        ignored += [n for n in self.drop_columns if n not in readings]
        latest = max(
            (s.latest for s in self.columns.values() if s.latest is not None and s.kind == "datetime"),
            default=None,
        )
        ref = self.reference_date or (
            latest.date().isoformat() if latest is not None and not pd.isna(latest) else None
        )
        return TableSchema(
            kind="inferred",
            id_column=self.id_column,
            columns=tuple(specs),
            ignored_columns=tuple(ignored),
            reference_date=ref,
            columns_read=tuple(r.note for r in readings.values()),
        )


def _zero_padded(probe: pd.Series) -> bool:
    """Digits with leading zeros ("007", "01234") in at least 5 % of the probed text values: a code."""
    text = probe.dropna().astype(str)
    return bool(len(text)) and bool(text.str.match(_ZERO_PADDED).mean() >= 0.05)


def infer_schema(
    frame: pd.DataFrame,
    id_column: str | None,
    *,
    max_categories: int = 20,
    drop_columns: tuple[str, ...] = (),
    reference_date: str | None = None,
    seed: int = 0,
    columns: Mapping[str, ColumnOverride] | None = None,
) -> TableSchema:
    """Infer the input contract of a table on first training.

    Rules: bool dtype -> boolean; numbers (or text that is at least 95 % numeric) -> numeric; datetimes
    (or text that is at least 95 % ISO dates) -> datetime, encoded later as days before the reference
    date; other text -> categorical when it has at most ``max(50, 1 % of rows)`` levels. Identifiers,
    codes with many levels, coordinates, high-cardinality text, empty, constant and duplicate columns carry
    no segment information and are ignored (listed in the schema); codes with few levels are categories
    (:mod:`segmentation.contract.interpret` has every rule). Natural bounds are inferred: a column that is
    never negative gets ``>= 0``, and one within [0, 1] gets ``<= 1`` as well, so later data that breaks
    them is reported. ``columns`` (``data.columns``) overrides a column's kind and sets its weight. The
    schema's ``columns_read`` says how each column was read and why. Tables read in chunks use
    :class:`SchemaScan`, which applies the same rules.
    """
    scan = SchemaScan(
        id_column,
        max_categories=max_categories,
        drop_columns=drop_columns,
        reference_date=reference_date,
        seed=seed,
        expected_rows=len(frame),
        columns=columns,
    )
    scan.update(frame)
    return scan.schema()


def apply_declared_overrides(
    declared: TableSchema, columns: list[str], overrides: Mapping[str, ColumnOverride]
) -> TableSchema:
    """A declared schema (CC GENERAL) with ``data.columns`` weights and ``kind: ignore`` applied, and notes.

    Every column of the table gets a note: the ID, each declared feature (its declared range), a declared
    column set aside by ``kind: ignore``, and extra columns the declaration does not use.
    """
    specs: list[ColumnSpec] = []
    notes: dict[str, ColumnNote] = {}
    ignored: list[str] = []
    for column in declared.columns:
        override = overrides.get(column.name)
        if override is not None and override.kind == "ignore":
            ignored.append(column.name)
            notes[column.name] = ColumnNote(
                name=column.name, kind="ignored", reason="set in data.columns: kind ignore", used=False
            )
            continue
        spec = column if override is None else column.model_copy(update={"weight": override.weight})
        specs.append(spec)
        notes[spec.name] = _declared_note(spec)
    if declared.id_column:
        notes[declared.id_column] = ColumnNote(
            name=declared.id_column, kind="id", reason="the customer ID (declared)", used=False
        )
    for name in columns:
        notes.setdefault(
            name,
            ColumnNote(name=name, kind="ignored", reason="not a column of the declared schema", used=False),
        )
    order = [*columns, *(n for n in notes if n not in columns)]
    return declared.model_copy(
        update={
            "columns": tuple(specs),
            "ignored_columns": (*declared.ignored_columns, *ignored),
            "columns_read": tuple(notes[n] for n in order),
        }
    )


def _declared_note(spec: ColumnSpec) -> ColumnNote:
    bounds = []
    if spec.min_value is not None:
        bounds.append(f"{'>' if spec.min_exclusive else '>='} {spec.min_value:g}")
    if spec.max_value is not None:
        bounds.append(f"<= {spec.max_value:g}")
    shown = f" ({', '.join(bounds)})" if bounds else ""
    kind: NoteKind = "numeric"
    if spec.min_value == 0.0 and spec.max_value == 1.0:
        kind = "ratio"
    elif spec.integer and spec.min_value is not None and spec.min_value >= 0:
        kind = "count"
    return ColumnNote(
        name=spec.name, kind=kind, reason=f"declared numbers{shown}", used=True, weight=spec.weight
    )


__all__ = ["SchemaScan", "apply_declared_overrides", "detect_id_column", "infer_schema"]
