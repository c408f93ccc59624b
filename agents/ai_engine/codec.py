"""`Signal` <-> the `ai.signals` Avro record (schemas/ai.signals.avsc)."""

from __future__ import annotations

from typing import Any

from agents.ai_engine.model import Direction, Signal, Vote
from quantum.end_of_stream import FIELD as MARKER_FIELD
from quantum.schemas import format_decimal, parse_decimal

SIGNAL_SCHEMA = "ai.signals.avsc"


def signal_to_avro(signal: Signal) -> dict[str, Any]:
    return {
        "signal_id": signal.signal_id,
        "symbol": signal.symbol,
        "event_time": signal.event_time_ms,
        "direction": signal.direction.value,
        "confidence": signal.confidence,
        "model": signal.model,
        "price": format_decimal(signal.price),
        "probability": signal.probability,
        "raw_probability": signal.raw_probability,
        "votes": [
            {
                "model": v.model,
                "direction": v.direction.value,
                "probability": v.probability,
                "weight": v.weight,
            }
            for v in signal.votes
        ],
        MARKER_FIELD: None,
    }


def signal_from_avro(value: dict[str, Any]) -> Signal:
    """A decoded (and validated) record; records from before `probability` get its default."""
    return Signal(
        signal_id=value["signal_id"],
        symbol=value["symbol"],
        event_time_ms=value["event_time"],
        direction=Direction(value["direction"]),
        probability=value["probability"],
        confidence=value["confidence"],
        raw_probability=value["raw_probability"],
        model=value["model"],
        price=parse_decimal(value["price"]),
        votes=tuple(
            Vote(v["model"], Direction(v["direction"]), v["probability"], v["weight"])
            for v in value["votes"]
        ),
    )
