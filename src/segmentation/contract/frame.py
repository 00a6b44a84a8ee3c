"""In-memory validation with pandera: a whole table against its contract, lazily, in one report.

What :func:`segmentation.stages.load.validate_table` (tables in memory: notebooks, tests, ``fit_model``)
and :meth:`SegmentationModel.validate` run. Tables read from files are validated chunk by chunk by
:class:`segmentation.contract.validator.ChunkValidator` instead, with the same checks (tested to report
the same failures).
"""

from __future__ import annotations

import re

import pandas as pd
from pandera.errors import SchemaErrors

from segmentation.contract.checks import check_columns
from segmentation.contract.report import EXAMPLES, Failure, ValidationReport, failures_from_rejects, jsonable
from segmentation.contract.schema import TableSchema


def _failures_from_pandera(errors: SchemaErrors) -> list[Failure]:
    cases = errors.failure_cases
    out: list[Failure] = []
    cases = cases.assign(
        column=cases["column"].fillna("<table>").astype(str), check=cases["check"].astype(str)
    )
    for (column, check), group in cases.groupby(["column", "check"], sort=False):
        values = group["failure_case"].dropna().unique().tolist()[:EXAMPLES]
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
                examples=[jsonable(v) for v in values],
            )
        )
    # A column holding a value that cannot be coerced fails its dtype check, and pandera cannot compare it
    # with its bounds at all (one TypeError, no rows): keep the cause; :func:`_range_failures` adds the
    # rows that really are out of range.
    uncoercible = {f.column for f in out if f.check.startswith("coerce_dtype")}
    return [f for f in out if f.column not in uncoercible or f.check.startswith("coerce_dtype")]


def _range_failures(frame: pd.DataFrame, schema: TableSchema, columns: set[str]) -> list[Failure]:
    """The other failures of the columns pandera could not coerce, from the contract's row checks.

    The row checks read such a column value by value (a number where the text is one), as pandera
    would once coerced; their coercion failures are pandera's own (already reported) and infinities are
    not pandera's concern, so both are left out.
    """
    specs = tuple(c for c in schema.columns if c.name in columns)
    if not specs:
        return []
    narrowed = schema.model_copy(update={"columns": specs})
    checked = check_columns({c.name: frame[c.name] for c in specs}, narrowed, frame.index.to_numpy())
    rejects = checked.rejects[
        ~checked.rejects["check"].str.startswith("coerce_dtype") & (checked.rejects["check"] != "finite")
    ]
    return failures_from_rejects(rejects)


def _check_name(check: str) -> str:
    """Pandera's check name as the streamed checks write it.

    pandera names a bound after the literal it was declared with (``greater_than_or_equal_to(0)``); the
    streamed checks write the float (``greater_than_or_equal_to(0.0)``), so one failure has one name
    whichever validator found it.
    """
    bound = _BOUND.fullmatch(check)
    if bound:
        return f"{bound[1]}({float(bound[2])!r})"
    return {"field_uniqueness": "unique", "column_in_schema": "unexpected_column"}.get(check, check)


_BOUND = re.compile(
    r"(greater_than_or_equal_to|less_than_or_equal_to|greater_than|less_than)\(([-+0-9.eE]+)\)"
)


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
        found = _failures_from_pandera(exc)
        uncoercible = {f.column for f in found if f.check.startswith("coerce_dtype")}
        failures.extend(found + _range_failures(checked, schema, uncoercible))
        validated = frame
    report.failures = failures
    return (validated if report.ok else frame), report


__all__ = ["validate_frame"]
