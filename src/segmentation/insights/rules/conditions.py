"""Conditions as an analyst reads them: thresholds rounded to round numbers, one line per rule.

See :mod:`segmentation.insights.rules` for how the rules are found and read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from segmentation.contract.schema import ColumnKind

Op = Literal["<=", ">", "<", ">=", "in", "is"]

_DIGITS = 3  # significant digits of a displayed threshold
_MAX_DIGITS = 8  # more digits only where two bounds of one column would otherwise print the same


# ------------------------------------------------------------------------------------------ rendering
def round_significant(value: float, digits: int = _DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (0 stays 0)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    return float(f"{value:.{digits - 1}e}")


def format_number(value: float, digits: int = _DIGITS) -> str:
    """A threshold as an analyst reads it: ``digits`` significant digits, thousands separators.

    ``1213.7 -> "1,210"``, ``0.45678 -> "0.457"``, ``3.0 -> "3"``, ``1234567 -> "1,230,000"``.
    """
    rounded = round_significant(value, digits)
    if rounded == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    text = f"{rounded:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _level_set(levels: Sequence[str]) -> str:
    return levels[0] if len(levels) == 1 else "{" + ", ".join(levels) + "}"


# ----------------------------------------------------------------------------------------- conditions
@dataclass(frozen=True)
class Condition:
    """One condition of a rule, in the table's own units.

    ``op`` and ``value`` by column kind: numeric ``<=`` / ``>`` a number; datetime ``<`` (before) /
    ``>=`` (on or after) an ISO date; boolean ``is`` ``True`` / ``False``; categorical ``in`` a tuple of
    levels; ordinal ``>=`` / ``<=`` a level (by the schema's order, lowest first). ``missing`` says
    whether a row whose value is missing satisfies the condition (for a categorical or an ordinal, a
    level outside the schema's counts as missing).
    """

    column: str
    kind: ColumnKind
    op: Op
    value: float | str | bool | tuple[str, ...]
    missing: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: ``{"column", "kind", "op", "value", "missing"}`` (a level set as a list)."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {
            "column": self.column,
            "kind": self.kind,
            "op": self.op,
            "value": value,
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Condition:
        """Inverse of :meth:`to_dict`."""
        value = data["value"]
        return cls(
            column=str(data["column"]),
            kind=data["kind"],
            op=data["op"],
            value=tuple(value) if isinstance(value, list) else value,
            missing=bool(data.get("missing", False)),
        )


def render_conditions(
    conditions: Sequence[Condition], levels: Mapping[str, Sequence[str]] | None = None
) -> str:
    """The conditions as one readable line, conditions on one column merged: ``a > 1 and 2 < b ≤ 5``.

    Args:
        conditions: the conditions of one rule.
        levels: every level of each categorical column (from the schema); with it a set that holds most
            levels and missing values reads as its complement (``channel ≠ phone``).
    """
    if not conditions:
        return "all customers"
    parts: list[str] = []
    for column in dict.fromkeys(c.column for c in conditions):
        group = [c for c in conditions if c.column == column]
        parts.append(_render_column(group, (levels or {}).get(column, ())))
    return " and ".join(parts)


def _render_column(group: list[Condition], levels: Sequence[str]) -> str:
    column, kind = group[0].column, group[0].kind
    by_op = {c.op: c for c in group}
    if kind == "boolean":
        return f"{column} is {'true' if by_op['is'].value else 'false'}"
    if kind == "categorical":
        return _render_levels(by_op["in"], levels)
    if kind == "ordinal":
        least, most = by_op.get(">="), by_op.get("<=")
        if least and most:
            same = least.value == most.value
            return f"{column} = {least.value}" if same else f"{column} between {least.value} and {most.value}"
        return f"{column} ≥ {least.value}" if least else f"{column} ≤ {most.value}"  # type: ignore[union-attr]
    if kind == "datetime":
        after, before = by_op.get(">="), by_op.get("<")
        if after and before:
            return f"{column} on or after {after.value} and before {before.value}"
        return f"{column} on or after {after.value}" if after else f"{column} before {before.value}"  # type: ignore[union-attr]
    low, high = by_op.get(">"), by_op.get("<=")
    if low and high:
        return f"{_fmt(low)} < {column} ≤ {_fmt(high)}"
    return f"{column} > {_fmt(low)}" if low else f"{column} ≤ {_fmt(high)}"  # type: ignore[arg-type]


def _fmt(condition: Condition) -> str:
    value = float(condition.value)  # type: ignore[arg-type]
    digits = _DIGITS
    while round_significant(value, digits) != value and digits < _MAX_DIGITS:
        digits += 1
    return format_number(value, digits)


def _render_levels(condition: Condition, levels: Sequence[str]) -> str:
    chosen = tuple(condition.value)  # type: ignore[arg-type]
    others = tuple(level for level in levels if level not in chosen)
    if not chosen:
        return f"{condition.column} is missing"
    if condition.missing and levels and len(others) <= len(chosen):
        symbol = "≠" if len(others) == 1 else "not in"
        return f"{condition.column} {symbol} {_level_set(others)}"
    symbol = "=" if len(chosen) == 1 else "in"
    tail = " or missing" if condition.missing else ""
    return f"{condition.column} {symbol} {_level_set(chosen)}{tail}"


def nice_threshold(lo: float, hi: float, digits: int = _DIGITS) -> float:
    """The roundest number ``t`` with ``lo <= t < hi``: 0 if it fits, else the fewest significant digits.

    Every such ``t`` splits the rows the same way (``x <= t`` keeps ``lo`` and not ``hi``), so the rule
    shows a round number without changing what it selects: ``(1,207.3, 1,221.9) -> 1,210``,
    ``(3, 4) -> 3``. Among equally round numbers the one nearest the midpoint wins. When no number of
    at most ``digits`` significant digits lies in the gap, the midpoint rounded to ``digits`` (a few
    rows move to the other side; the held-out scores are measured with the rounded threshold).
    """
    mid = (lo + hi) / 2
    if lo <= 0 < hi:
        return 0.0
    magnitude = math.floor(math.log10(max(abs(lo), abs(hi))))
    for width in range(1, digits + 1):
        step = 10.0 ** (magnitude - width + 1)
        candidate = round(mid / step) * step
        for near in (candidate, candidate - step, candidate + step):
            value = round_significant(near, width + 1)
            if lo <= value < hi:
                return value
    return round_significant(mid, digits)
