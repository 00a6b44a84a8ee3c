"""Exceptions the CLI maps to exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segmentation.contract.report import ValidationReport


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


class MissingExtraError(SegmentationError):
    """A command needs an optional dependency group (an extra) that this installation lacks (exit code 1).

    The message names the extra to install, e.g. ``pip install 'customer-segmentation[autoencoder]'``.
    """

    exit_code = 1

    def __init__(self, extra: str, needed_for: str, missing: str | None = None) -> None:
        self.extra = extra
        self.needed_for = needed_for
        self.missing = missing
        lacking = f" (no module named {missing!r})" if missing else ""
        super().__init__(
            f"{needed_for} needs the {extra!r} extra, which is not installed{lacking}: "
            f"pip install 'customer-segmentation[{extra}]'"
        )


@contextmanager
def requires_extra(extra: str, needed_for: str) -> Iterator[None]:
    """Turn a missing third-party module, imported in the block, into a :class:`MissingExtraError`.

    Wrap only the imports that the extra provides (``with requires_extra("train", "segment train"):``
    then ``from segmentation_workflows.train import run_training``): any package the block finds missing
    is reported as that extra, reinstalling which brings it (and its own dependencies) back. A module of
    this project that is missing is a broken installation, not a missing extra, and is raised as it is.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        root = (exc.name or "").partition(".")[0]
        if not root or root in _OWN_PACKAGES:
            raise
        raise MissingExtraError(extra, needed_for, exc.name) from exc


_OWN_PACKAGES = frozenset({"segmentation", "segmentation_workflows"})
