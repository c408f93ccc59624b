"""Selector values <-> Avro dicts: ai.signals, market.ticks and positions in; trade.intents
and trade.rejections out. Decimals travel as canonical decimal strings.

The shell calls these around the core; an end-of-stream marker never reaches them (the
shell checks `quantum.end_of_stream.marker_of` first and hands markers to its tracker).
"""

from __future__ import annotations

from typing import Any

from agents.selector.model import (
    Bar,
    Direction,
    PositionUpdate,
    Rejected,
    Side,
    Signal,
    TradeIntent,
)
from quantum.end_of_stream import FIELD as MARKER_FIELD
from quantum.schemas import format_decimal, parse_decimal

INTENT_SCHEMA = "trade.intents.avsc"
REJECTION_SCHEMA = "trade.rejections.avsc"


def signal_from_avro(record: dict[str, Any]) -> Signal:
    """An ai.signals value (schemas/ai.signals.avsc)."""
    return Signal(
        signal_id=record["signal_id"],
        symbol=record["symbol"],
        direction=Direction(record["direction"]),
        confidence=float(record["confidence"]),
        event_time=int(record["event_time"]),
        price=parse_decimal(record["price"]),
    )


def bar_from_avro(record: dict[str, Any]) -> Bar:
    """A market.ticks value: its close at its close time."""
    return Bar(record["symbol"], int(record["close_time"]), parse_decimal(record["close"]))


def position_from_avro(record: dict[str, Any]) -> PositionUpdate:
    """A positions value: open on its side, or flat once CLOSED."""
    side = Side(record["side"]) if record["status"] == "OPEN" else None
    return PositionUpdate(record["symbol"], side, int(record["updated_at"]))


def intent_to_avro(intent: TradeIntent) -> dict[str, Any]:
    """The trade.intents value; quantity and notional are left for the sizing stage."""
    return {
        "intent_id": intent.intent_id,
        "signal_id": intent.signal_id,
        "symbol": intent.symbol,
        "side": intent.side.value,
        "entry_price": format_decimal(intent.entry_price),
        "stop_loss": format_decimal(intent.stop_loss),
        "take_profit": format_decimal(intent.take_profit),
        "leverage": intent.leverage,
        "score": float(intent.score),
        "quantity": None,
        "notional": None,
        "event_time": intent.event_time,
        MARKER_FIELD: None,
    }


def rejected_to_avro(rejected: Rejected) -> dict[str, Any]:
    """The trade.rejections value."""
    return {
        "rejection_id": rejected.rejection_id,
        "stage": rejected.stage.value,
        "reason": rejected.reason,
        "symbol": rejected.symbol,
        "signal_id": rejected.signal_id,
        "intent_id": rejected.intent_id,
        "detail": rejected.detail,
        "event_time": rejected.event_time,
        MARKER_FIELD: None,
    }
