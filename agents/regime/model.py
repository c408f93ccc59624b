"""The regime detector's input: one symbol's trend strength and volatility ratio at a bar.

A contract (plain data): the AI engine's shell builds it from a feature row
(`agents/regime/inputs.py`), the regime core classifies it, and the governor receives the
outcome as `agents.governor.model.SetRegime`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RegimeObservation:
    """trend_strength: ADX in [0, 1]; vol_ratio: short / long volatility (1.0 = steady)."""

    symbol: str
    event_time_ms: int
    trend_strength: float
    vol_ratio: float
