"""What validation found: one :class:`ValidationReport` per table, one :class:`Failure` per (column, check).

Every validator of the contract reports in these types: the in-memory pandera validation
(:mod:`segmentation.contract.frame`), the streamed validator (:mod:`segmentation.contract.validator`) that
training, scoring, drift and serving call, and the table-level checks of reading a file
(:mod:`segmentation.data.io`). Counts are rows; examples are a few offending values, shown as pandera shows
them (a number when the text reads as one).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

EXAMPLES = 5
"""How many example values a failure keeps."""


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


def jsonable(value: Any) -> Any:
    """A failing value as JSON can hold it (NumPy scalars unwrapped, infinities and dates as text)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return str(value)
    return value


def example(value: str) -> Any:
    """A failing value (as text) shown as pandera shows it: a number when it reads as one, else the text."""
    try:
        number = float(value)
    except ValueError:
        return value or None
    if not math.isfinite(number):
        return value  # JSON has no infinity or NaN: kept as the text it was
    return int(number) if number.is_integer() else number


def merge_failures(failures: Iterable[Failure]) -> list[Failure]:
    """One failure per (column, check) across chunks: counts added, the first examples kept."""
    counts: dict[tuple[str, str], int] = {}
    examples: dict[tuple[str, str], list[Any]] = {}
    for failure in failures:
        key = (failure.column, failure.check)
        counts[key] = counts.get(key, 0) + failure.count
        seen = examples.setdefault(key, [])
        seen.extend(e for e in failure.examples if e not in seen and len(seen) < EXAMPLES)
    return [Failure(column=c, check=k, count=n, examples=examples[(c, k)]) for (c, k), n in counts.items()]


def failures_from_rejects(rejects: pd.DataFrame) -> list[Failure]:
    """Rejects lines (``row``, ``column``, ``check``, ``value``) aggregated per (column, check)."""
    return [
        Failure(
            column=str(column),
            check=str(check),
            count=len(group),
            examples=[example(v) for v in group["value"].unique()[:EXAMPLES]],
        )
        for (column, check), group in rejects.groupby(["column", "check"], sort=False)
    ]


def table_failure(
    source: str, n_rows: int, n_columns: int, column: str, check: str, shown: str
) -> ValidationReport:
    """A report with one table-level failure (a problem found before any row is checked)."""
    failure = Failure(column=column, check=check, count=1, examples=[shown])
    return ValidationReport(source=source, n_rows=n_rows, n_columns=n_columns, failures=[failure])


__all__ = [
    "EXAMPLES",
    "Failure",
    "ValidationReport",
    "example",
    "failures_from_rejects",
    "jsonable",
    "merge_failures",
    "table_failure",
]
