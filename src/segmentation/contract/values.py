"""How raw values are read: text, dates and boolean-like values, one rule each for the whole contract.

Schema inference, the row checks and preprocessing all read values through these functions, so a value
that inference takes for a date is parsed the same way when it is checked and when it is encoded.
"""

from __future__ import annotations

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


_BOOLEAN_TEXT: dict[object, float] = {
    **dict.fromkeys(("true", "True", "TRUE", "1", "1.0", True, 1, 1.0), 1.0),
    **dict.fromkeys(("false", "False", "FALSE", "0", "0.0", False, 0, 0.0), 0.0),
}


__all__ = ["boolean_values", "is_text", "parse_dates"]
