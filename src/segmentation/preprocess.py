"""Preprocessing fitted on training data only: encode, impute, clip, unskew, scale, weight.

The fitted state is a handful of arrays (medians, quantiles, Yeo-Johnson lambdas, centres, scales,
category shares) saved as JSON + NPZ; nothing is refit at prediction time and no pickle is needed.

Weighting of mixed types (the clustering space): every input column weighs the same, one unit of variance
on the training rows, whatever its kind, times its ``weight`` (``data.columns.NAME.weight``):

* numeric, count, ratio, boolean, date and ordinal columns are one standardized column each (``scale:
  standard``: variance 1); ordinals are their ranks (not unskewed, not clipped);
* a categorical column with L >= 3 kept levels is a block of L indicator columns, centred on the training
  shares p and divided by ``sqrt(sum p(1 - p))``, so the block's total variance is 1 however many levels it
  has: ``(1[level j] - p_j) / sqrt(sum_i p_i (1 - p_i))``. Missing, unseen and not-kept levels are the
  all-zero indicator (every column at ``-p_j / sqrt(...)``);
* a categorical column with 2 levels is one column, ``1[level 1] - 1[level 2]`` standardized (missing and
  unseen values in between, at 0 before centring), not two redundant indicators;
* ``weight`` w multiplies the column (or the block) by ``sqrt(w)``: its variance, its share of k-means'
  squared distances, becomes w, so weight 2 counts like two copies of the column and 0 leaves it out.

Bundles saved before this scheme (no ``level_shares`` in their state) keep plain 0/1 one-hot columns.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats

from segmentation.config import PreprocessConfig
from segmentation.contract.checks import CheckedColumn, CheckedNumbers, CheckedTimestamps
from segmentation.contract.schema import TableSchema
from segmentation.contract.values import boolean_values, level_codes, parse_dates
from segmentation.data.chunks import sample_positions

logger = logging.getLogger(__name__)

_TRANSPOSE_ROWS = 4096  # rows per block when transposing column-major work into the output
_TICKS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_LAMBDA_ROWS = 25_000  # the lambda's optimiser is the slow part of fitting; 25k rows pin it down well


def yeo_johnson(x: np.ndarray, lmbda: float) -> np.ndarray:
    """Apply the Yeo-Johnson power transform with a fixed lambda (vectorized, float64)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    if abs(lmbda) > 1e-12:
        out[pos] = np.expm1(lmbda * np.log1p(x[pos])) / lmbda
    else:
        out[pos] = np.log1p(x[pos])
    if abs(lmbda - 2) > 1e-12:
        out[~pos] = -np.expm1((2 - lmbda) * np.log1p(-x[~pos])) / (2 - lmbda)
    else:
        out[~pos] = -np.log1p(-x[~pos])
    return out


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """``log1p`` that keeps the sign, so it is defined for negative values too."""
    return np.sign(x) * np.log1p(np.abs(x))


class Preprocessor:
    """Turn a validated customer table into a dense float matrix.

    Numeric, boolean and date columns (dates become days before the reference date) are imputed,
    clipped at training quantiles (rows are never dropped), unskewed where strongly skewed, and scaled.
    Ordinal columns are ranks of their declared levels. Categorical columns are indicator blocks on the
    training levels weighted as the module docstring says (or a single column for two levels); unseen or
    missing levels encode as no level.

    Args:
        schema: the table schema (feature columns, kinds, categories, reference date).
        config: the preprocessing section of the configuration.
        float32: produce float32 output.
        seed: seed of the row sample used to estimate quantiles and skew parameters.
    """

    def __init__(
        self, schema: TableSchema, config: PreprocessConfig, float32: bool = True, seed: int = 0
    ) -> None:
        self.schema = schema
        self.config = config
        self.float32 = float32
        self.seed = seed

    # -------------------------------------------------------------------------------- encoding
    @property
    def _dense_columns(self) -> list[str]:
        return [c.name for c in self.schema.columns if c.kind != "categorical"]

    @property
    def _categorical_columns(self) -> list[str]:
        return [c.name for c in self.schema.columns if c.kind == "categorical"]

    @property
    def dense_columns(self) -> list[str]:
        """Numeric, boolean and date columns, in the order of the preprocessed matrix."""
        return list(self._dense_columns)

    def raw_column(self, frame: pd.DataFrame, name: str) -> np.ndarray:
        """One numeric, boolean or date column in original units (float64, NaN for missing or infinite).

        Dates are days before the reference date. Column by column, so profiles of millions of rows need
        one column's memory at a time, not the whole table's.
        """
        return self.raw_values(frame[name], name)

    def raw_values(self, series: pd.Series, name: str) -> np.ndarray:
        """:meth:`raw_column` of a column given as a Series (``name`` says which schema column it is)."""
        spec = self.schema.column(name)
        if spec.kind == "datetime":
            stamps = parse_dates(series).to_numpy()  # datetime64 in pandas' unit; NaT where missing
            values = self._days_before_reference(stamps.view(np.int64), np.datetime_data(stamps.dtype)[0])
            values[np.isnat(stamps)] = np.nan
        elif spec.kind == "boolean":  # True/False, 0/1 or their text forms (a CSV chunk with a bad cell)
            values = boolean_values(series).to_numpy(dtype=np.float64, na_value=np.nan)
        elif spec.kind == "ordinal":  # the rank of the level; not a level (or missing): NaN
            ranks = level_codes(series, list(spec.categories)).astype(np.float64)
            values = np.where(ranks >= 0, ranks, np.nan)
        else:
            values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        values = np.array(values, dtype=np.float64)  # a private copy: never a view of the caller's frame
        values[~np.isfinite(values)] = np.nan  # infinities are treated as missing and imputed
        return values

    def _days_before_reference(self, ticks: np.ndarray, unit: str) -> np.ndarray:
        """Days before the reference date of integer timestamps (``unit``: s, ms, us or ns).

        Subtracted in the timestamps' unit, divided by that unit's ticks per second, then by 86,400 (what
        pandas' ``total_seconds() / 86400`` does). Dates parsed by pandas and Arrow timestamps both come
        through here.
        """
        per_second = _TICKS_PER_SECOND[unit]
        reference = pd.Timestamp(str(self.schema.reference_date)).as_unit("ns").value
        return (reference // (_TICKS_PER_SECOND["ns"] // per_second) - ticks) / per_second / 86400.0

    def _dense_rows(self, frame: pd.DataFrame) -> np.ndarray:
        """The dense columns as rows of a (columns x rows) float64 array; missing values NaN.

        Infinite values are *kept* here (callers treat them as missing). Filling row by row writes each
        column contiguously, which is several times faster than stacking columns into a row-major matrix.
        """
        names = self._dense_columns
        rows = np.empty((len(names), len(frame)), dtype=np.float64)
        for j, name in enumerate(names):
            self._raw_into(frame[name], name, rows[j])
        return rows

    def _raw_into(self, series: pd.Series, name: str, out: np.ndarray) -> None:
        """Write one dense column's raw values (NaN missing, infinities kept) into ``out``."""
        if (
            self.schema.column(name).kind == "numeric"
            and isinstance(series.dtype, np.dtype)
            and series.dtype.kind in "fiu"
        ):
            out[:] = series.to_numpy()  # plain NumPy numbers: cast straight into place
        else:
            out[:] = self.raw_values(series, name)

    def _dense_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        rows = self._dense_rows(frame)
        rows[~np.isfinite(rows)] = np.nan  # infinities are treated as missing and imputed
        return np.ascontiguousarray(rows.T)

    def raw_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Numeric, boolean and date columns in original units, before imputation (for profiles).

        Dates are days before the reference date.
        """
        return pd.DataFrame(self._dense_matrix(frame), columns=self._dense_columns, index=frame.index)

    @staticmethod
    def _category_codes(column: pd.Series | pa.Array, levels: list[str]) -> np.ndarray:
        """Index of each value among ``levels`` (-1: missing or unseen), from pandas or Arrow text."""
        if isinstance(column, pd.Series):
            return level_codes(column, levels)
        codes = pc.index_in(column, value_set=pa.array(levels, type=column.type))
        return pc.fill_null(codes, -1).to_numpy().astype(np.int64, copy=False)

    # ------------------------------------------------------------------------------------- fit
    def fit(self, frame: pd.DataFrame) -> Self:
        """Estimate every parameter from the training table (a sample of rows for quantiles/skew)."""
        cfg = self.config
        n = len(frame)
        idx = sample_positions(n, cfg.fit_sample, self.seed)
        dense = self._dense_matrix(frame.iloc[idx])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are caught by validation
            self.impute_ = (
                np.nanmedian(dense, axis=0) if cfg.impute == "median" else np.nanmean(dense, axis=0)
            )
        self.impute_ = np.nan_to_num(self.impute_, nan=0.0)
        dense = np.where(np.isnan(dense), self.impute_, dense)
        ordinal = np.array([self.schema.column(c).kind == "ordinal" for c in self._dense_columns], dtype=bool)
        if cfg.clip_quantiles is not None and len(dense):
            self.clip_low_, self.clip_high_ = np.quantile(dense, cfg.clip_quantiles, axis=0)
            self.clip_low_[ordinal], self.clip_high_[ordinal] = -np.inf, np.inf  # ranks: no outliers
            dense = np.clip(dense, self.clip_low_, self.clip_high_)
        else:
            self.clip_low_ = np.full(dense.shape[1], -np.inf)
            self.clip_high_ = np.full(dense.shape[1], np.inf)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant columns (e.g. after clipping): skew 0
            skewness = (
                np.nan_to_num(stats.skew(dense, axis=0)) if len(dense) > 2 else np.zeros(dense.shape[1])
            )
        self.skewed_ = (
            (np.abs(skewness) > cfg.skew_threshold) if cfg.skew != "none" else np.zeros(dense.shape[1], bool)
        ) & ~ordinal
        self.lambdas_ = np.ones(dense.shape[1])
        stride = max(1, -(-len(dense) // _LAMBDA_ROWS))  # every k-th sampled row: still spread over the table
        skewed = np.flatnonzero(self.skewed_)
        if cfg.skew == "yeo-johnson" and len(skewed):
            # One optimisation per column, independent of the others: two threads (NumPy releases the GIL
            # in the likelihood's array work). The warning filter is set once, outside the threads.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                with ThreadPoolExecutor(max_workers=2, thread_name_prefix="lambda") as pool:
                    fitted = pool.map(lambda j: float(stats.yeojohnson_normmax(dense[::stride, j])), skewed)
                    self.lambdas_[skewed] = list(fitted)
        for j in skewed:
            if cfg.skew == "yeo-johnson":
                dense[:, j] = yeo_johnson(dense[:, j], self.lambdas_[j])
            else:
                dense[:, j] = signed_log1p(dense[:, j])
        if cfg.scale == "standard":
            self.center_ = dense.mean(axis=0)
            self.scale_ = dense.std(axis=0)
        elif cfg.scale == "robust":
            q1, median, q3 = np.quantile(dense, [0.25, 0.5, 0.75], axis=0)
            self.center_, self.scale_ = median, q3 - q1
        else:
            self.center_, self.scale_ = np.zeros(dense.shape[1]), np.ones(dense.shape[1])
        self.scale_ = np.where(self.scale_ > 1e-12, self.scale_, 1.0)
        sample = frame.iloc[idx]
        self.level_shares_: np.ndarray | None = np.concatenate(
            [np.zeros(0)]
            + [
                _shares(
                    self._category_codes(sample[c], list(self.schema.column(c).categories)), c, self.schema
                )
                for c in self._categorical_columns
            ]
        )
        self._encode()
        logger.info(
            "preprocessing fitted on %d rows: %d dense columns (%d unskewed), %d categorical columns",
            len(idx),
            len(self._dense_columns),
            int(self.skewed_.sum()),
            len(self.feature_names_out_) - len(self._dense_columns),
        )
        return self

    def _encode(self) -> None:
        """Output names, dense weights and categorical tables from the fitted shares (or legacy one-hot)."""
        self.roots_ = np.sqrt([self.schema.column(c).weight for c in self._dense_columns])
        self.tables_: list[np.ndarray] = []
        names = list(self._dense_columns)
        start = 0
        for name in self._categorical_columns:
            spec = self.schema.column(name)
            levels = list(spec.categories)
            if self.level_shares_ is None:  # bundles saved before weighting: plain 0/1 one-hot columns
                table = np.hstack([np.zeros((len(levels), 1)), np.eye(len(levels))])
            else:
                table = category_table(self.level_shares_[start : start + len(levels)], spec.weight)
                start += len(levels)
            self.tables_.append(table)
            names += [f"{name}={level}" for level in levels[: len(table)]]
        self.feature_names_out_ = names

    # ------------------------------------------------------------------------------- transform
    def transform(self, frame: pd.DataFrame, chunk_rows: int = 250_000) -> np.ndarray:
        """Encode and transform rows with the fitted parameters (chunked to bound memory).

        Returns:
            A row-major ``(rows, features out)`` matrix: :meth:`transform_columns` of each chunk,
            transposed.
        """
        dtype = np.float32 if self.float32 else np.float64
        out = np.empty((len(frame), len(self.feature_names_out_)), dtype=dtype)
        for start in range(0, len(frame), chunk_rows):
            part = frame.iloc[start : start + chunk_rows]
            columns = {name: part[name] for name in self.schema.feature_names}
            rows = self.transform_columns(columns, len(part))
            block = out[start : start + len(part)]
            for lo in range(0, len(part), _TRANSPOSE_ROWS):  # cache-sized blocks for the transpose
                block[lo : lo + _TRANSPOSE_ROWS] = rows[:, lo : lo + _TRANSPOSE_ROWS].T
        return out

    def transform_columns(self, columns: Mapping[str, CheckedColumn], n_rows: int) -> np.ndarray:
        """Transform columns into a column-major ``(features out, rows)`` block (one row per feature).

        Training, serving and batch scoring all come through here, so on one machine they agree bit for bit
        (elementwise NumPy, no BLAS: no summation order to vary). Each dense
        column is worked on in place while it is in cache: impute, clip, unskew, centre, scale. With float32
        output the work is done in float32 too (NumPy's float32 ``log1p``/``expm1`` are vectorised, six
        times faster than float64 here).

        Args:
            columns: every feature column: a pandas Series (any values; infinities are treated as missing),
                :class:`~segmentation.data.row_validation.CheckedNumbers` or
                :class:`~segmentation.data.row_validation.CheckedTimestamps` (checked, missing values at
                known positions: read without a copy), or Arrow text for a categorical feature.
            n_rows: the length of every column.

        Returns:
            Preprocessed features: row ``j`` is feature ``feature_names_out_[j]``. Its transpose is the
            ``(rows, features)`` matrix featurizers take; they accept either memory layout.
        """
        dtype = np.float32 if self.float32 else np.float64
        block = np.empty((len(self.feature_names_out_), n_rows), dtype=dtype)
        # Parameters in the work dtype: a float64 scalar would run a float32 column through float64 loops
        # (eight times slower). Clipping a float32 value at float32-rounded bounds gives exactly what the
        # float64 bounds give.
        lows, highs = self.clip_low_.astype(dtype), self.clip_high_.astype(dtype)
        centers, scales = self.center_.astype(dtype), self.scale_.astype(dtype)
        roots = self.roots_.astype(dtype).tolist()  # sqrt(weight) per dense column
        imputed = np.clip(self.impute_.astype(dtype), lows, highs)  # a missing value, imputed and clipped
        skewed = self.skewed_.tolist()
        with np.errstate(invalid="ignore"):  # NaN or garbage in the rows of invalid values: never used
            for j, name in enumerate(self._dense_columns):
                row, column = block[j], columns[name]
                if isinstance(column, CheckedTimestamps):
                    days = self._days_before_reference(column.ticks, column.unit)
                    column = CheckedNumbers(days, column.missing)
                if isinstance(column, CheckedNumbers):
                    if column.values.dtype == dtype:  # clip while copying
                        np.clip(column.values, lows[j], highs[j], out=row)
                    else:
                        row[:] = column.values
                        np.clip(row, lows[j], highs[j], out=row)
                    if column.missing is not None:
                        row[column.missing] = imputed[j]
                elif isinstance(column, pd.Series):
                    self._raw_into(column, name, row)
                    np.copyto(row, self.impute_[j], where=~np.isfinite(row))
                    np.clip(row, lows[j], highs[j], out=row)
                else:
                    raise TypeError(f"column {name!r}: expected a Series or numbers, got {type(column)}")
                if skewed[j]:
                    unskewed = self._unskew(row, j)
                    if unskewed is not row:
                        row[:] = unskewed
                np.subtract(row, centers[j], out=row)
                np.divide(row, scales[j], out=row)
                if roots[j] != 1.0:
                    np.multiply(row, roots[j], out=row)
        start = len(self._dense_columns)
        for name, table in zip(self._categorical_columns, self.tables_, strict=True):
            column = columns[name]
            if isinstance(column, CheckedNumbers | CheckedTimestamps):
                raise TypeError(f"column {name!r} is categorical: expected text, got numbers")
            codes = self._category_codes(column, list(self.schema.column(name).categories))
            # Column c + 1 of the table is the encoding of level c; column 0 that of no level.
            np.take(
                table.astype(dtype), codes + 1, axis=1, out=block[start : start + len(table)], mode="clip"
            )
            start += len(table)
        return block

    def _unskew(self, values: np.ndarray, j: int) -> np.ndarray:
        """The skew transform of dense column ``j`` (in place when every value is non-negative)."""
        if self.config.skew != "yeo-johnson":
            return signed_log1p(values)
        lmbda = float(self.lambdas_[j])
        if self.clip_low_[j] >= 0 and abs(lmbda) > 1e-12:
            # Clipped at a non-negative quantile: only Yeo-Johnson's positive branch applies.
            np.log1p(values, out=values)
            np.multiply(values, lmbda, out=values)
            np.expm1(values, out=values)
            np.divide(values, lmbda, out=values)
            return values
        return yeo_johnson(values, lmbda)

    def fit_transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Fit, then transform the same table."""
        return self.fit(frame).transform(frame)

    # ----------------------------------------------------------------------------------- state
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able meta and the fitted arrays."""
        meta = {
            "config": self.config.model_dump(mode="json"),
            "float32": self.float32,
            "feature_names_out": self.feature_names_out_,
        }
        arrays = {
            "impute": self.impute_,
            "clip_low": self.clip_low_,
            "clip_high": self.clip_high_,
            "skewed": self.skewed_,
            "lambdas": self.lambdas_,
            "center": self.center_,
            "scale": self.scale_,
        }
        if self.level_shares_ is not None:
            arrays["level_shares"] = self.level_shares_
        return meta, arrays

    @classmethod
    def from_state(cls, schema: TableSchema, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        """Rebuild the fitted preprocessor (the schema is stored separately in the bundle)."""
        obj = cls(schema, PreprocessConfig.model_validate(meta["config"]), float32=bool(meta["float32"]))
        obj.impute_ = arrays["impute"]
        obj.clip_low_, obj.clip_high_ = arrays["clip_low"], arrays["clip_high"]
        obj.skewed_ = arrays["skewed"].astype(bool)
        obj.lambdas_ = arrays["lambdas"]
        obj.center_, obj.scale_ = arrays["center"], arrays["scale"]
        obj.level_shares_ = arrays.get("level_shares")  # None: saved before weighting (plain one-hot)
        obj._encode()
        if obj.feature_names_out_ != list(meta["feature_names_out"]):
            raise ValueError("preprocess state does not match its schema: feature names differ")
        return obj


def _shares(codes: np.ndarray, name: str, schema: TableSchema) -> np.ndarray:
    """Share of the rows at each level of a categorical column (missing and other levels: at none)."""
    levels = len(schema.column(name).categories)
    counts = np.bincount(codes[codes >= 0], minlength=levels)[:levels]
    return counts / max(len(codes), 1)


def category_table(shares: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """How a categorical column is encoded: column ``c + 1`` is level ``c``'s output, column 0 no level's.

    Levels with training shares ``p``: with two levels, one column ``1[level 1] - 1[level 2]`` centred and
    scaled to variance ``weight``; otherwise one indicator per level, centred on ``p`` and scaled by
    ``sqrt(weight / sum p(1 - p))`` so the block's total variance is ``weight``. A column without spread
    in training (one level in every row) encodes as zeros.
    """
    p = np.asarray(shares, dtype=np.float64)
    if len(p) == 2:
        mean = p[0] - p[1]
        spread = p[0] + p[1] - mean**2
        factor = np.sqrt(weight / spread) if spread > 1e-12 else 0.0
        return (np.array([[0.0, 1.0, -1.0]]) - mean) * factor
    spread = float(np.sum(p * (1 - p)))
    factor = np.sqrt(weight / spread) if spread > 1e-12 else 0.0
    indicators = np.hstack([np.zeros((len(p), 1)), np.eye(len(p))])
    return (indicators - p[:, None]) * factor
