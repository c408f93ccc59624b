"""Execution records <-> Avro dicts (orders, execution.results, trade/exit intents, ledger).

Records that mirror a model field for field go through `quantum.records`; orders (a
placement or a cancel) and ledger entries (plan and orders nested) are written out here.
Decimals travel as canonical decimal strings, enums by value, times as epoch ms. Decoding
raises `InvalidRecord` for values a schema cannot rule out (a plan that was never sized,
a decimal that is not one), so the shell dead-letters the record. Fields added to a
schema later are read with their defaults when an old writer left them out.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from agents.execution.model import (
    CancelOrder,
    EntryPlan,
    EntryState,
    ExchangeCommand,
    ExecutionResult,
    ExitIntent,
    ExitReason,
    Forget,
    IntentEntry,
    LedgerUpdate,
    OrderRecord,
    OrderRole,
    OrderSide,
    OrderStatus,
    OrderType,
    PlaceOrder,
    invalid,
)
from agents.governor.model import ReleaseReason, Side
from quantum.records import from_avro, to_avro
from quantum.schemas import format_decimal, parse_decimal

E = TypeVar("E", bound=StrEnum)


def _dec(d: dict[str, Any], name: str) -> Decimal:
    try:
        return parse_decimal(d[name])
    except (KeyError, ValueError) as exc:
        raise invalid(f"field {name!r} = {d.get(name)!r} is not a decimal") from exc


def _opt_dec(d: dict[str, Any], name: str) -> Decimal | None:
    return None if d.get(name) is None else _dec(d, name)


def _enum(cls: type[E], value: Any, name: str) -> E:
    try:
        return cls(value)
    except ValueError as exc:
        raise invalid(f"field {name!r} = {value!r} is not a {cls.__name__}") from exc


def _opt_enum(cls: type[E], d: dict[str, Any], name: str) -> E | None:
    v = d.get(name)
    return None if v is None else _enum(cls, v, name)


def _s(v: Decimal | None) -> str | None:
    return None if v is None else format_decimal(v)


def _v(e: StrEnum | None) -> str | None:
    return None if e is None else e.value


def _guard(fn: Callable[[dict[str, Any]], Any], d: dict[str, Any]) -> Any:
    try:
        return fn(d)
    except (KeyError, TypeError) as exc:
        raise invalid(f"malformed record ({type(exc).__name__}: {exc})") from exc


# ---- inputs ------------------------------------------------------------------------------------


def plan_from_avro(d: dict[str, Any]) -> EntryPlan:
    """The EntryPlan in a decoded TradeIntent; an intent not yet sized is invalid here."""
    if d.get("quantity") is None:
        raise invalid(f"trade intent {d.get('intent_id')!r} is not sized (quantity null)")
    return from_avro(EntryPlan, d)


def exit_intent_from_avro(d: dict[str, Any]) -> ExitIntent:
    if d.get("reduce_only", True) is not True:
        raise invalid(f"exit {d.get('exit_id')!r} is not reduce-only")
    return from_avro(ExitIntent, d)


def result_from_avro(d: dict[str, Any]) -> ExecutionResult:
    return from_avro(ExecutionResult, d)


def result_to_avro(r: ExecutionResult) -> dict[str, Any]:
    return to_avro(r)


# ---- orders ------------------------------------------------------------------------------------


def order_to_avro(cmd: ExchangeCommand) -> dict[str, Any]:
    """An Order record: a placement, or a cancel repeating the order as placed."""
    o = cmd.order if isinstance(cmd, CancelOrder) else cmd
    return {
        "client_order_id": o.client_order_id,
        "intent_id": o.intent_id,
        "symbol": o.symbol,
        "side": o.side.value,
        "order_type": o.order_type.value,
        "quantity": format_decimal(o.quantity),
        "price": None,
        "trigger_price": _s(o.trigger_price),
        "reduce_only": o.reduce_only,
        "event_time": cmd.event_time_ms,
        "action": "CANCEL" if isinstance(cmd, CancelOrder) else "NEW",
        "role": o.role.value,
        "exit_reason": _v(o.exit_reason),
        "leverage": o.leverage,
    }


def order_from_avro(d: dict[str, Any]) -> ExchangeCommand:
    def build(d: dict[str, Any]) -> ExchangeCommand:
        if d.get("role") is None:
            raise invalid(f"order {d.get('client_order_id')!r} has no role")
        lev = d.get("leverage")
        order = PlaceOrder(
            client_order_id=d["client_order_id"],
            intent_id=d["intent_id"],
            symbol=d["symbol"],
            side=_enum(OrderSide, d["side"], "side"),
            order_type=_enum(OrderType, d["order_type"], "order_type"),
            quantity=_dec(d, "quantity"),
            trigger_price=_opt_dec(d, "trigger_price"),
            reduce_only=bool(d["reduce_only"]),
            role=_enum(OrderRole, d["role"], "role"),
            exit_reason=_opt_enum(ExitReason, d, "exit_reason"),
            leverage=None if lev is None else int(lev),
            event_time_ms=int(d["event_time"]),
        )
        if d.get("action", "NEW") == "CANCEL":
            return CancelOrder(order, order.event_time_ms)
        return order

    return _guard(build, d)


# ---- the ledger ----------------------------------------------------------------------------------


def entry_to_avro(e: IntentEntry) -> dict[str, Any]:
    """The ExecutionLedgerEntry record of an entry (value of key `intent_id`)."""
    p = e.plan
    return {
        "intent_id": e.intent_id,
        "symbol": e.symbol,
        "state": e.state.value,
        "side": None if p is None else p.side.value,
        "quantity": None if p is None else format_decimal(p.quantity),
        "entry_price": None if p is None else format_decimal(p.entry_price),
        "stop_loss": None if p is None else _s(p.stop_loss),
        "take_profit": None if p is None else _s(p.take_profit),
        "leverage": None if p is None else p.leverage,
        "planned_at": None if p is None else p.event_time_ms,
        "granted_at": e.granted_at,
        "decided_at": e.decided_at,
        "sent_at": e.sent_at,
        "closed_at": e.closed_at,
        "close_reason": _v(e.close_reason),
        "release": _v(e.release),
        "note": e.note,
        "decisions": list(e.decisions),
        "orders": [_order_record_to_avro(r) for r in e.orders],
        "created_at": e.created_at,
        "updated_at": e.updated_at,
    }


def _order_record_to_avro(r: OrderRecord) -> dict[str, Any]:
    o = r.order
    return {
        "client_order_id": o.client_order_id,
        "role": o.role.value,
        "side": o.side.value,
        "order_type": o.order_type.value,
        "quantity": format_decimal(o.quantity),
        "trigger_price": _s(o.trigger_price),
        "reduce_only": o.reduce_only,
        "exit_reason": _v(o.exit_reason),
        "leverage": o.leverage,
        "exit_id": r.exit_id,
        "placed_at": o.event_time_ms,
        "status": r.status.value,
        "filled_quantity": format_decimal(r.filled_quantity),
        "average_price": _s(r.average_price),
        "cancel_requested": r.cancel_requested,
        "reason": r.reason,
        "updated_at": r.updated_at,
    }


def entry_from_avro(d: dict[str, Any]) -> IntentEntry:
    def build(d: dict[str, Any]) -> IntentEntry:
        plan = None
        if d.get("quantity") is not None:
            plan = EntryPlan(
                intent_id=d["intent_id"],
                symbol=d["symbol"],
                side=_enum(Side, d["side"], "side"),
                quantity=_dec(d, "quantity"),
                entry_price=_dec(d, "entry_price"),
                stop_loss=_opt_dec(d, "stop_loss"),
                take_profit=_opt_dec(d, "take_profit"),
                leverage=int(d["leverage"]),
                event_time_ms=int(d["planned_at"]),
            )
        return IntentEntry(
            intent_id=d["intent_id"],
            symbol=d["symbol"],
            state=_enum(EntryState, d["state"], "state"),
            plan=plan,
            granted_at=d.get("granted_at"),
            decided_at=d.get("decided_at"),
            sent_at=d.get("sent_at"),
            closed_at=d.get("closed_at"),
            close_reason=_opt_enum(ExitReason, d, "close_reason"),
            release=_opt_enum(ReleaseReason, d, "release"),
            note=d.get("note"),
            decisions=tuple(d["decisions"]),
            orders=tuple(
                _order_record_from_avro(d["intent_id"], d["symbol"], o) for o in d["orders"]
            ),
            created_at=int(d["created_at"]),
            updated_at=int(d["updated_at"]),
        )

    return _guard(build, d)


def _order_record_from_avro(intent_id: str, symbol: str, d: dict[str, Any]) -> OrderRecord:
    lev = d.get("leverage")
    order = PlaceOrder(
        client_order_id=d["client_order_id"],
        intent_id=intent_id,
        symbol=symbol,
        side=_enum(OrderSide, d["side"], "side"),
        order_type=_enum(OrderType, d["order_type"], "order_type"),
        quantity=_dec(d, "quantity"),
        trigger_price=_opt_dec(d, "trigger_price"),
        reduce_only=bool(d["reduce_only"]),
        role=_enum(OrderRole, d["role"], "role"),
        exit_reason=_opt_enum(ExitReason, d, "exit_reason"),
        leverage=None if lev is None else int(lev),
        event_time_ms=int(d["placed_at"]),
    )
    return OrderRecord(
        order=order,
        status=_enum(OrderStatus, d["status"], "status"),
        filled_quantity=_dec(d, "filled_quantity"),
        average_price=_opt_dec(d, "average_price"),
        cancel_requested=bool(d["cancel_requested"]),
        exit_id=d.get("exit_id"),
        reason=d.get("reason"),
        updated_at=int(d["updated_at"]),
    )


def ledger_record(update: LedgerUpdate) -> tuple[bytes, dict[str, Any] | None]:
    """(key, value) for the compacted ledger topic; value None is a tombstone."""
    if isinstance(update, Forget):
        return update.intent_id.encode(), None
    return update.intent_id.encode(), entry_to_avro(update)


def ledger_update_from_record(key: bytes, value: dict[str, Any] | None) -> LedgerUpdate:
    """The ledger update a compacted-topic record stands for (restore reads these in order)."""
    if value is None:
        return Forget(key.decode())
    entry = entry_from_avro(value)
    if entry.intent_id.encode() != key:
        raise invalid(f"ledger record keyed {key!r} holds intent {entry.intent_id!r}")
    return entry
