"""What each column of a new table is: the rules schema inference applies, one column at a time.

:class:`ColumnScan` is what :class:`~segmentation.contract.inference.SchemaScan` accumulates about one
column over every chunk; :func:`read_column` turns it into a feature spec (or none) and a
:class:`~segmentation.contract.notes.ColumnNote` saying why; :func:`coordinate_pairs` and
:func:`duplicates` look across columns. The rules, in order:

* no value at all: ``empty``, ignored (never a failed run: a spreadsheet's trailing column);
* a header-less export column (pandas' ``Unnamed: 12``): ignored, whatever it holds;
* one value in every row: ``constant``, ignored;
* whole numbers distinct in (almost) every row, when the name says ID, the values run as a sequence, or
  no value repeats at all: an identifier (``id``), ignored;
* whole numbers whose name says code (zip, postal, pin, store, branch, ``..._code``, ``..._id``), or digits
  with leading zeros (``"007"``): a ``code``, read as categories when it has few enough levels for a
  categorical (the rule of text columns), else ignored: never a number, since a higher postal code is not
  more of anything;
* numbers: ``ratio`` within [0, 1], ``boolean`` for 0/1 whole numbers, ``count`` for whole numbers >= 0,
  else ``numeric``; a latitude/longitude pair (names and ranges) is a ``coordinate`` pair, ignored;
* text: ``categorical`` with at most ``max(50, 1 % of rows)`` levels, else free ``text``, ignored;
* a column with the same values as an earlier one, row for row: ``duplicate``, ignored.

``data.columns.NAME.kind`` overrides all of this for one column (:func:`forced_column`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from segmentation.config import ColumnOverride
from segmentation.contract.notes import ColumnNote, NoteKind
from segmentation.contract.schema import ColumnSpec
from segmentation.contract.values import category_text, level_text, parse_dates

_UNNAMED = re.compile(r"^Unnamed: \d+$")
_TOKENS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
# A name ending in one of these is a code ("branch_code", "StoreID", "zip"); one holding a postal word
# anywhere is too ("zip_area"); a group word alone or numbered ("store", "branch_no") is one as well.
_CODE_LAST = {"id", "code", "zip", "zipcode", "postcode", "pin", "pincode", "key"}
_CODE_ANY = {"zip", "zipcode", "postal", "postcode", "pincode"}
_CODE_GROUP = {"store", "branch", "shop", "outlet", "region", "zone", "district", "pin"}
_NUMBERED = {"no", "nr", "num", "number"}
_ID_LAST = {"id", "ids", "key", "uuid", "guid"}
_LAT = {"lat", "latitude"}
_LON = {"lon", "lng", "long", "longitude"}
_NEAR_UNIQUE = 0.99  # distinct values per present value for an identifier
_MIN_ID_ROWS = 50  # fewer rows than this: distinct values alone say nothing


def name_tokens(name: str) -> list[str]:
    """The words of a column name, lower case (``NumStorePurchases`` -> num, store, purchases)."""
    return [t.lower() for t in _TOKENS.findall(name)]


def code_name(name: str) -> bool:
    """True when the name says the column holds codes (a postal code, a store number), not amounts."""
    tokens = name_tokens(name)
    if not tokens:
        return False
    if tokens[-1] in _CODE_LAST or _CODE_ANY & set(tokens):
        return True
    words = tokens[:-1] if len(tokens) > 1 and tokens[-1] in _NUMBERED else tokens
    return len(words) == 1 and words[0] in _CODE_GROUP


def id_name(name: str) -> bool:
    """True when the name says identifier: ``..._id``, ``CustomerID``, ``..._key``, ``account_no``."""
    tokens = name_tokens(name)
    if not tokens:
        return False
    return tokens[-1] in _ID_LAST or (len(tokens) > 1 and tokens[-1] in _NUMBERED)


def unnamed(name: str) -> bool:
    """True for a column without a header, as pandas names it (``Unnamed: 12``)."""
    return bool(_UNNAMED.match(name))


@dataclass
class ColumnScan:
    """What schema inference needs to know about one column, accumulated chunk by chunk."""

    kind: str | None = None  # decided on the first chunk with values: numeric/boolean/datetime/categorical
    text: bool = False  # numeric or dates stored as text
    zero_padded: bool = False  # digits with leading zeros ("007"): a code, kept as text
    forced: str | None = None  # data.columns.NAME.kind
    rows: int = 0
    present: int = 0
    lo: float = np.inf
    hi: float = -np.inf
    integer: bool = True
    earliest: pd.Timestamp | None = None
    latest: pd.Timestamp | None = None
    trues: int = 0  # boolean columns: how many True
    counts: pd.Series | None = None  # level counts (text, or whole numbers), dropped once hopelessly many
    too_many: bool = False
    chunk_distinct: int = 0  # whole numbers past counting: distinct values per chunk, summed
    repeats: bool = False  # whole numbers past counting: a chunk repeats values (no identifier)
    fingerprint: int = 0  # hash of every value and its row: equal for columns equal row for row

    def distinct(self) -> int:
        """Distinct values seen (past counting: per chunk, summed: an upper bound)."""
        return len(self.counts) if self.counts is not None else self.chunk_distinct


def update_numeric(scan: ColumnScan, series: pd.Series, level_limit: int) -> None:
    """Bounds, the integer flag and (for whole numbers) the level counts of a numeric column."""
    values = pd.to_numeric(series, errors="coerce") if scan.text else series
    lo, hi = values.min(), values.max()  # NaN skipped, as in a whole-table min/max
    if not pd.isna(lo):
        scan.lo, scan.hi = min(scan.lo, float(lo)), max(scan.hi, float(hi))
    if scan.integer and not pd.api.types.is_integer_dtype(values):
        scan.integer = bool((values.dropna() % 1 == 0).all())
    if scan.integer:
        _count_whole_numbers(scan, values, level_limit)
    else:
        scan.counts = None


def _count_whole_numbers(scan: ColumnScan, values: pd.Series, level_limit: int) -> None:
    """Level counts of whole numbers (codes); past ``level_limit`` levels, whether they repeat (IDs)."""
    if scan.too_many:
        if not scan.repeats:
            present = values.dropna()
            distinct = int(present.nunique())
            scan.chunk_distinct += distinct
            scan.repeats = distinct < _NEAR_UNIQUE * len(present)
        return
    counts = values.dropna().astype(np.float64).value_counts()
    scan.counts = counts if scan.counts is None else scan.counts.add(counts, fill_value=0)
    if len(scan.counts) > level_limit:
        scan.chunk_distinct, scan.counts, scan.too_many = len(scan.counts), None, True
        scan.repeats = scan.chunk_distinct < _NEAR_UNIQUE * scan.present


def update_datetime(scan: ColumnScan, series: pd.Series) -> None:
    """The earliest and latest date of a date column (the latest is the default reference date)."""
    stamps = parse_dates(series)
    earliest, latest = stamps.min(), stamps.max()
    if not pd.isna(latest):
        scan.latest = latest if scan.latest is None else max(scan.latest, latest)
        scan.earliest = earliest if scan.earliest is None else min(scan.earliest, earliest)


def update_levels(scan: ColumnScan, series: pd.Series, level_limit: int | None) -> None:
    """Level counts of a categorical column (dropped past ``level_limit``; None: never)."""
    counts = category_text(series).value_counts()
    scan.counts = counts if scan.counts is None else scan.counts.add(counts, fill_value=0)
    if level_limit is not None and len(scan.counts) > level_limit:
        scan.chunk_distinct, scan.counts, scan.too_many = len(scan.counts), None, True


def update_fingerprint(scan: ColumnScan, series: pd.Series, first_row: int) -> None:
    """Add one chunk (its first row's global position) to the column's row-by-row hash."""
    hashes = pd.util.hash_pandas_object(series, index=False).to_numpy(dtype=np.uint64)
    rows = np.arange(first_row, first_row + len(series), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        scan.fingerprint = (scan.fingerprint + int((hashes * rows).sum(dtype=np.uint64))) % (1 << 64)


@dataclass(frozen=True)
class Reading:
    """One column as read: its feature spec (None when it is not a feature) and the note saying why."""

    spec: ColumnSpec | None
    note: ColumnNote


def _ignored(name: str, kind: NoteKind, reason: str) -> Reading:
    return Reading(None, ColumnNote(name=name, kind=kind, reason=reason, used=False))


def _used(spec: ColumnSpec, kind: NoteKind, reason: str) -> Reading:
    note = ColumnNote(name=spec.name, kind=kind, reason=reason, used=True, weight=spec.weight)
    return Reading(spec, note)


def _num(value: float) -> str:
    return f"{value:g}"


def read_column(name: str, scan: ColumnScan, n_rows: int, max_categories: int) -> Reading:
    """The inferred reading of one column (no override): see the module docstring for the rules."""
    if scan.present == 0:
        header = " (a column without a header: an export artefact)" if unnamed(name) else ""
        return _ignored(name, "empty", f"no value in any of {n_rows:,} rows{header}; ignored")
    if unnamed(name):
        return _ignored(
            name, "ignored", f"no header (pandas names it {name!r}): an export artefact, not a field; ignored"
        )
    if scan.kind == "boolean":
        if scan.trues in (0, scan.present):
            return _ignored(name, "constant", f"{scan.trues > 0} in every row; ignored")
        share = scan.trues / scan.present
        return _used(ColumnSpec(name=name, kind="boolean"), "boolean", f"True/False ({share:.0%} True)")
    if scan.kind == "numeric":
        return _numeric(name, scan, n_rows, max_categories)
    if scan.kind == "datetime":
        if scan.earliest == scan.latest:
            return _ignored(name, "constant", f"one date ({_date(scan.latest)}) in every row; ignored")
        return _used(
            ColumnSpec(name=name, kind="datetime"),
            "date",
            f"dates from {_date(scan.earliest)} to {_date(scan.latest)}: days before the reference date",
        )
    return _text(name, scan, n_rows, max_categories)


def _date(stamp: Any) -> str:
    return "?" if stamp is None or pd.isna(stamp) else pd.Timestamp(stamp).date().isoformat()


def level_limit(n_rows: int) -> int:
    """Most levels a categorical (or code) column may have: ``max(50, 1 % of rows)``; more is free text."""
    return max(50, n_rows // 100)


def _numeric(name: str, scan: ColumnScan, n_rows: int, max_categories: int) -> Reading:
    lo, hi = scan.lo, scan.hi
    if lo == hi:
        return _ignored(name, "constant", f"one value ({_num(lo)}) in every row; ignored")
    if scan.integer:
        identifier = _identifier(name, scan)
        if identifier:
            return _ignored(
                name,
                "id",
                f"{identifier}: an identifier, not a measurement; ignored "
                f"(data.columns.{name}.kind: numeric uses it)",
            )
        if code_name(name):
            return code_levels(name, scan, n_rows, max_categories, f"whole numbers named {name!r}")
    spec = _numeric_spec(name, scan)
    text = " (written as text)" if scan.text else ""
    if lo >= 0 and hi <= 1:
        if scan.integer:
            return _used(spec, "boolean", f"0/1 values{text}: a yes/no flag, one column")
        return _used(
            spec, "ratio", f"numbers within [0, 1] ({_num(lo)} to {_num(hi)}){text}: a share or rate"
        )
    if scan.integer and lo >= 0:
        return _used(spec, "count", f"whole numbers from {_num(lo)} to {_num(hi)}{text}: a count or a score")
    return _used(spec, "numeric", f"numbers from {_num(lo)} to {_num(hi)}{text}")


def _numeric_spec(name: str, scan: ColumnScan, weight: float = 1.0) -> ColumnSpec:
    """A numeric feature with its natural bounds: never negative -> ``>= 0``; within [0, 1] -> ``<= 1``.

    A column with no number at all (forced numeric by ``data.columns``) gets no bound and no integer check.
    """
    bounded = bool(np.isfinite(scan.lo)) and scan.lo >= 0
    return ColumnSpec(
        name=name,
        kind="numeric",
        integer=scan.integer and bool(np.isfinite(scan.lo)),
        min_value=0.0 if bounded else None,
        max_value=1.0 if bounded and scan.hi <= 1 else None,
        weight=weight,
    )


def _identifier(name: str, scan: ColumnScan) -> str:
    """Why whole numbers are an identifier ("" when they are not one)."""
    distinct = scan.distinct()
    if scan.repeats or scan.present < _MIN_ID_ROWS or distinct < _NEAR_UNIQUE * scan.present:
        return ""
    seen = "a different value in every row" if distinct == scan.present else "distinct in over 99 % of rows"
    if id_name(name):
        return f"{seen}, named like an ID"
    if scan.hi - scan.lo + 1 <= 2 * scan.present:
        return f"{seen}, running from {_num(scan.lo)} to {_num(scan.hi)} like a sequence"
    if distinct == scan.present:
        return f"{seen} (whole numbers)"
    return ""


def code_levels(name: str, scan: ColumnScan, n_rows: int, max_categories: int, why: str) -> Reading:
    """A code column (group labels written as numbers): categories when few enough, else ignored."""
    if scan.counts is None or len(scan.counts) > level_limit(n_rows):
        return _ignored(
            name,
            "code",
            f"{why}: codes, not amounts; more than {level_limit(n_rows)} distinct codes, too many to use "
            "as categories; ignored",
        )
    spec = _categorical_spec(name, scan, max_categories)
    return _used(spec, "code", f"{why}: codes, not amounts; {_levels_read(scan, max_categories)}")


def _categorical_spec(name: str, scan: ColumnScan, max_categories: int, weight: float = 1.0) -> ColumnSpec:
    counts = scan.counts if scan.counts is not None else pd.Series(dtype=np.int64)
    # Most frequent first; ties in level order (numbers by value), however the rows were chunked.
    order = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    levels = tuple(level_text(v) for v in order.index[:max_categories])
    return ColumnSpec(name=name, kind="categorical", categories=levels, weight=weight)


def _levels_read(scan: ColumnScan, max_categories: int) -> str:
    n = scan.distinct()
    kept = min(n, max_categories)
    if n == 2:
        return "2 levels, read as one yes/no column"
    rest = f" (the {kept} most frequent; the others read as 'other')" if n > kept else ""
    return f"{n} levels as categories{rest}, weighted like one numeric column"


def _text(name: str, scan: ColumnScan, n_rows: int, max_categories: int) -> Reading:
    if scan.zero_padded:
        return code_levels(name, scan, n_rows, max_categories, "digits with leading zeros")
    if scan.too_many or scan.counts is None or len(scan.counts) > level_limit(n_rows):
        return _ignored(
            name,
            "text",
            f"more than {level_limit(n_rows)} distinct values in {n_rows:,} rows: free text or an "
            "identifier, too many levels for categories; ignored",
        )
    if len(scan.counts) <= 1:
        value = str(scan.counts.index[0]) if len(scan.counts) else ""
        return _ignored(name, "constant", f"one value ({value!r}) in every row; ignored")
    return _used(
        _categorical_spec(name, scan, max_categories), "categorical", _levels_read(scan, max_categories)
    )


def forced_column(name: str, scan: ColumnScan, override: ColumnOverride, max_categories: int) -> Reading:
    """The reading ``data.columns.NAME`` asks for (its kind; None: the inferred one, with its weight)."""
    kind = override.kind
    said = "set in data.columns"
    if kind == "ignore":
        return _ignored(name, "ignored", f"{said}: kind ignore")
    if kind == "ordinal":
        levels = tuple(level_text(v) for v in override.order or ())
        shown = " < ".join(levels[:8]) + (" < ..." if len(levels) > 8 else "")
        spec = ColumnSpec(name=name, kind="ordinal", categories=levels, weight=override.weight)
        return _used(spec, "ordinal", f"ordered levels {shown} read as ranks 0 to {len(levels) - 1} ({said})")
    if kind in ("code", "categorical"):
        spec = _categorical_spec(name, scan, max_categories, override.weight)
        return _used(spec, kind, f"{_levels_read(scan, max_categories)} ({said})")
    if kind == "date":
        return _used(
            ColumnSpec(name=name, kind="datetime", weight=override.weight), "date", f"dates ({said})"
        )
    if kind == "boolean":
        return _used(
            ColumnSpec(name=name, kind="boolean", weight=override.weight), "boolean", f"yes/no ({said})"
        )
    return _used(_numeric_spec(name, scan, override.weight), "numeric", f"numbers ({said})")


def forced_scan_kind(kind: str | None, series: pd.Series) -> tuple[str, bool] | None:
    """How the scan reads a column whose kind ``data.columns`` sets: ``(scan kind, stored as text)``."""
    if kind is None:
        return None
    numeric = pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
    return {
        "code": ("categorical", False),
        "categorical": ("categorical", False),
        "ordinal": ("ordinal", False),
        "numeric": ("numeric", not numeric),
        "date": ("datetime", not pd.api.types.is_datetime64_any_dtype(series.dtype)),
        "boolean": ("boolean", False),
    }[kind]


def coordinate_pairs(readings: dict[str, Reading], scans: dict[str, ColumnScan]) -> dict[str, Reading]:
    """Latitude/longitude pairs among the numeric features, read as coordinates (ignored).

    A latitude is named lat/latitude with values within [-90, 90]; a longitude lon/lng/long/longitude
    within [-180, 180]. Only a table with both is changed: one such column alone is a number like others.
    """
    numeric = [n for n, r in readings.items() if r.spec is not None and r.spec.kind == "numeric"]

    def named(words: set[str], bound: float) -> list[str]:
        return [
            n
            for n in numeric
            if words & set(name_tokens(n)) and -bound <= scans[n].lo and scans[n].hi <= bound
        ]

    lats, lons = named(_LAT, 90.0), named(_LON, 180.0)
    if not lats or not lons:
        return {}
    out: dict[str, Reading] = {}
    for group, others, what in ((lats, lons, "latitude"), (lons, lats, "longitude")):
        for name in group:
            out[name] = _ignored(
                name,
                "coordinate",
                f"a {what} (paired with {', '.join(others)}): where a customer is, not what they do; "
                f"ignored (data.columns.{name}.kind: numeric segments by place)",
            )
    return out


def duplicates(readings: dict[str, Reading], scans: dict[str, ColumnScan]) -> dict[str, Reading]:
    """Features with the same values as an earlier feature, row for row: ignored, naming the first."""
    first: dict[tuple[int, int, str], str] = {}
    out: dict[str, Reading] = {}
    for name, reading in readings.items():
        if reading.spec is None or scans[name].forced is not None:
            continue
        key = (scans[name].fingerprint, scans[name].present, reading.spec.kind)
        if key in first:
            out[name] = _ignored(name, "duplicate", f"the same values as {first[key]}, row for row; ignored")
        else:
            first[key] = name
    return out


__all__ = [
    "ColumnScan",
    "Reading",
    "code_levels",
    "code_name",
    "coordinate_pairs",
    "duplicates",
    "forced_column",
    "forced_scan_kind",
    "id_name",
    "level_limit",
    "name_tokens",
    "read_column",
    "unnamed",
    "update_datetime",
    "update_fingerprint",
    "update_levels",
    "update_numeric",
]
