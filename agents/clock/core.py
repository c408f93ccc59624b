"""When to send the governor a `Clock`: once per `every_ms` of market event time.

Reservations and rotation waits expire in event time, so a quiet portfolio topic
would never expire anything; ticks keep arriving, and their close times are the
clock. The heartbeat's command id names its time bucket, so copies sent by several
agent instances (one per tick partition) or after a restart are one command to the
governor, which ignores repeated command ids.
"""

from __future__ import annotations

from agents.governor.model import Clock


def heartbeat(
    last_bucket: int | None, event_time_ms: int, every_ms: int
) -> tuple[int | None, Clock | None]:
    """(new last bucket, the Clock to send or None) for one tick's event time."""
    if every_ms <= 0:
        raise ValueError(f"every_ms must be positive, got {every_ms}")
    bucket = event_time_ms // every_ms
    if last_bucket is not None and bucket <= last_bucket:
        return last_bucket, None
    at = bucket * every_ms
    return bucket, Clock(command_id=f"clock:{at}", event_time_ms=at)
