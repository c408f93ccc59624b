"""Positions parameters."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PositionsConfig(BaseModel):
    """How fills become positions (times are event time, milliseconds).

    default_leverage: 1. Leverage assumed when no report about the position says (the
        execution results carry the entry order's leverage; old records do not). With 1,
        isolated margin is the full notional, the conservative reading.
    dedup_horizon_ms: 86400000 (24 h). Fill keys (trade ids) and closed trades are
        remembered this long after their event time, so a redelivered fill changes nothing
        and a redelivered closing fill sends its release and trade again (same ids).
        Longer than any redelivery the at-least-once consumers can cause.
    """

    model_config = ConfigDict(frozen=True)

    default_leverage: int = Field(1, ge=1)
    dedup_horizon_ms: int = Field(24 * 60 * 60 * 1000, ge=0)
