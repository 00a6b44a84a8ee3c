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
        super().__init__(report.to_text())
        self.report = report


class BundleError(SegmentationError):
    """A model bundle is missing, incomplete or fails its digest check."""

    exit_code = 3
