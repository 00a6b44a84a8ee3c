"""The ``data`` and ``preprocess`` sections: where the table comes from, how its columns are read."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from segmentation.config.base import Strict


# --------------------------------------------------------------------------------------------- data
def _level_key(level: str | int | float) -> str:
    """An ordinal level as text (``1`` and ``1.0`` are one level), as :mod:`contract.values` reads it."""
    if isinstance(level, float) and level.is_integer():
        return str(int(level))
    return str(level)


class ColumnOverride(Strict):
    """How one column is read, instead of what schema inference decides (``data.columns.NAME``)."""

    kind: Literal["ignore", "code", "categorical", "numeric", "ordinal", "date", "boolean"] | None = Field(
        None,
        description="ignore: not a feature; code: a group label (store, branch), read as categories; "
        "categorical, numeric, date, boolean; ordinal: ordered levels (needs order). Null: inferred.",
    )
    order: tuple[str | int | float, ...] | None = Field(
        None,
        description="The levels of an ordinal column, lowest first (e.g. ['0-20k', '20-50k', '50k+']); "
        "they become ranks 0, 1, 2... and any other value is rejected (check ordinal_level).",
    )
    weight: float = Field(
        1.0,
        ge=0,
        allow_inf_nan=False,
        description="Multiplies the column's share of the clustering space: weight 2 counts like two copies "
        "of the column (its variance doubles), 0 leaves it out of the segments (still validated).",
    )

    @model_validator(mode="after")
    def _check_order(self) -> ColumnOverride:
        if self.order is not None and self.kind != "ordinal":
            raise ValueError("order is only for kind: ordinal")
        if self.kind == "ordinal":
            levels = [_level_key(level) for level in self.order or ()]
            if len(levels) < 2:
                raise ValueError("kind: ordinal needs order: its levels, lowest first (at least two)")
            if len(set(levels)) < len(levels):
                raise ValueError(f"order lists a level twice: {levels}")
        if self.kind == "ignore" and self.weight != 1.0:
            raise ValueError("weight has no effect on a column of kind: ignore")
        return self


class DataConfig(Strict):
    """Where the customer table comes from and how its columns are read."""

    path: str | None = Field(
        None, description="CSV or Parquet file; None means the bundled CC GENERAL sample."
    )
    id_column: str | None = Field(None, description="Customer ID column; auto-detected when unambiguous.")
    schema_kind: Literal["auto", "cc_general", "inferred"] = Field(
        "auto", description="'auto' uses the CC GENERAL model when the table looks like it, else infers one."
    )
    drop_columns: tuple[str, ...] = Field((), description="Columns ignored for segmentation.")
    max_categories: int = Field(20, ge=2, le=1000, description="Most frequent levels kept per categorical.")
    reference_date: str | None = Field(
        None,
        description="ISO date for 'days since' features; default is the latest date in the training data.",
    )
    float32: bool = Field(True, description="Compute in float32 (halves memory; safe after scaling).")
    columns: dict[str, ColumnOverride] = Field(
        default_factory=dict,
        description="Per column (by name): kind, ordinal order, weight; instead of what inference decides. "
        "A name the table does not have is an error.",
    )


# --------------------------------------------------------------------------------------- preprocess
class PreprocessConfig(Strict):
    """Preprocessing fitted on training data only."""

    impute: Literal["median", "mean"] = "median"
    skew: Literal["none", "log1p", "yeo-johnson"] = "yeo-johnson"
    skew_threshold: float = Field(
        0.75, ge=0, description="Only columns whose absolute skewness exceeds this are transformed."
    )
    clip_quantiles: tuple[float, float] | None = Field(
        (0.005, 0.995), description="Clip every numeric column at these training quantiles; null disables."
    )
    scale: Literal["standard", "robust", "none"] = "standard"
    fit_sample: int = Field(
        100_000,
        ge=1000,
        description="Rows sampled for medians, quantiles and scales (Yeo-Johnson lambdas: 25,000 of them).",
    )

    @field_validator("clip_quantiles")
    @classmethod
    def _check_quantiles(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0.0 <= value[0] < value[1] <= 1.0:
            raise ValueError("clip_quantiles must satisfy 0 <= low < high <= 1")
        return value


__all__ = [
    "ColumnOverride",
    "DataConfig",
    "PreprocessConfig",
]
