"""Columns in original units as floats for the surrogate trees (numbers, 0/1, days, level codes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from segmentation.contract.schema import ColumnSpec, TableSchema
from segmentation.contract.values import boolean_values, category_text, level_codes, parse_dates

_EPOCH = "1970-01-01"  # reference of date columns when the schema has none
_NS_PER_DAY = 86_400 * 10**9


# ------------------------------------------------------------------------------------------- encoding
@dataclass
class EncodedColumn:
    """One feature column encoded for the trees: a float per row (codes for categoricals)."""

    spec: ColumnSpec
    levels: tuple[str, ...] = ()  # categorical: the levels, code -1 is "missing"; ordinal: lowest first
    fill: float = 0.0  # not categorical: the training median missing values take


class Encoder:
    """Columns in original units as floats: numbers, 0/1, days before the reference date, level codes."""

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.reference = pd.Timestamp(schema.reference_date or _EPOCH)
        self.columns: list[EncodedColumn] = []

    def raw(self, series: pd.Series, spec: ColumnSpec, levels: tuple[str, ...] = ()) -> np.ndarray:
        """Float values (NaN missing); categoricals as level codes (-1 missing or another level)."""
        if spec.kind == "categorical":
            return level_codes(series, list(levels)).astype(np.float64)
        if spec.kind == "ordinal":  # the rank of the level; not a level (or missing): NaN
            ranks = level_codes(series, list(levels)).astype(np.float64)
            return np.where(ranks >= 0, ranks, np.nan)
        if spec.kind == "datetime":
            stamps = parse_dates(series).to_numpy(dtype="datetime64[ns]")  # NaT where missing
            values = (self.reference.as_unit("ns").value - stamps.view(np.int64)) / _NS_PER_DAY
            values[np.isnat(stamps)] = np.nan
        elif spec.kind == "boolean":
            values = boolean_values(series).to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        values = np.array(values, dtype=np.float64)
        values[~np.isfinite(values)] = np.nan
        return values

    def fit_transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode the training rows and learn the medians (rows x columns)."""
        out = np.empty((len(frame), len(self.schema.columns)))
        for j, spec in enumerate(self.schema.columns):
            levels: tuple[str, ...] = ()
            if spec.kind in ("categorical", "ordinal"):
                levels = spec.categories or _observed_levels(frame[spec.name])
            values = self.raw(frame[spec.name], spec, levels)
            column = EncodedColumn(spec, levels=levels)
            if spec.kind != "categorical":
                present = values[~np.isnan(values)]
                column.fill = float(np.median(present)) if len(present) else 0.0
                if spec.kind == "boolean":  # the more common value, so the column stays 0/1
                    column.fill = float(column.fill > 0.5)
                values = np.where(np.isnan(values), column.fill, values)
            self.columns.append(column)
            out[:, j] = values
        return out

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode other rows with the training medians and levels."""
        out = np.empty((len(frame), len(self.columns)))
        for j, column in enumerate(self.columns):
            values = self.raw(frame[column.spec.name], column.spec, column.levels)
            out[:, j] = (
                values
                if column.spec.kind == "categorical"
                else np.where(np.isnan(values), column.fill, values)
            )
        return out


def _observed_levels(series: pd.Series) -> tuple[str, ...]:
    counts = category_text(series.dropna()).value_counts()
    return tuple(sorted(str(v) for v in counts.index))


def level_order(codes: np.ndarray, target: np.ndarray, n_levels: int) -> np.ndarray:
    """Rank of each group (index 0: missing, then the levels) by its share of the target, ascending.

    Groups without training rows take the overall share, so every group lies on a definite side of
    every threshold. Ties keep the schema's order.
    """
    groups = codes.astype(np.int64) + 1
    rows = np.bincount(groups, minlength=n_levels + 1)
    hits = np.bincount(groups, weights=target.astype(np.float64), minlength=n_levels + 1)
    prior = float(target.mean()) if len(target) else 0.0
    share = np.where(rows > 0, hits / np.maximum(rows, 1), prior)
    order = np.argsort(share, kind="stable")
    rank = np.empty(n_levels + 1, dtype=np.int64)
    rank[order] = np.arange(n_levels + 1)
    return rank
