"""Clock parameters."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ClockConfig(BaseModel):
    """How often the governor hears the market's event time.

    every_ms: event-time spacing of the `Clock` heartbeats derived from market ticks
        (default 5000). Reservations (120 s) and rotation waits (120 s) expire on them, so
        5 s bounds how late an expiry is seen at 4 % of its timeout.
    """

    model_config = ConfigDict(frozen=True)

    every_ms: int = Field(5_000, ge=1)
