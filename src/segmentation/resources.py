"""Wall time, throughput and peak memory of a block of work (per-stage progress lines and benchmarks).

A block's peak memory is exact when the block set a new high for the process (``VmHWM`` grew during it);
otherwise it is the highest resident set size sampled every 20 ms while it ran. The process's own peak
counter is never reset, so ``/usr/bin/time`` and other tools still see the true lifetime maximum.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_STATUS = Path("/proc/self/status")


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
    """Peak resident set size of the process so far, in MiB."""
    kib = _status_kib("VmHWM")
    if kib is None:
        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return usage / (1024 * 1024) if sys.platform == "darwin" else usage / 1024
    return kib / 1024


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
    """Time a block and record its peak RSS; log one line at the end (``rows`` may be set inside)."""
    result = Measurement(name=name, rows=rows)
    high_before = peak_rss_mib()
    sampled = [current_rss_mib()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            sampled.append(current_rss_mib())

    sampler = threading.Thread(target=sample, name=f"rss-{name}", daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        high_after = peak_rss_mib()
        result.peak_rss_mib = high_after if high_after > high_before else max([*sampled, current_rss_mib()])
        if log is not None:
            log.info("%s", result.line())


__all__ = ["Measurement", "current_rss_mib", "measure", "peak_rss_mib"]
