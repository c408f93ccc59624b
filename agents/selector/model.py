"""What the selector reads and writes, as plain values.

Inputs: `Signal` (from ai.signals), `Bar` (a closed kline's close, from market.ticks, for
rolling returns), `PositionUpdate` (from positions: a symbol is open on a side, or flat).
Outputs: `TradeIntent` (trade.intents) for a selected candidate, `Rejected`
(trade.rejections) for every candidate that was not, with its reason.

The shell maps Avro records to these (prices as `Decimal`, times as epoch ms).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Direction(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"
    HOLD = "HOLD"


class Side(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"


class Stage(StrEnum):
    """Which stage rejected a candidate (schemas/trade.rejections.avsc)."""

    SELECTION = "SELECTION"
    SIZING = "SIZING"


class RejectReason(StrEnum):
    """Why the selector rejected a candidate, in the order the rules are applied."""

    DUPLICATE_SIGNAL = "DUPLICATE_SIGNAL"  # this signal id was already handled
    NOT_IN_UNIVERSE = "NOT_IN_UNIVERSE"  # symbol not on the allowlist
    BELOW_CONFIDENCE_FLOOR = "BELOW_CONFIDENCE_FLOOR"  # confidence < min_confidence
    LATE_SIGNAL = "LATE_SIGNAL"  # its event-time window had already closed
    SAME_SYMBOL_IN_WINDOW = "SAME_SYMBOL_IN_WINDOW"  # a stronger signal on the symbol won
    POSITION_OPEN = "POSITION_OPEN"  # the symbol already has an open position
    PENDING_INTENT = "PENDING_INTENT"  # an intent on the symbol is still in flight
    FLAT_SELL = "FLAT_SELL"  # SHORT with no position while flat sells are skipped
    CORRELATED = "CORRELATED"  # rolling correlation >= max with an open/pending symbol
    TOP_N_EXCEEDED = "TOP_N_EXCEEDED"  # ranked below the window's top N


@dataclass(frozen=True, slots=True)
class Signal:
    """A model's call on a symbol at an event time (the bar's close time)."""

    signal_id: str
    symbol: str
    direction: Direction
    confidence: float
    event_time: int
    price: Decimal


@dataclass(frozen=True, slots=True)
class Bar:
    """A closed bar's close: enough for rolling returns. event_time = close time."""

    symbol: str
    event_time: int
    close: Decimal


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    """The positions topic's view of a symbol: open on `side`, or flat (side None)."""

    symbol: str
    side: Side | None
    event_time: int


@dataclass(frozen=True, slots=True)
class TradeIntent:
    """A selected candidate: wants to open `side` on `symbol` (schemas/trade.intents.avsc).
    Quantity and notional are the sizing stage's to fill in."""

    intent_id: str
    signal_id: str
    symbol: str
    side: Side
    entry_price: Decimal
    stop_loss: Decimal
    take_profit: Decimal
    leverage: int
    score: float
    event_time: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A candidate that did not become (or stay) an intent (schemas/trade.rejections.avsc).

    rejection_id is deterministic (signal, stage, reason), so a redelivered rejection is
    recognisable; intent_id is set by stages after selection.
    """

    rejection_id: str
    stage: Stage
    reason: str
    symbol: str
    signal_id: str
    detail: str
    event_time: int
    intent_id: str | None = None


Output = TradeIntent | Rejected

INTENT_ID_PREFIX = "qt-"


def intent_id_for(signal_id: str) -> str:
    """The intent id of a signal: deterministic, so a signal seen twice (or by a restarted
    selector) yields the same id and every later stage can deduplicate on it. 27 characters
    of [a-z0-9-]: a valid Binance client order id (^[.A-Z:/a-z0-9_-]{1,36}$) with room
    for a suffix."""
    return INTENT_ID_PREFIX + hashlib.sha256(signal_id.encode()).hexdigest()[:24]


def rejection_id_for(signal_id: str, stage: Stage, reason: str) -> str:
    return f"{signal_id}:{stage.value}:{reason}"
