"""The one streamed validator: a table checked against its contract chunk by chunk, one report at the end.

Training (:func:`segmentation.stages.load.validate_source`), batch scoring
(:func:`segmentation.scoring.score_columns`), drift (:func:`segmentation.drift.compare`) and serving
(:class:`segmentation.serving.app.SegmentAPI`) all validate through :class:`ChunkValidator`:

* every chunk goes through the contract's row checks (:func:`segmentation.contract.checks.check_columns`,
  pandas or Arrow columns), which say which rows are valid and why the others are not;
* what a chunk cannot tell is checked over the whole table: feature columns the table lacks, the ID column
  (present, never missing, unique across chunks) and columns without a single value;
* everything found goes into one :class:`~segmentation.contract.report.ValidationReport`, one failure per
  (column, check) with row counts over every chunk.

Callers differ only in what they do with invalid rows: training stops on any failure (the whole table is
its contract), scoring and drift leave the rows out and report them, serving answers 422.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from segmentation.contract.checks import CheckedColumns, ColumnData, check_columns, missing_columns
from segmentation.contract.report import Failure, ValidationReport, failures_from_rejects, merge_failures
from segmentation.contract.schema import TableSchema
from segmentation.errors import DataValidationError


class ChunkValidator:
    """Validate a table chunk by chunk against ``schema``; :meth:`report` gives every failure found.

    Args:
        schema: the contract (inferred on first training, or the model's).
        source: the table's name in the report.
        columns: the table's column names (its header), known before any row is read.
        n_rows: the table's row count when known (else the rows checked are counted).
        missing: a feature column the table lacks is fatal at once (``"raise"``: no row could be used,
            scoring, drift, serving) or reported with everything else (``"report"``: training).
        infinities: ``"reject"`` an infinite number (scoring, drift, serving), or ``"allow"`` it
            (training imputes infinities like missing values, as pandera lets them through).
        whole_table: the chunks make up a training table: also report columns that hold no value at all.

    Raises:
        DataValidationError: with ``missing="raise"``, when a feature column is absent.

    :meth:`check` and :meth:`check_columns` may be called from several threads at once.
    """

    def __init__(
        self,
        schema: TableSchema,
        *,
        source: str,
        columns: Sequence[str],
        n_rows: int | None = None,
        missing: Literal["raise", "report"] = "raise",
        infinities: Literal["reject", "allow"] = "reject",
        whole_table: bool = False,
    ) -> None:
        self.schema = schema
        self.source = source
        self.columns = [str(c) for c in columns]
        self.n_rows = n_rows
        self.infinities = infinities
        self.whole_table = whole_table
        self._rows = 0
        self._lock = threading.Lock()
        absent = missing_columns(self.columns, schema)
        self._failures: list[Failure] = [
            Failure(column=name, check="missing_required_column", count=1) for name in absent
        ]
        if absent and missing == "raise":
            raise DataValidationError(self.report())
        # The other columns are still checked, so one report lists every problem of the table.
        present = set(self.columns)
        self._checked = schema.model_copy(
            update={"columns": tuple(c for c in schema.columns if c.name in present)}
        )
        self._present = dict.fromkeys((c.name for c in self._checked.columns), 0)

    # ------------------------------------------------------------------------------------ per chunk
    def check_columns(self, columns: Mapping[str, ColumnData], rows: np.ndarray) -> CheckedColumns:
        """Check one chunk given as columns (Arrow or pandas); returns them checked, as the model reads them.

        Args:
            columns: at least the schema's feature columns the table has, equally long.
            rows: every row's global position, written into the rejects.

        Returns:
            The checked columns, the valid-row mask and the rejects lines of this chunk.
        """
        checked = check_columns(columns, self._checked, rows, source=self.source)
        if self.infinities == "allow" and len(checked.rejects):
            rejects = checked.rejects[checked.rejects["check"] != "finite"].reset_index(drop=True)
            checked.valid = ~np.isin(rows, rejects["row"].to_numpy())
            checked.rejects = rejects
        counts = self._present_counts(columns) if self.whole_table else {}
        failures = failures_from_rejects(checked.rejects) if len(checked.rejects) else []
        with self._lock:
            self._rows += len(rows)
            self._failures.extend(failures)
            for name, count in counts.items():
                self._present[name] += count
        return checked

    def check(self, chunk: pd.DataFrame) -> np.ndarray:
        """Check one chunk of rows (its index: global row positions); returns the valid-row mask."""
        columns = {str(name): chunk[name] for name in chunk.columns}
        return self.check_columns(columns, chunk.index.to_numpy()).valid

    def _present_counts(self, columns: Mapping[str, ColumnData]) -> dict[str, int]:
        counts = {}
        for name in self._present:
            column = columns[name]
            nulls = int(column.isna().sum()) if isinstance(column, pd.Series) else int(column.null_count)
            counts[name] = len(column) - nulls
        return counts

    # ------------------------------------------------------------------------------- whole table
    def check_ids(self, ids: np.ndarray | None) -> None:
        """The ID column over the whole table: present, never missing, unique."""
        column = self.schema.id_column
        if column is None:
            return
        if ids is None:
            self._add(Failure(column=column, check="missing_required_column", count=1, examples=[]))
            return
        values = pd.Series(ids)
        missing = int(values.isna().sum())
        if missing:
            self._add(Failure(column=column, check="not_nullable", count=missing, examples=[None]))
        duplicated = values[values.duplicated(keep=False) & values.notna()]
        if len(duplicated):
            examples = [str(v) for v in duplicated.unique()[:5]]
            self._add(Failure(column=column, check="unique", count=len(duplicated), examples=examples))

    def _add(self, failure: Failure) -> None:
        with self._lock:
            self._failures.append(failure)

    def report(self) -> ValidationReport:
        """Every failure found so far, one per (column, check), counts over every chunk checked."""
        n_rows = self._rows if self.n_rows is None else self.n_rows
        with self._lock:
            failures = list(self._failures)
            if self.whole_table and n_rows:
                failures.extend(
                    Failure(column=name, check="not_entirely_empty", count=n_rows, examples=[None])
                    for name, count in self._present.items()
                    if count == 0
                )
        return ValidationReport(
            source=self.source,
            n_rows=n_rows,
            n_columns=len(self.columns),
            schema_kind=self.schema.kind,
            failures=merge_failures(failures),
        )

    def raise_for_failures(self) -> ValidationReport:
        """The report, when nothing failed.

        Raises:
            DataValidationError: with the report, when anything failed.
        """
        report = self.report()
        if not report.ok:
            raise DataValidationError(report)
        return report


__all__ = ["ChunkValidator"]
