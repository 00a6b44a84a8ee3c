"""How every column of a training table was read: a kind, a reason, and whether it is a feature.

Schema inference (:mod:`segmentation.contract.inference`) writes one :class:`ColumnNote` per column of the
table, the ID column and ignored columns included, into :attr:`TableSchema.columns_read`, so the bundle
carries what was decided and why; :func:`columns_read_table` lays them out for the run report.

Kinds:

============ =======================================================================================
kind         read as
============ =======================================================================================
id           the customer ID, or another column holding an identifier (distinct in almost every row)
code         a group label written as a number (store, branch, postal code): categories, never a size
numeric      numbers
count        whole numbers >= 0: a number of things (or a score); used as a number
ratio        numbers within [0, 1] (shares, rates); used as a number
boolean      yes/no (True/False, or 0/1 numbers)
categorical  text levels: one block of indicator columns, weighted like one numeric column
ordinal      ordered levels (``data.columns.NAME.order``): ranks 0, 1, 2... used as a number
date         dates: days before the reference date
coordinate   a latitude or longitude of a pair: where a customer is, not what they do
text         free text (more levels than categories can use)
empty        no value in any row (often a spreadsheet's trailing column)
constant     one value in every row
duplicate    the same values as an earlier column, row for row
ignored      set aside: ``data.drop_columns``, ``kind: ignore``, or a header-less export column
============ =======================================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

NoteKind = Literal[
    "id",
    "code",
    "numeric",
    "count",
    "ratio",
    "boolean",
    "categorical",
    "ordinal",
    "date",
    "coordinate",
    "text",
    "empty",
    "constant",
    "duplicate",
    "ignored",
]


class ColumnNote(BaseModel):
    """How one column of the training table was read.

    Attributes:
        name: the column.
        kind: what it was read as (see the module docstring).
        reason: why, in a sentence an analyst can check (values seen, the name, or the setting that decided).
        used: whether it is a feature of the segments (the ID and ignored columns are not).
        weight: its weight in the clustering space (``data.columns.NAME.weight``; 1 by default).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: NoteKind
    reason: str
    used: bool
    weight: float = 1.0


COLUMNS_READ_HEADER = ["Column", "Read as", "Used", "Why"]


def columns_read_table(notes: Sequence[ColumnNote]) -> tuple[list[str], list[list[str]]]:
    """The table of how each column was read, for the run report: ``(header, rows)``, in table order.

    Header: Column, Read as, Used (``yes``, ``yes, weight 2``, ``no``), Why. Build the report's table block
    from it (``Table(header, rows)`` in :mod:`segmentation.insights.render`). Bundles that predate column
    notes have none: the table is then empty (header only).
    """
    rows = [[note.name, note.kind, _used(note), note.reason] for note in notes]
    return list(COLUMNS_READ_HEADER), rows


def columns_read_text(notes: Sequence[ColumnNote]) -> str:
    """The same table as plain aligned text (logs, ``segment`` output)."""
    header, rows = columns_read_table(notes)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in [header, *rows]
    )


def _used(note: ColumnNote) -> str:
    if not note.used:
        return "no"
    return "yes" if note.weight == 1.0 else f"yes, weight {note.weight:g}"


__all__ = ["COLUMNS_READ_HEADER", "ColumnNote", "NoteKind", "columns_read_table", "columns_read_text"]
