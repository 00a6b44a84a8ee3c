"""The retry rule every flow's tasks share: IO hiccups are retried; bad data, config or bundles never."""

from __future__ import annotations

from typing import Any, Final

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


IO_RETRIES: Final[dict[str, Any]] = {
    "retries": 2,
    "retry_delay_seconds": 1,
    "retry_condition_fn": retry_io_only,
}
"""The decorator options of a task that reads or writes: ``@task(name=..., **IO_RETRIES)``."""
