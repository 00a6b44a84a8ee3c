"""Exceptions the CLI maps to exit codes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segmentation.data.validation import ValidationReport


class SegmentationError(Exception):
    """Base class for errors reported to the user without a traceback."""

    exit_code = 1


class ConfigError(SegmentationError):
    """Unknown configuration key or invalid value (exit code 2)."""

    exit_code = 2


class DataValidationError(SegmentationError):
    """The input table failed validation; carries the full lazy report (exit code 2)."""

    exit_code = 2

    def __init__(self, report: ValidationReport) -> None:
        shown = "; ".join(
            f"{f.column}: {f.check}" + (f" (e.g. {str(f.examples[0])[:80]})" if f.examples else "")
            for f in report.failures[:5]
        )
        more = f" (+{len(report.failures) - 5} more)" if len(report.failures) > 5 else ""
        # A one-line summary for logs; the full table is report.to_text().
        super().__init__(f"{report.source}: {len(report.failures)} validation failure(s): {shown}{more}")
        self.report = report


class BundleError(SegmentationError):
    """A model bundle is missing, incomplete or fails its digest check."""

    exit_code = 3
