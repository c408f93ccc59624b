"""Waiting for a condition that another process makes true, with a deadline.

Used where the thing waited for has no event to subscribe to (a consumer group's
committed offset, a topic's end): poll it, and fail loudly when the deadline passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str, *, poll_s: float = 0.1
) -> float:
    """Poll `predicate` until true; TimeoutError naming `what` at the deadline.

    Returns the seconds waited.
    """
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)
    return time.monotonic() - start
