"""Per-stage wall time, rows/s and peak memory."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from segmentation.resources import current_rss_mib, measure, peak_rss_mib


def test_a_block_that_allocates_reports_the_memory_and_a_line(caplog: pytest.LogCaptureFixture) -> None:
    before = current_rss_mib()
    with caplog.at_level(logging.INFO, logger="segmentation.resources"), measure("alloc", rows=1000) as meter:
        block = np.ones((64, 1024, 1024), dtype=np.uint8)  # 64 MiB, touched
        block[:, :, 0] = 2
    assert meter.seconds > 0
    assert meter.peak_rss_mib >= before + 50
    assert peak_rss_mib() >= meter.peak_rss_mib - 1
    assert "alloc: 1,000 rows in" in caplog.text
    assert "peak RSS" in caplog.text
    del block


def test_rows_can_be_set_inside_the_block() -> None:
    with measure("count", log=None) as meter:
        meter.rows = 5
    assert meter.rows_per_second is not None
    assert meter.line().startswith("count: 5 rows in")
