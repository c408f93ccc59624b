"""The venue side on the real broker: paper exchange, execution and positions in one worker.

A scripted flow, bar by bar, waiting on committed offsets (`Quiescence`) between steps:
a sized plan and its GRANTED decision give exactly one entry order; the paper exchange
fills it at the next bar's open; execution tells the governor (SlotFilled) and places the
stop and take-profit; positions shows the position OPEN with both levels; a later bar hits
the stop: one closed trade with its exit reason and SlotRelease(POSITION_CLOSED). An
entry the exchange rejects gives SlotRelease(ORDER_REJECTED); a resent order is answered
with its status and opens nothing; poison on every input lands in that input's DLQ,
named by the agent that refused it, and every agent goes on.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from decimal import Decimal as D
from pathlib import Path

import pytest

from agents.governor.model import DecisionKind, ReleaseReason, Side, SlotFilled, SlotRelease
from quantum.app.backtest.run import WorkerProcess
from quantum.app.settings import Settings
from quantum.quiescence import Quiescence, Reader
from quantum.serde import AvroSerde
from tests.integration.venue_io import (
    Feed,
    bar,
    decision,
    read_all,
    read_commands,
    read_dlq,
    read_ledger,
    sized_plan,
)
from tests.integration.venue_io import settle as wait_settled
from topologies.apply import apply_topology
from topologies.declaration import (
    EXECUTION_LEDGER,
    EXECUTION_RESULTS,
    EXIT_INTENTS,
    MARKET_TICKS,
    ORDERS,
    PORTFOLIO_DECISIONS,
    POSITIONS,
    SIZED_INTENTS,
    TRADES,
)

pytestmark = pytest.mark.broker

AGENTS = ("paper_exchange", "execution", "positions")
GROUP = "venue-test"
READS = (ORDERS, MARKET_TICKS, EXECUTION_RESULTS, PORTFOLIO_DECISIONS, SIZED_INTENTS, EXIT_INTENTS)


def _latest(records: list[dict], symbol: str) -> dict:
    return [r for r in records if r["symbol"] == symbol][-1]


def test_grant_fill_stop_release_reject_and_poison(settings: Settings, tmp_path: Path) -> None:
    assert apply_topology(settings).ok
    worker = WorkerProcess(
        AGENTS,
        GROUP,
        settings.child_env(QT_KAFKA__COMMIT_INTERVAL_S="0.01"),
        tmp_path / "worker.log",
    )
    serde = AvroSerde.from_settings(settings)
    feed = Feed(settings, serde)
    group = f"{settings.kafka.topic_prefix}{GROUP}"
    quiet = Quiescence(settings.kafka.bootstrap, [Reader(group, tuple(map(settings.topic, READS)))])
    log = tmp_path / "worker.log"

    def settle() -> None:
        feed.flush()
        wait_settled(quiet, worker.alive, log)

    worker.start()
    try:
        # Poison first, on every input: each agent dead-letters it and goes on.
        for topic, key in (
            (ORDERS, b"BTCUSDT"),
            (MARKET_TICKS, b"BTCUSDT"),
            (PORTFOLIO_DECISIONS, b"portfolio"),
            (SIZED_INTENTS, b"BTCUSDT"),
            (EXIT_INTENTS, b"BTCUSDT"),
            (EXECUTION_RESULTS, b"BTCUSDT"),
        ):
            feed.raw(topic, b"\x00\x00\x00\x00not avro", key)
        unknown = {
            "client_order_id": "E-nobody",
            "intent_id": "nobody",
            "symbol": "SOLUSDT",
            "status": "NEW",
            "filled_quantity": "0",
            "average_price": None,
            "commission": "0",
            "commission_asset": "USDT",
            "realized_pnl": "0",
            "reason": None,
            "event_time": bar("SOLUSDT", 0, "1", "1", "1", "1").close_time,
        }
        feed.send(EXECUTION_RESULTS, unknown, b"SOLUSDT")

        # Bar 0, then a sized plan and its grant: exactly one entry order.
        b0 = bar("BTCUSDT", 0, "60000", "60050", "59950", "60000")
        feed.tick(b0)
        settle()
        feed.plan(sized_plan("i1", "BTCUSDT", Side.LONG, "0.010", "60000", b0.close_time))
        feed.decide(decision(DecisionKind.GRANTED, "i1", "BTCUSDT", b0.close_time, 1))
        feed.decide(decision(DecisionKind.GRANTED, "i1", "BTCUSDT", b0.close_time, 1))  # again
        settle()
        orders = read_all(settings, serde, ORDERS)
        assert [(o["client_order_id"], o["role"], o["action"]) for o in orders] == [
            ("E-i1", "ENTRY", "NEW")
        ]
        assert orders[0]["quantity"] == "0.010" and orders[0]["leverage"] == 10

        # Bar 1: the market order fills at the open (+1 bp, to the tick); SlotFilled;
        # stop and take-profit placed; the position is OPEN with both levels.
        feed.tick(bar("BTCUSDT", 1, "60000", "60040", "59980", "60010"))
        settle()
        results = read_all(settings, serde, EXECUTION_RESULTS)
        fills = [r for r in results if r["status"] == "FILLED"]
        assert [(r["client_order_id"], D(r["average_price"]), r["trade_id"]) for r in fills] == [
            ("E-i1", D("60006.0"), "1")
        ]
        assert Decimal(fills[0]["commission"]) == Decimal("60006.0") * Decimal("0.010") * (
            Decimal("0.0005")
        )
        assert fills[0]["leverage"] == 10 and fills[0]["role"] == "ENTRY"
        commands = read_commands(settings, serde)
        assert [type(c).__name__ for c in commands] == ["SlotFilled"]
        assert commands[0] == SlotFilled("i1:filled", "i1", "BTCUSDT", fills[0]["event_time"])
        protective = {o["client_order_id"]: o for o in read_all(settings, serde, ORDERS)[1:]}
        assert D(protective["S-i1"]["trigger_price"]) == D("59106.0")  # 60006 x 0.985, to the tick
        assert D(protective["T-i1"]["trigger_price"]) == D("61506.1")  # x 1.025, toward the entry
        position = _latest(read_all(settings, serde, POSITIONS), "BTCUSDT")
        assert position["status"] == "OPEN" and position["intent_id"] == "i1"
        assert (D(position["stop_loss"]), D(position["take_profit"])) == (D("59106"), D("61506.1"))
        assert D(position["quantity"]) == D("0.010") and position["leverage"] == 10
        liquidation = Decimal(position["liquidation_price"])
        assert Decimal(54000) < liquidation < Decimal(56000)  # ~ entry x (1 - 1/10 + mmr)

        # Bar 2 falls through the stop: it fills at its trigger, the take-profit is
        # canceled, one trade closes with STOP_LOSS and the slot is released.
        feed.tick(bar("BTCUSDT", 2, "60000", "60020", "59000", "59100"))
        settle()
        trades = read_all(settings, serde, TRADES)
        assert len(trades) == 1, trades
        trade = trades[0]
        assert (trade["intent_id"], trade["exit_reason"]) == ("i1", "STOP_LOSS")
        assert (D(trade["entry_price"]), D(trade["exit_price"])) == (D("60006"), D("59106"))
        assert Decimal(trade["realized_pnl"]) == Decimal("-9.000")
        position = _latest(read_all(settings, serde, POSITIONS), "BTCUSDT")
        assert (position["status"], position["exit_reason"]) == ("CLOSED", "STOP_LOSS")
        statuses = {
            r["client_order_id"]: r["status"] for r in read_all(settings, serde, EXECUTION_RESULTS)
        }
        assert statuses["S-i1"] == "FILLED" and statuses["T-i1"] == "CANCELED"
        releases = [c for c in read_commands(settings, serde) if isinstance(c, SlotRelease)]
        assert [(r.intent_id, r.reason, r.command_id) for r in releases] == [
            ("i1", ReleaseReason.POSITION_CLOSED, "i1:release:POSITION_CLOSED")
        ]

        # An entry the exchange refuses (ETHUSDT has no bar yet: no mark price).
        at = bar("BTCUSDT", 2, "1", "1", "1", "1").close_time
        feed.plan(sized_plan("i2", "ETHUSDT", Side.SHORT, "0.100", "3000", at))
        feed.decide(decision(DecisionKind.GRANTED, "i2", "ETHUSDT", at, 2, Side.SHORT))
        settle()
        rejected = [
            r for r in read_all(settings, serde, EXECUTION_RESULTS) if r["intent_id"] == "i2"
        ]
        assert [(r["status"], r["reason"].split(":")[0]) for r in rejected] == [
            ("REJECTED", "NO_MARK_PRICE")
        ]
        releases = [c for c in read_commands(settings, serde) if isinstance(c, SlotRelease)]
        assert (releases[-1].intent_id, releases[-1].reason) == ("i2", ReleaseReason.ORDER_REJECTED)

        # A resent entry (same client order id) is answered with its status: no new fill.
        entry = read_all(settings, serde, ORDERS)[0]
        feed.send(ORDERS, entry, b"BTCUSDT")
        settle()
        answers = [
            r
            for r in read_all(settings, serde, EXECUTION_RESULTS)
            if r["client_order_id"] == "E-i1"
        ]
        assert [(r["status"], r["last_filled_quantity"], r["trade_id"]) for r in answers[-1:]] == [
            ("FILLED", "0", None)
        ]
        assert len(read_all(settings, serde, TRADES)) == 1
        assert _latest(read_all(settings, serde, POSITIONS), "BTCUSDT")["status"] == "CLOSED"

        ledger = read_ledger(settings, serde)
        assert {i: e.state.value for i, e in ledger.items()} == {"i1": "CLOSED", "i2": "REJECTED"}
        entry_orders = Counter(
            o["client_order_id"] for o in read_all(settings, serde, ORDERS) if o["role"] == "ENTRY"
        )
        assert entry_orders == {"E-i1": 2, "E-i2": 1}  # the test's own resend is the second

        letters = {
            topic: sorted((d["agent"], d["error_class"]) for d in read_dlq(settings, serde, topic))
            for topic in READS
        }
        assert letters == {
            ORDERS: [("paper_exchange", "DecodeError")],
            MARKET_TICKS: [("paper_exchange", "DecodeError"), ("positions", "DecodeError")],
            PORTFOLIO_DECISIONS: [("execution", "DecodeError")],
            SIZED_INTENTS: [("execution", "DecodeError")],
            EXIT_INTENTS: [("execution", "DecodeError")],
            EXECUTION_RESULTS: [
                ("execution", "DecodeError"),
                ("execution", "UnknownOrder"),
                ("positions", "DecodeError"),
            ],
        }, log.read_text()[-3000:]
        assert worker.alive()
    finally:
        worker.stop()

    # Execution under a new consumer group (an empty table): the ledger comes from the
    # compacted topic, every input is read again from the start, and nothing is sent twice.
    orders_before = len(read_all(settings, serde, ORDERS))
    ledger_records = sum(1 for _ in read_all(settings, serde, EXECUTION_LEDGER))
    command_ids = {c.command_id for c in read_commands(settings, serde)}
    fresh = WorkerProcess(
        ("execution",),
        "venue-test-fresh",
        settings.child_env(QT_KAFKA__COMMIT_INTERVAL_S="0.01"),
        tmp_path / "fresh.log",
    )
    fresh_group = f"{settings.kafka.topic_prefix}venue-test-fresh"
    exec_reads = (PORTFOLIO_DECISIONS, SIZED_INTENTS, EXIT_INTENTS, EXECUTION_RESULTS)
    quiet = Quiescence(
        settings.kafka.bootstrap, [Reader(fresh_group, tuple(map(settings.topic, exec_reads)))]
    )
    fresh.start()
    try:
        wait_settled(quiet, fresh.alive, tmp_path / "fresh.log")
    finally:
        fresh.stop()
    assert "ledger of 2 entries restored from the topic" in (tmp_path / "fresh.log").read_text()
    assert len(read_all(settings, serde, ORDERS)) == orders_before
    assert sum(1 for _ in read_all(settings, serde, EXECUTION_LEDGER)) == ledger_records
    assert {c.command_id for c in read_commands(settings, serde)} == command_ids  # repeats only
