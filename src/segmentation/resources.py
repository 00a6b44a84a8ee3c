"""Wall time, throughput and peak memory of a block of work (per-stage progress lines and benchmarks).

Peak memory is the process's peak resident set size (``VmHWM``). On Linux the peak is reset at the start
of each measured block (``/proc/self/clear_refs``), so each stage reports its own peak rather than the
process's lifetime maximum; elsewhere the lifetime maximum is reported.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_mib() -> float:
    """Resident set size now, in MiB."""
    kib = _status_kib("VmRSS")
    return kib / 1024 if kib is not None else peak_rss_mib()


def peak_rss_mib() -> float:
    """Peak resident set size since the last :func:`reset_peak_rss` (or process start), in MiB."""
    kib = _status_kib("VmHWM")
    if kib is None:
        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return usage / (1024 * 1024) if sys.platform == "darwin" else usage / 1024
    return kib / 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS counter to the current RSS (Linux); False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Measurement:
    """What :func:`measure` found; filled in when the block ends."""

    name: str
    rows: int | None = None
    seconds: float = 0.0
    peak_rss_mib: float = 0.0

    @property
    def rows_per_second(self) -> float | None:
        """Throughput, when the block said how many rows it handled."""
        return self.rows / self.seconds if self.rows and self.seconds > 0 else None

    def line(self) -> str:
        """One human line: ``preprocess: 2,000,000 rows in 4.1 s (487,000 rows/s), peak RSS 1,830 MiB``."""
        rate = self.rows_per_second
        rows = f"{self.rows:,} rows in " if self.rows else ""
        speed = f" ({rate:,.0f} rows/s)" if rate else ""
        return f"{self.name}: {rows}{self.seconds:.1f} s{speed}, peak RSS {self.peak_rss_mib:,.0f} MiB"


@contextlib.contextmanager
def measure(
    name: str, rows: int | None = None, *, log: logging.Logger | logging.LoggerAdapter[Any] | None = logger
) -> Iterator[Measurement]:
    """Time a block and record its own peak RSS; log one line at the end (``rows`` may be set inside)."""
    reset_peak_rss()
    result = Measurement(name=name, rows=rows)
    started = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - started
        result.peak_rss_mib = peak_rss_mib()
        if log is not None:
            log.info("%s", result.line())


__all__ = ["Measurement", "current_rss_mib", "measure", "peak_rss_mib", "reset_peak_rss"]
