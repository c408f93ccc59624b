"""Avro dicts <-> the exit model: `positions` and `market.ticks` records in, `exit.intents`
and `risk.warnings` out.

For the shells: decode with `AvroSerde`, validate with `quantum.validation`, convert here,
call the core. Decimal strings are parsed exactly; a value that is not a finite decimal
raises InvalidRecord (the shell dead-letters the record).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agents.exits.model import Bar, ExitIntent, PositionView, Side, StopLossDefaulted
from quantum.errors import InvalidRecord
from quantum.schemas import format_decimal, parse_decimal


def _dec(value: dict[str, Any], name: str) -> Decimal:
    try:
        return parse_decimal(value[name])
    except (KeyError, ValueError) as exc:
        raise InvalidRecord("INVALID_VALUE", f"{name}: {exc}") from exc


def _opt_dec(value: dict[str, Any], name: str) -> Decimal | None:
    return None if value.get(name) is None else _dec(value, name)


def position_from_record(value: dict[str, Any], *, qty_step: Decimal | None = None) -> PositionView:
    """A `positions.avsc` record. A liquidation price of 0 means none (the schema's rule)."""
    liq = _opt_dec(value, "liquidation_price")
    return PositionView(
        intent_id=value["intent_id"],
        symbol=value["symbol"],
        side=Side(value["side"]),
        entry_price=_dec(value, "entry_price"),
        quantity=_dec(value, "quantity"),
        stop_loss=_opt_dec(value, "stop_loss"),
        opened_at_ms=int(value["opened_at"]),
        updated_at_ms=int(value["updated_at"]),
        leverage=int(value["leverage"]),
        margin=_dec(value, "isolated_margin"),
        liquidation_price=liq if liq else None,
        mark_price=_opt_dec(value, "mark_price"),
        closed=value["status"] == "CLOSED",
        qty_step=qty_step,
    )


def bar_from_record(value: dict[str, Any], *, atr: Decimal | None = None) -> Bar:
    """A `market.ticks.avsc` Kline (a closed bar)."""
    return Bar(
        symbol=value["symbol"],
        open_time_ms=int(value["open_time"]),
        close_time_ms=int(value["close_time"]),
        open=_dec(value, "open"),
        high=_dec(value, "high"),
        low=_dec(value, "low"),
        close=_dec(value, "close"),
        atr=atr,
    )


def exit_intent_to_record(intent: ExitIntent) -> dict[str, Any]:
    """The `exit.intents.avsc` record (the reference price and detail stay in the model)."""
    return {
        "exit_id": intent.exit_id,
        "symbol": intent.symbol,
        "position_intent_id": intent.position_intent_id,
        "quantity": format_decimal(intent.quantity),
        "reason": intent.reason.value,
        "reduce_only": True,
        "event_time": intent.event_time_ms,
    }


STOP_LOSS_DEFAULTED = "STOP_LOSS_DEFAULTED"


def warning_id(warning: StopLossDefaulted) -> str:
    """`<processor>:<position intent id>:STOP_LOSS_DEFAULTED`: one per position and processor."""
    return f"{warning.processor}:{warning.position_intent_id}:{STOP_LOSS_DEFAULTED}"


def stop_defaulted_to_record(warning: StopLossDefaulted) -> dict[str, Any]:
    """The `risk.warnings.avsc` record of a StopLossDefaulted warning."""
    return {
        "warning_id": warning_id(warning),
        "kind": STOP_LOSS_DEFAULTED,
        "symbol": warning.symbol,
        "position_intent_id": warning.position_intent_id,
        "processor": warning.processor,
        "stop_price": format_decimal(warning.stop_price),
        "stop_pct": format_decimal(warning.stop_pct),
        "detail": (
            f"position {warning.position_intent_id} has no stop-loss: {warning.processor} "
            f"uses its default stop {format_decimal(warning.stop_price)} "
            f"({format_decimal(warning.stop_pct * 100)} % from entry)"
        ),
        "event_time": warning.event_time_ms,
    }
