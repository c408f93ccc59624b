"""Positions records <-> Avro dicts (execution.results in; positions and trades out) and
the JSON form of a `SymbolBook` for the agent's table (its changelog).

Decimals are canonical decimal strings; records written before a field existed are read
with the schema's default.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agents.governor.model import Side
from agents.positions.model import (
    ClosedTrade,
    ExecutionReport,
    ExitReason,
    OrderFill,
    Position,
    PositionStatus,
    SeenFill,
    SymbolBook,
    invalid,
)
from quantum.records import from_avro, to_avro
from quantum.schemas import format_decimal

BOOK_VERSION = 1

# trades.csv: one row per closed trade (quantum backtest writes it from the trades topic).
TRADES_CSV_COLUMNS = (
    "trade_id",
    "symbol",
    "side",
    "intent_id",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "quantity",
    "leverage",
    "realized_pnl",
    "fees",
    "net_pnl",
    "exit_reason",
)


def _s(v: Decimal | None) -> str | None:
    return None if v is None else format_decimal(v)


def report_from_avro(d: dict[str, Any]) -> ExecutionReport:
    """Positions' view of a decoded execution.results record."""
    report = from_avro(ExecutionReport, d)
    if report.leverage is not None and report.leverage < 1:
        raise invalid(f"report of {report.client_order_id!r}: leverage {report.leverage} < 1")
    return report


def position_to_avro(p: Position) -> dict[str, Any]:
    """The Position record (positions.avsc), value of key `symbol`."""
    return {
        "symbol": p.symbol,
        "intent_id": p.intent_id,
        "side": p.side.value,
        "quantity": format_decimal(p.quantity),
        "entry_price": format_decimal(p.entry_price),
        "mark_price": format_decimal(p.mark_price),
        "leverage": p.leverage,
        "isolated_margin": format_decimal(p.isolated_margin),
        "liquidation_price": _s(p.liquidation_price),
        "stop_loss": _s(p.stop_loss),
        "status": p.status.value,
        "realized_pnl": format_decimal(p.realized_pnl),
        "opened_at": p.opened_at,
        "updated_at": p.updated_at,
        "take_profit": _s(p.take_profit),
        "unrealized_pnl": format_decimal(p.unrealized_pnl),
        "fees": format_decimal(p.fees),
        "entry_quantity": format_decimal(p.entry_quantity),
        "closed_at": p.closed_at,
        "exit_reason": None if p.exit_reason is None else p.exit_reason.value,
    }


def trade_to_avro(t: ClosedTrade) -> dict[str, Any]:
    """The ClosedTrade record (trades.avsc), value of key `symbol`."""
    return to_avro(t)


def trade_from_avro(d: dict[str, Any]) -> ClosedTrade:
    return from_avro(ClosedTrade, d)


def trade_csv_row(t: ClosedTrade) -> dict[str, str]:
    """One trades.csv row (columns TRADES_CSV_COLUMNS; times in epoch ms)."""
    avro = trade_to_avro(t)
    return {c: "" if avro[c] is None else str(avro[c]) for c in TRADES_CSV_COLUMNS}


# ---- the table value (JSON) -------------------------------------------------------------------


def _position_to_json(p: Position) -> dict[str, Any]:
    return {
        "symbol": p.symbol,
        "intent_id": p.intent_id,
        "side": p.side.value,
        "status": p.status.value,
        "entry_quantity": str(p.entry_quantity),
        "entry_notional": str(p.entry_notional),
        "exit_quantity": str(p.exit_quantity),
        "exit_notional": str(p.exit_notional),
        "fees": str(p.fees),
        "leverage": p.leverage,
        "mark_price": str(p.mark_price),
        "stop_loss": _s(p.stop_loss),
        "stop_order": p.stop_order,
        "take_profit": _s(p.take_profit),
        "take_profit_order": p.take_profit_order,
        "liquidation_price": _s(p.liquidation_price),
        "exit_reason": None if p.exit_reason is None else p.exit_reason.value,
        "opened_at": p.opened_at,
        "updated_at": p.updated_at,
        "marked_at": p.marked_at,
        "closed_at": p.closed_at,
    }


def _position_from_json(d: dict[str, Any]) -> Position:
    return Position(
        symbol=d["symbol"],
        intent_id=d["intent_id"],
        side=Side(d["side"]),
        status=PositionStatus(d["status"]),
        entry_quantity=Decimal(d["entry_quantity"]),
        entry_notional=Decimal(d["entry_notional"]),
        exit_quantity=Decimal(d["exit_quantity"]),
        exit_notional=Decimal(d["exit_notional"]),
        fees=Decimal(d["fees"]),
        leverage=int(d["leverage"]),
        mark_price=Decimal(d["mark_price"]),
        stop_loss=None if d["stop_loss"] is None else Decimal(d["stop_loss"]),
        stop_order=d["stop_order"],
        take_profit=None if d["take_profit"] is None else Decimal(d["take_profit"]),
        take_profit_order=d["take_profit_order"],
        liquidation_price=None
        if d["liquidation_price"] is None
        else Decimal(d["liquidation_price"]),
        exit_reason=None if d["exit_reason"] is None else ExitReason(d["exit_reason"]),
        opened_at=int(d["opened_at"]),
        updated_at=int(d["updated_at"]),
        marked_at=int(d["marked_at"]),
        closed_at=None if d["closed_at"] is None else int(d["closed_at"]),
    )


def book_to_json(b: SymbolBook) -> dict[str, Any]:
    """JSON-safe form of a book (the positions agent's table value)."""
    return {
        "v": BOOK_VERSION,
        "symbol": b.symbol,
        "position": None if b.position is None else _position_to_json(b.position),
        "seen": [[s.key, s.event_time_ms, s.closed_trade_id] for s in b.seen],
        "orders": [
            [o.client_order_id, str(o.quantity), str(o.notional), o.final] for o in b.orders
        ],
        "trades": [trade_to_avro(t) for t in b.trades],
    }


def book_from_json(d: dict[str, Any]) -> SymbolBook:
    if d.get("v") != BOOK_VERSION:
        raise ValueError(f"unsupported positions book version: {d.get('v')!r}")
    return SymbolBook(
        symbol=d["symbol"],
        position=None if d["position"] is None else _position_from_json(d["position"]),
        seen=tuple(SeenFill(k, int(t), c) for k, t, c in d["seen"]),
        orders=tuple(OrderFill(c, Decimal(q), Decimal(n), bool(f)) for c, q, n, f in d["orders"]),
        trades=tuple(trade_from_avro(t) for t in d["trades"]),
    )
