"""The input contract of a model: :class:`TableSchema` (ID column, feature columns, kinds, bounds).

Saved as ``schema.json`` in every bundle and read by training, serving, scoring and drift alike. Two kinds:

* ``cc_general``: the bundled CC GENERAL table, declared by hand as the pandera model :class:`CCGeneral`;
* ``inferred``: any other table, inferred on first training (:mod:`segmentation.contract.inference`).

pandera is the contract's declaration: :meth:`TableSchema.to_pandera` is what the in-memory validator
(:func:`segmentation.contract.frame.validate_frame`) runs, and the streamed row checks
(:mod:`segmentation.contract.checks`) implement the same checks, tested to agree.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series
from pydantic import BaseModel, ConfigDict, Field

from segmentation.contract.notes import ColumnNote
from segmentation.contract.values import level_codes


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


ColumnKind = Literal["numeric", "boolean", "categorical", "datetime", "ordinal"]


class ColumnSpec(BaseModel):
    """One feature column of a table schema.

    ``categories``: a categorical column's levels (most frequent first), or an ordinal column's levels in
    order (lowest first; a value is its rank, and any other value breaks the contract). ``weight``
    multiplies the column's variance in the clustering space (:mod:`segmentation.preprocess`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: ColumnKind
    integer: bool = False
    nullable: bool = True
    min_value: float | None = None
    max_value: float | None = None
    # ``min_value`` itself is excluded (a value must be greater): CC GENERAL's credit limit is > 0.
    min_exclusive: bool = False
    categories: tuple[str, ...] = ()
    weight: float = Field(1.0, ge=0)


class TableSchema(BaseModel):
    """The input contract of a model: ID column, feature columns with kinds and ranges.

    Saved as ``schema.json`` in every bundle and used by training, serving and scoring alike.
    ``columns_read`` says how every column of the training table was read and why (bundles that predate
    it have none).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["cc_general", "inferred"]
    id_column: str | None
    columns: tuple[ColumnSpec, ...]
    ignored_columns: tuple[str, ...] = ()
    reference_date: str | None = None
    columns_read: tuple[ColumnNote, ...] = ()

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
            # Columns set aside (``kind: ignore``) are not part of the contract, as with inferred schemas.
            dropped = [c for c in self.ignored_columns if c in schema.columns]
            return schema.remove_columns(dropped if require_id else [CC_GENERAL_ID, *dropped])
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
            checks.append(pa.Check.gt(spec.min_value) if spec.min_exclusive else pa.Check.ge(spec.min_value))
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
    if spec.kind == "ordinal":
        levels = list(spec.categories)
        return pa.Column(
            nullable=spec.nullable,
            coerce=False,
            checks=[
                pa.Check(
                    lambda s: pd.Series(level_codes(s, levels) >= 0, index=s.index), name="ordinal_level"
                )
            ],
        )
    return pa.Column(nullable=spec.nullable, coerce=False)


def _is_booleanish(series: pd.Series) -> pd.Series:
    return series.isna() | series.isin([True, False, 0, 1])


def cc_general_schema() -> TableSchema:
    """The :class:`TableSchema` form of :class:`CCGeneral` (what bundles trained on CC GENERAL store)."""
    specs = []
    for name, column in CCGeneral.to_schema().columns.items():
        if name == CC_GENERAL_ID:
            continue
        lo = hi = None
        exclusive = False
        for check in column.checks:
            stats = check.statistics
            if "min_value" in stats:
                lo = float(stats["min_value"])
                exclusive = check.name == "greater_than"
            if "max_value" in stats:
                hi = float(stats["max_value"])
        specs.append(
            ColumnSpec(
                name=name,
                kind="numeric",
                nullable=column.nullable,
                min_value=lo,
                max_value=hi,
                min_exclusive=exclusive,
                integer=name in {"CASH_ADVANCE_TRX", "PURCHASES_TRX", "TENURE"},
            )
        )
    return TableSchema(kind="cc_general", id_column=CC_GENERAL_ID, columns=tuple(specs))


__all__ = [
    "CC_GENERAL_ID",
    "CCGeneral",
    "ColumnKind",
    "ColumnNote",
    "ColumnSpec",
    "TableSchema",
    "cc_general_schema",
    "looks_like_cc_general",
]
