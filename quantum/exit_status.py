"""Leaving a worker process at once, for its supervisor to start a new one.

Used where the environment (the registry, the broker) failed and not the record: the
record stays unacknowledged and uncommitted, and the restart reads it again, as after a
kill -9 at this point (`quantum worker --supervise`, docs/exits.md).
"""

from __future__ import annotations

import logging
import os
from typing import NoReturn

log = logging.getLogger(__name__)

EXIT_ENVIRONMENT = 75  # EX_TEMPFAIL: the environment failed; a restart goes on from the log


def exit_for_environment(who: str, why: str) -> NoReturn:
    """Log `why` and end the process with EXIT_ENVIRONMENT, without running any cleanup
    that could commit or write anything more."""
    log.critical("%s: %s; exiting (status %d)", who, why, EXIT_ENVIRONMENT)
    logging.shutdown()
    os._exit(EXIT_ENVIRONMENT)
