"""What the AI engine says: one model's `Vote`, the ensemble's `Signal` (schemas/ai.signals.avsc).

Every probability here has one meaning: the probability that the close `horizon` bars
after this bar is above this bar's close (P(up)), so votes of different models can be
pooled and a SHORT is simply P(up) < 0.5. `confidence` is the probability that the chosen
direction is right: max(P(up), 1 - P(up)).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Direction(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"
    HOLD = "HOLD"


def direction_of(probability: float, band: float) -> Direction:
    """LONG at P(up) >= 0.5 + band, SHORT at <= 0.5 - band, HOLD in between (and at 0.5)."""
    if probability > 0.5 and probability >= 0.5 + band:
        return Direction.LONG
    if probability < 0.5 and probability <= 0.5 - band:
        return Direction.SHORT
    return Direction.HOLD


@dataclass(frozen=True, slots=True)
class Vote:
    """One model's view: its direction, its P(up), and the weight the ensemble gave it."""

    model: str
    direction: Direction
    probability: float
    weight: float = 1.0

    @property
    def confidence(self) -> float:
        return max(self.probability, 1.0 - self.probability)


@dataclass(frozen=True, slots=True)
class Signal:
    """The ensemble's signal for one symbol at one closed bar.

    signal_id: `sig:<kline event id>`, so a replay or a redelivery names it the same.
    probability: calibrated P(up); raw_probability: the pooled votes before calibration.
    model: `ensemble@<bundle id>` (or `rules` when no trained model is configured).
    """

    signal_id: str
    symbol: str
    event_time_ms: int
    direction: Direction
    probability: float
    confidence: float
    raw_probability: float
    model: str
    price: Decimal
    votes: tuple[Vote, ...]
