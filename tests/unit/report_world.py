"""A small hand-made run, as the report reads it from the topics (decoded Avro values), for
the report's unit test and its screenshot test. Figures are worked out in the tests."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from quantum.app.backtest.report import RunRecords

MIN = 60_000
# 2026-01-31 22:00 UTC: the run crosses into February
START = int(datetime(2026, 1, 31, 22, tzinfo=UTC).timestamp() * 1000)
END = START + 6 * 60 * MIN  # six hours of 1-minute bars
INITIAL = Decimal(10000)
FEED = {
    "bars": 720,
    "steps": 360,
    "per_symbol": {"BTCUSDT": 360, "ETHUSDT": 360},
    "first_ms": START,
    "last_ms": END,
    "step_ms": MIN,
}


def ts(minutes: int) -> datetime:
    """An event time as fastavro decodes timestamp-millis."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=START + minutes * MIN)


def trade(tid, intent, symbol, side, qty, entry, exit_, t_in, t_out, pnl, fees, reason):
    return {
        "trade_id": tid,
        "intent_id": intent,
        "symbol": symbol,
        "side": side,
        "quantity": qty,
        "entry_price": entry,
        "exit_price": exit_,
        "entry_time": ts(t_in),
        "exit_time": ts(t_out),
        "realized_pnl": pnl,
        "fees": fees,
        "net_pnl": str(Decimal(pnl) - Decimal(fees)),
        "exit_reason": reason,
        "leverage": 10,
    }


def position(intent, symbol, t_open, t, unrealized, fees, status="OPEN"):
    return {
        "symbol": symbol,
        "intent_id": intent,
        "side": "LONG",
        "quantity": "0.1",
        "entry_price": "60000",
        "mark_price": "60000",
        "leverage": 10,
        "isolated_margin": "600",
        "liquidation_price": None,
        "stop_loss": None,
        "status": status,
        "realized_pnl": "0",
        "opened_at": ts(t_open),
        "updated_at": ts(t),
        "take_profit": None,
        "unrealized_pnl": unrealized,
        "fees": fees,
        "entry_quantity": "0.1",
        "closed_at": None,
        "exit_reason": None,
    }


def stop_order(intent, symbol, trigger, t, cid=None):
    return {
        "client_order_id": cid or f"sl-{intent}",
        "intent_id": intent,
        "symbol": symbol,
        "side": "SELL",
        "order_type": "STOP_MARKET",
        "quantity": "0.1",
        "price": None,
        "trigger_price": trigger,
        "reduce_only": True,
        "event_time": ts(t),
        "action": "NEW",
        "role": "STOP_LOSS",
        "exit_reason": "STOP_LOSS",
        "leverage": None,
    }


def world() -> RunRecords:
    """Three closed trades and one position open at the end:

    a: BTC long 0.1 @ 60,000, stop 59,100 (risk 90), out at 61,500 by TAKE_PROFIT at
       minute 60: +150 - 6 fees = +144 = 1.6 R; marked -40 (after fees) at minute 30.
    b: ETH long 1 @ 3,000, stop 2,955 (risk 45), out at 2,955 by STOP_LOSS at minute 150
       (Feb 1): -45 - 3 = -48 = -1.0667 R; a later stop (moved) must not count.
    c: BTC long 0.1 @ 61,000, no stop order, out at 61,200 by HARVEST at minute 200:
       +20 - 6 = +14, no R.
    d: ETH open from minute 300, marked +30 - 1.5 fees at minute 330.
    """
    trades = [
        trade(
            "1", "a", "BTCUSDT", "LONG", "0.1", "60000", "61500", 0, 60, "150", "6", "TAKE_PROFIT"
        ),
        trade("2", "b", "ETHUSDT", "LONG", "1", "3000", "2955", 90, 150, "-45", "3", "STOP_LOSS"),
        trade("3", "c", "BTCUSDT", "LONG", "0.1", "61000", "61200", 180, 200, "20", "6", "HARVEST"),
    ]
    trades.append(dict(trades[1]))  # a redelivered trade: counted once
    positions = [
        position("a", "BTCUSDT", 0, 30, "-37", "3"),
        position("b", "ETHUSDT", 90, 120, "-10", "1.5"),
        position("d", "ETHUSDT", 300, 330, "30", "1.5"),
    ]
    orders = [
        stop_order("a", "BTCUSDT", "59100", 1),
        stop_order("b", "ETHUSDT", "2955", 91),
        stop_order("b", "ETHUSDT", "3000", 120, cid="sl-b-moved"),
    ]
    results = [
        {"status": "REJECTED", "role": "ENTRY", "reason": "INSUFFICIENT_MARGIN: margin + fee"},
        {"status": "FILLED", "role": "ENTRY", "reason": None},
    ]
    rejections = [
        {"stage": "SELECTION", "reason": "BELOW_CONFIDENCE_FLOOR"},
        {"stage": "SIZING", "reason": "MIN_NOTIONAL"},
        {"stage": "SELECTION", "reason": "BELOW_CONFIDENCE_FLOOR"},
    ]
    return RunRecords(
        trades=trades,
        positions=positions,
        orders=orders,
        results=results,
        rejections=rejections,
        denials=Counter({"COOLDOWN": 2}),
        decisions_by_kind=Counter({"GRANTED": 4, "DENIED": 2}),
        audit={"ok": True, "max_occupied": 2, "requests": 6, "without_one_final": 0},
        dead_letters={"market.ticks.dlq": 2},
    )


def config() -> dict[str, Any]:
    return {"paper_exchange": {"initial_balance": "10000"}, "ai_engine": {"models": ["x"]}}
