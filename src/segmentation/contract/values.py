"""How raw values are read: text, dates, boolean-like values and levels, one rule each for the whole contract.

Schema inference, the row checks and preprocessing all read values through these functions, so a value
that inference takes for a date is parsed the same way when it is checked and when it is encoded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def is_text(series: pd.Series) -> bool:
    """True for object and string columns (text as read from a CSV, or strings)."""
    return pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)


def parse_dates(series: pd.Series) -> pd.Series:
    """Parse dates (ISO 8601 text or datetimes) to naive UTC timestamps; unparsable values become NaT."""
    stamps = pd.to_datetime(series, errors="coerce", format="ISO8601", utc=True)
    return stamps.dt.tz_localize(None)


def boolean_values(series: pd.Series) -> pd.Series:
    """A boolean column as float (1.0, 0.0, NaN for missing or not boolean-like).

    Accepts what pandera's ``boolean_values`` check accepts (True/False/0/1) plus their text forms
    (``true``, ``False``, ``0``, ``1.0`` ...), which is how a CSV chunk with one bad cell arrives.
    """
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("float64")
    numeric = series.map(_BOOLEAN_TEXT.get, na_action="ignore") if is_text(series) else series
    out = pd.to_numeric(numeric, errors="coerce").astype("float64")
    return out.where(out.isin((0.0, 1.0)))


def level_text(value: object) -> str:
    """One level of a categorical or ordinal column as text: ``12``, ``12.0`` and ``"12"`` are all ``"12"``.

    Integer codes (a store number, a postal code) arrive as ``int64`` from one file and as ``float64`` from
    another (a missing value makes pandas read the column as floats); both name the same level.
    """
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    return str(value)


def category_text(series: pd.Series) -> pd.Series:
    """A categorical or ordinal column as text levels (pandas ``string``; missing stays missing).

    Text is taken as it is (``"007"`` stays ``"007"``); numbers are written as :func:`level_text` writes
    them, so an integer code read as floats (``12.0``) is the level ``"12"``.
    """
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        whole = np.isfinite(values) & (values == np.round(values))
        if whole[~np.isnan(values)].all():
            return series.astype("Int64").astype("string")
        return series.map(level_text, na_action="ignore").astype("string")
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("string")
    return series.astype("string")


def level_codes(series: pd.Series, levels: list[str]) -> np.ndarray:
    """Index of each value among ``levels`` (-1: missing or not a level), read by :func:`category_text`."""
    return np.asarray(pd.Categorical(category_text(series), categories=levels).codes, dtype=np.int64)


_BOOLEAN_TEXT: dict[object, float] = {
    **dict.fromkeys(("true", "True", "TRUE", "1", "1.0", True, 1, 1.0), 1.0),
    **dict.fromkeys(("false", "False", "FALSE", "0", "0.0", False, 0, 0.0), 0.0),
}


__all__ = ["boolean_values", "category_text", "is_text", "level_codes", "level_text", "parse_dates"]
