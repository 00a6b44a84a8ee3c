"""The retry rule every flow's tasks share: IO hiccups are retried; bad data, config or bundles never."""

from __future__ import annotations

from typing import Any

from prefect.states import State

from segmentation.errors import SegmentationError


def retry_io_only(_task: Any, _task_run: Any, state: State) -> bool:
    """Prefect ``retry_condition_fn``: retry an ``OSError``; a ``SegmentationError`` is final."""
    try:
        state.result()
    except SegmentationError:  # validation failures, bad configuration, a bundle failing its digests
        return False
    except OSError:
        return True
    except Exception:
        return False
    return False
