"""Lazy validation of customer tables with pandera, and the report users read when data is bad.

Two kinds of schema share one code path:

* :class:`CCGeneral`, a hand-written pandera ``DataFrameModel`` for the bundled CC GENERAL table;
* a :class:`TableSchema` inferred from any other table on first training and saved with the model,
  turned into a pandera ``DataFrameSchema`` by :meth:`TableSchema.to_pandera`.

Validation is lazy: every failure is collected into one :class:`ValidationReport` that lists
(column, check, count, a few example values).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pandera.typing import Series
from pydantic import BaseModel, ConfigDict

_EXAMPLES = 5


# -------------------------------------------------------------------------------------------- report
@dataclass(frozen=True)
class Failure:
    """One failed check on one column, aggregated over rows."""

    column: str
    check: str
    count: int
    examples: list[Any] = field(default_factory=list)


@dataclass
class ValidationReport:
    """Every validation failure found in one table (empty ``failures`` means valid)."""

    source: str
    n_rows: int
    n_columns: int
    failures: list[Failure] = field(default_factory=list)
    schema_kind: str = ""

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, written as ``validation_report.json``."""
        return {**asdict(self), "ok": self.ok}

    def to_text(self) -> str:
        """Human-readable table, printed by the CLI and written as ``validation_report.txt``."""
        head = (
            f"Validation of {self.source} ({self.n_rows} rows x {self.n_columns} columns, "
            f"schema: {self.schema_kind or 'n/a'}): "
        )
        if self.ok:
            return head + "OK"
        lines = [
            head + f"{len(self.failures)} failure(s)",
            f"  {'column':<34} {'check':<34} {'count':>7}  examples",
        ]
        lines += [
            f"  {f.column:<34} {f.check:<34} {f.count:>7}  {json.dumps(f.examples, default=str)[:120]}"
            for f in self.failures
        ]
        return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return str(value)
    return value


def _failures_from_pandera(errors: SchemaErrors) -> list[Failure]:
    cases = errors.failure_cases
    out: list[Failure] = []
    cases = cases.assign(
        column=cases["column"].fillna("<table>").astype(str), check=cases["check"].astype(str)
    )
    for (column, check), group in cases.groupby(["column", "check"], sort=False):
        values = group["failure_case"].dropna().unique().tolist()[:_EXAMPLES]
        if check == "column_in_dataframe":
            # pandera puts the missing column's name in failure_case and None in column.
            for missing in group["failure_case"].astype(str):
                out.append(Failure(column=missing, check="missing_required_column", count=1, examples=[]))
            continue
        out.append(
            Failure(
                column=column,
                check=_check_name(check),
                count=len(group),
                examples=[_jsonable(v) for v in values],
            )
        )
    # A value that cannot be coerced also fails its column's dtype and range checks: report the cause only.
    uncoercible = {f.column for f in out if f.check.startswith("coerce_dtype")}
    return [f for f in out if f.column not in uncoercible or f.check.startswith("coerce_dtype")]


def _check_name(check: str) -> str:
    # pandera names: "greater_than_or_equal_to(0)", "coerce_dtype('float64')", "field_uniqueness" ...
    return {"field_uniqueness": "unique", "column_in_schema": "unexpected_column"}.get(check, check)


# ------------------------------------------------------------------------------------- CC GENERAL
class CCGeneral(pa.DataFrameModel):
    """Schema of the *Credit Card Dataset for Clustering* (CC GENERAL).

    Amounts are non-negative; frequencies lie in [0, 1]; tenure is 1..12 months. The real table has
    8 customers whose ``CASH_ADVANCE_FREQUENCY`` is above 1 (up to 1.5), a known quirk of the public
    data, so that one column is bounded at 1.5. ``CREDIT_LIMIT`` and ``MINIMUM_PAYMENTS`` have missing
    values in the real data and are imputed.
    """

    CUST_ID: Series[str] = pa.Field(unique=True, nullable=False)
    BALANCE: Series[float] = pa.Field(ge=0, nullable=False)
    BALANCE_FREQUENCY: Series[float] = pa.Field(ge=0.0, le=1.0, nullable=False)
    PURCHASES: Series[float] = pa.Field(ge=0, nullable=False)
    ONEOFF_PURCHASES: Series[float] = pa.Field(ge=0, nullable=False)
    INSTALLMENTS_PURCHASES: Series[float] = pa.Field(ge=0, nullable=False)
    CASH_ADVANCE: Series[float] = pa.Field(ge=0, nullable=False)
    PURCHASES_FREQUENCY: Series[float] = pa.Field(ge=0.0, le=1.0, nullable=False)
    ONEOFF_PURCHASES_FREQUENCY: Series[float] = pa.Field(ge=0.0, le=1.0, nullable=False)
    PURCHASES_INSTALLMENTS_FREQUENCY: Series[float] = pa.Field(ge=0.0, le=1.0, nullable=False)
    CASH_ADVANCE_FREQUENCY: Series[float] = pa.Field(ge=0, le=1.5, nullable=False)
    CASH_ADVANCE_TRX: Series[float] = pa.Field(ge=0, nullable=False)
    PURCHASES_TRX: Series[float] = pa.Field(ge=0, nullable=False)
    CREDIT_LIMIT: Series[float] = pa.Field(gt=0, nullable=True)
    PAYMENTS: Series[float] = pa.Field(ge=0, nullable=False)
    MINIMUM_PAYMENTS: Series[float] = pa.Field(ge=0, nullable=True)
    PRC_FULL_PAYMENT: Series[float] = pa.Field(ge=0.0, le=1.0, nullable=False)
    TENURE: Series[float] = pa.Field(ge=1, le=12, nullable=False)

    class Config:
        """Coerce types (integers arrive as int64); extra columns are allowed and reported as ignored."""

        coerce = True
        strict = False


CC_GENERAL_ID = "CUST_ID"


def looks_like_cc_general(columns: list[str]) -> bool:
    """True when most CC GENERAL columns are present (so a missing one is reported, not re-inferred)."""
    expected = set(CCGeneral.to_schema().columns)
    return len(expected & set(columns)) >= 0.8 * len(expected)


# ---------------------------------------------------------------------------------- inferred schema
ColumnKind = Literal["numeric", "boolean", "categorical", "datetime"]


class ColumnSpec(BaseModel):
    """One feature column of a table schema."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: ColumnKind
    integer: bool = False
    nullable: bool = True
    min_value: float | None = None
    max_value: float | None = None
    categories: tuple[str, ...] = ()


class TableSchema(BaseModel):
    """The input contract of a model: ID column, feature columns with kinds and ranges.

    Saved as ``schema.json`` in every bundle and used by training, serving and scoring alike.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["cc_general", "inferred"]
    id_column: str | None
    columns: tuple[ColumnSpec, ...]
    ignored_columns: tuple[str, ...] = ()
    reference_date: str | None = None

    @property
    def feature_names(self) -> list[str]:
        """Names of the feature columns, in order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        """The spec of one column."""
        for spec in self.columns:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_pandera(self, require_id: bool = True) -> pa.DataFrameSchema:
        """The pandera schema that validates tables against this contract.

        Args:
            require_id: check the ID column (present, unique); scoring and serving may omit it.
        """
        if self.kind == "cc_general":
            schema = CCGeneral.to_schema()
            return schema if require_id else schema.remove_columns([CC_GENERAL_ID])
        columns: dict[str, pa.Column] = {}
        if self.id_column is not None and require_id:
            columns[self.id_column] = pa.Column(str, unique=True, nullable=False, coerce=True)
        for spec in self.columns:
            columns[spec.name] = _pandera_column(spec)
        return pa.DataFrameSchema(columns, strict=False, coerce=False)


def _pandera_column(spec: ColumnSpec) -> pa.Column:
    checks = []
    if spec.kind == "numeric":
        if spec.min_value is not None:
            checks.append(pa.Check.ge(spec.min_value))
        if spec.max_value is not None:
            checks.append(pa.Check.le(spec.max_value))
        return pa.Column(float, checks=checks, nullable=spec.nullable, coerce=True)
    if spec.kind == "boolean":
        return pa.Column(
            bool,
            nullable=spec.nullable,
            coerce=False,
            checks=[pa.Check(_is_booleanish, name="boolean_values")],
        )
    if spec.kind == "datetime":
        return pa.Column("datetime64[ns]", nullable=spec.nullable, coerce=True)
    return pa.Column(nullable=spec.nullable, coerce=False)


def _is_booleanish(series: pd.Series) -> pd.Series:
    return series.isna() | series.isin([True, False, 0, 1])


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
        c for c in frame.columns if _is_text(frame[c]) and frame[c].notna().all() and frame[c].is_unique
    ]
    if len(textual) == 1:
        return str(textual[0])
    if len(textual) > 1:
        raise ValueError(f"ambiguous ID column: candidates {textual}; pass --id-column / data.id_column")
    return None


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)


def parse_dates(series: pd.Series) -> pd.Series:
    """Parse dates (ISO 8601 text or datetimes) to naive UTC timestamps; unparsable values become NaT."""
    stamps = pd.to_datetime(series, errors="coerce", format="ISO8601", utc=True)
    return stamps.dt.tz_localize(None)


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
            present = series.notna()
            n_present = int(present.sum())
            scan.present += n_present
            if n_present == 0:
                continue
            if scan.kind is None:
                scan.kind, scan.text = self._decide(series, probe_idx)
            if scan.kind == "boolean":
                continue
            if scan.kind == "numeric":
                values = pd.to_numeric(series, errors="coerce") if scan.text else series
                lo, hi = values.min(), values.max()  # NaN skipped, as in a whole-table min/max
                if not pd.isna(lo):
                    scan.lo, scan.hi = min(scan.lo, float(lo)), max(scan.hi, float(hi))
                if scan.integer and not pd.api.types.is_integer_dtype(series):
                    scan.integer = bool((values.dropna() % 1 == 0).all())
            elif scan.kind == "datetime":
                stamps = parse_dates(series)
                latest = stamps.max()
                if not pd.isna(latest):
                    scan.latest = latest if scan.latest is None else max(scan.latest, latest)
            elif not scan.too_many:
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


def cc_general_schema() -> TableSchema:
    """The :class:`TableSchema` form of :class:`CCGeneral` (what bundles trained on CC GENERAL store)."""
    specs = []
    for name, column in CCGeneral.to_schema().columns.items():
        if name == CC_GENERAL_ID:
            continue
        lo = hi = None
        for check in column.checks:
            stats = check.statistics
            if "min_value" in stats:
                lo = float(stats["min_value"])
            if "max_value" in stats:
                hi = float(stats["max_value"])
        specs.append(
            ColumnSpec(
                name=name,
                kind="numeric",
                nullable=column.nullable,
                min_value=lo,
                max_value=hi,
                integer=name in {"CASH_ADVANCE_TRX", "PURCHASES_TRX", "TENURE"},
            )
        )
    return TableSchema(kind="cc_general", id_column=CC_GENERAL_ID, columns=tuple(specs))


# ------------------------------------------------------------------------------------- validation
def validate_frame(
    frame: pd.DataFrame,
    schema: TableSchema,
    source: str = "<frame>",
    *,
    require_id: bool = True,
    check_empty: bool = True,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate a table lazily against a schema.

    Args:
        frame: the table.
        schema: its contract.
        source: name used in the report (file path).
        require_id: also check the ID column (training requires it; scoring may omit it).
        check_empty: report columns with no value at all (off for one chunk of a larger table, where
            the check is made over every chunk).

    Returns:
        The coerced frame (only when valid; otherwise the input) and the report with every failure.
    """
    report = ValidationReport(
        source=source, n_rows=len(frame), n_columns=frame.shape[1], schema_kind=schema.kind
    )
    failures: list[Failure] = []
    if len(frame) == 0:
        failures.append(Failure(column="<table>", check="has_rows", count=1, examples=["no rows"]))
    id_columns = [schema.id_column] if schema.id_column and require_id else []
    for name in [*id_columns, *schema.feature_names] if check_empty else []:
        if name in frame.columns and len(frame) and frame[name].isna().all():
            failures.append(
                Failure(column=name, check="not_entirely_empty", count=len(frame), examples=[None])
            )
    empty = {f.column for f in failures}
    checked = frame.drop(columns=[c for c in empty if c in frame.columns])
    pandera_schema = schema.to_pandera(require_id=require_id)
    if empty:
        pandera_schema = pandera_schema.remove_columns([c for c in empty if c in pandera_schema.columns])
    try:
        validated = pandera_schema.validate(checked, lazy=True)
    except SchemaErrors as exc:
        failures.extend(_failures_from_pandera(exc))
        validated = frame
    report.failures = failures
    return (validated if report.ok else frame), report
