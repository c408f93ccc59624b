"""Governor commands and decisions <-> Avro dicts (`portfolio.avsc`, `portfolio.decisions.avsc`).

Round trips are exact: Decimal notionals travel as canonical decimal strings, enums by
their value, floats as Avro doubles. The portfolio command is a union of records, and
Resume and Clock have identical fields, so the writer must be told the branch: commands
are written in fastavro's tuple notation `(record full name, fields)`, which is also what
`AvroSerde.decode` returns for that union.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from agents.governor.model import (
    Clock,
    Command,
    Decision,
    DecisionKind,
    DenyReason,
    Halt,
    Regime,
    ReleaseReason,
    Resume,
    SetRegime,
    Side,
    SlotFilled,
    SlotRelease,
    SlotRequest,
)
from quantum.schemas import NAMESPACE, format_decimal, parse_decimal
from topologies.declaration import PORTFOLIO, PORTFOLIO_DECISIONS, TOPOLOGY

COMMAND_SCHEMA = TOPOLOGY.topic(PORTFOLIO).schema or ""
DECISION_SCHEMA = TOPOLOGY.topic(PORTFOLIO_DECISIONS).schema or ""

_COMMAND_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (SlotRequest, SlotFilled, SlotRelease, SetRegime, Halt, Resume, Clock)
}


def command_to_avro(cmd: Command) -> dict[str, Any]:
    """The PortfolioCommand record for `cmd`, branch named explicitly."""
    name = type(cmd).__name__
    if name not in _COMMAND_TYPES:
        raise TypeError(f"not a governor command: {cmd!r}")
    body: dict[str, Any] = {}
    for f in fields(cmd):
        v = getattr(cmd, f.name)
        if f.name == "notional":
            v = format_decimal(v)
        elif f.name == "score":
            v = float(v)
        elif isinstance(v, Side | Regime | ReleaseReason):
            v = v.value
        body[f.name] = v
    return {"command": (f"{NAMESPACE}.{name}", body)}


def _branch(d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    item = d["command"]
    if isinstance(item, tuple | list) and len(item) == 2:
        name, body = item
    elif isinstance(item, dict) and "-type" in item:
        name, body = item["-type"], {k: v for k, v in item.items() if k != "-type"}
    else:
        raise ValueError(f"portfolio command without a branch name: {item!r}")
    return str(name).rsplit(".", 1)[-1], body


def command_from_avro(d: dict[str, Any]) -> Command:
    """The command in a decoded PortfolioCommand record (tuple or `-type` notation)."""
    name, body = _branch(d)
    cls = _COMMAND_TYPES.get(name)
    if cls is None:
        raise ValueError(f"unknown portfolio command {name!r}")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        v = body[f.name]
        if f.name == "notional":
            v = parse_decimal(v)
        elif f.name == "score":
            v = float(v)
        elif f.name == "side":
            v = Side(v)
        elif f.name == "regime":
            v = Regime(v)
        elif cls is SlotRelease and f.name == "reason":
            v = ReleaseReason(v)
        kwargs[f.name] = v
    return cls(**kwargs)


def _opt(enum_value: Any) -> Any:
    return None if enum_value is None else enum_value.value


def decision_to_avro(decision: Decision, input_offset: int) -> dict[str, Any]:
    """The PortfolioDecision record: every Decision field plus the causing command's offset."""
    return {
        "decision_id": decision.decision_id,
        "command_id": decision.command_id,
        "kind": decision.kind.value,
        "event_time_ms": decision.event_time_ms,
        "intent_id": decision.intent_id,
        "symbol": decision.symbol,
        "side": _opt(decision.side),
        "notional": None if decision.notional is None else format_decimal(decision.notional),
        "score": None if decision.score is None else float(decision.score),
        "deny_reason": _opt(decision.deny_reason),
        "release_reason": _opt(decision.release_reason),
        "for_intent_id": decision.for_intent_id,
        "regime": decision.regime.value,
        "halted": decision.halted,
        "open_after": decision.open_after,
        "reserved_after": decision.reserved_after,
        "active_slots": decision.active_slots,
        "max_open_positions": decision.max_open_positions,
        "input_offset": input_offset,
    }


def decision_from_avro(d: dict[str, Any]) -> tuple[Decision, int]:
    """(Decision, input_offset) from a decoded PortfolioDecision record."""
    decision = Decision(
        decision_id=d["decision_id"],
        command_id=d["command_id"],
        kind=DecisionKind(d["kind"]),
        event_time_ms=d["event_time_ms"],
        intent_id=d["intent_id"],
        symbol=d["symbol"],
        side=None if d["side"] is None else Side(d["side"]),
        notional=None if d["notional"] is None else parse_decimal(d["notional"]),
        score=d["score"],
        deny_reason=None if d["deny_reason"] is None else DenyReason(d["deny_reason"]),
        release_reason=None if d["release_reason"] is None else ReleaseReason(d["release_reason"]),
        for_intent_id=d["for_intent_id"],
        regime=Regime(d["regime"]),
        halted=d["halted"],
        open_after=d["open_after"],
        reserved_after=d["reserved_after"],
        active_slots=d["active_slots"],
        max_open_positions=d["max_open_positions"],
    )
    return decision, d["input_offset"]
