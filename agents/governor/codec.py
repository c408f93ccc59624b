"""Governor commands and decisions <-> Avro dicts (`portfolio.avsc`, `portfolio.decisions.avsc`).

Round trips are exact: Decimal notionals travel as canonical decimal strings, enums by
their value, floats as Avro doubles. The portfolio command is a union of records, and
Resume and Clock have identical fields, so the writer must be told the branch: commands
are written in fastavro's tuple notation `(record full name, fields)`, which is also what
`AvroSerde.decode` returns for that union.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from decimal import Decimal
from enum import StrEnum
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
    short = _SHORT_NAMES.get(name) if type(name) is str else None
    return (short or str(name).rsplit(".", 1)[-1]), body


def _enum(cls: type[StrEnum]) -> Callable[[Any], Any]:
    """cls(v), through a dict for the members' own values (EnumType.__call__ is slow)."""
    by_value = {m._value_: m for m in cls}

    def convert(v: Any) -> Any:
        member = by_value.get(v) if type(v) is str else None
        return member if member is not None else cls(v)  # anything else fails as cls(v) does

    return convert


def _converters(
    cls: type, *, validated: bool
) -> tuple[type, tuple[tuple[str, Callable[[Any], Any] | None], ...]]:
    """(cls, per field in order: (name, how its Avro value becomes the model's, or None))."""
    out: list[tuple[str, Callable[[Any], Any] | None]] = []
    for f in fields(cls):
        convert: Callable[[Any], Any] | None = None
        if f.name == "notional":
            # validate() has parsed it with parse_decimal already: Decimal() gives the same
            convert = Decimal if validated else parse_decimal
        elif f.name == "score":
            convert = float
        elif f.name == "side":
            convert = _enum(Side)
        elif f.name == "regime":
            convert = _enum(Regime)
        elif cls is SlotRelease and f.name == "reason":
            convert = _enum(ReleaseReason)
        out.append((f.name, convert))
    return cls, tuple(out)


_SHORT_NAMES = {f"{NAMESPACE}.{name}": name for name in _COMMAND_TYPES}
_FROM_AVRO = {name: _converters(cls, validated=False) for name, cls in _COMMAND_TYPES.items()}
_FROM_VALIDATED = {name: _converters(cls, validated=True) for name, cls in _COMMAND_TYPES.items()}


def command_from_avro(d: dict[str, Any]) -> Command:
    """The command in a decoded PortfolioCommand record (tuple or `-type` notation)."""
    return _command(d, _FROM_AVRO)


def command_from_validated(d: dict[str, Any]) -> Command:
    """`command_from_avro` for a record `validate(COMMAND_SCHEMA, d)` has accepted: decimal
    strings are known to be finite decimals and are not parsed a second time."""
    return _command(d, _FROM_VALIDATED)


def _command(d: dict[str, Any], table: dict[str, Any]) -> Command:
    name, body = _branch(d)
    entry = table.get(name)
    if entry is None:
        raise ValueError(f"unknown portfolio command {name!r}")
    cls, converters = entry
    return cls(*[body[n] if c is None else c(body[n]) for n, c in converters])


def _opt(enum_value: Any) -> Any:
    return None if enum_value is None else enum_value._value_


def decision_to_avro(decision: Decision, input_offset: int) -> dict[str, Any]:
    """The PortfolioDecision record: every Decision field plus the causing command's offset."""
    return {
        "decision_id": decision.decision_id,
        "command_id": decision.command_id,
        "kind": decision.kind._value_,
        "event_time_ms": decision.event_time_ms,
        "intent_id": decision.intent_id,
        "symbol": decision.symbol,
        "side": _opt(decision.side),
        "notional": None if decision.notional is None else format_decimal(decision.notional),
        "score": None if decision.score is None else float(decision.score),
        "deny_reason": _opt(decision.deny_reason),
        "release_reason": _opt(decision.release_reason),
        "for_intent_id": decision.for_intent_id,
        "regime": decision.regime._value_,
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
