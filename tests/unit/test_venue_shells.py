"""The three venue processors (execution, paper exchange, positions) wired by an in-memory
bus, no broker: every output is checked against its topic's schema and validation, then
delivered to the processors that read that topic, as the Faust shells would.

Shows the shells agree with each other on the records (orders, results, commands), that
execution writes the ledger before the order and the order before the command, that a
restarted execution (rebuilt from its table items) resends what it had as SENT and the
paper exchange answers instead of placing it again, and that positions restored from its
items and marks continues the same.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from agents.execution.agent import (
    ExecutionProcessor,
    decision_from_record,
)
from agents.execution.agent import processor_from_parts as execution_from_parts
from agents.execution.codec import entry_from_avro
from agents.execution.config import ExecutionConfig
from agents.execution.core import ExecutionCore
from agents.execution.ledger import Ledger
from agents.execution.model import UnknownDecisionKind
from agents.governor.codec import COMMAND_SCHEMA, command_from_avro
from agents.governor.model import DecisionKind, ReleaseReason, Side, SlotFilled, SlotRelease
from agents.paper_exchange.agent import VenueProcessor, make_processor
from agents.paper_exchange.config import PaperVenueConfig
from agents.paper_exchange.core import VenueCore
from agents.positions.agent import PositionsProcessor
from agents.positions.agent import processor_from_parts as positions_from_parts
from agents.positions.core import PositionsCore
from agents.positions.liquidation import liquidation_from_rules
from agents.stateful import Out, Record
from exchange.rules import ExchangeRules
from quantum.schemas import load_schema
from quantum.validation import validate
from tests.integration.venue_io import MINUTE, T0, bar, decision, sized_plan
from topologies.declaration import (
    EXECUTION_LEDGER,
    EXECUTION_RESULTS,
    MARKET_TICKS,
    ORDERS,
    PORTFOLIO,
    PORTFOLIO_DECISIONS,
    SIZED_INTENTS,
    TOPOLOGY,
)

D = Decimal
RULES = ExchangeRules.bundled()
TICKS = {s: RULES[s].price_filter.tick for s in RULES}


def schema_of(topic: str) -> str:
    return COMMAND_SCHEMA if topic == PORTFOLIO else TOPOLOGY.topic(topic).schema or ""


_PARSED: dict[str, Any] = {}


def checked(out: Out) -> None:
    """The record fits its topic's schema and passes the kit's validation."""
    if out.value is None:
        assert out.topic == EXECUTION_LEDGER  # tombstones only on the compacted ledger
        return
    name = schema_of(out.topic)
    if name not in _PARSED:
        _PARSED[name] = fastavro.parse_schema(load_schema(name))
    assert fastavro.validate(out.value, _PARSED[name], raise_errors=True)
    validate(name, out.value)


@dataclass
class Bus:
    """Routes outputs to the processors reading their topic, in the order produced."""

    execution: ExecutionProcessor
    venue: VenueProcessor
    positions: PositionsProcessor
    log: list[Out] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"execution": {}, "venue": {}, "positions": {}}
    )

    def persist(self) -> None:
        """What the shell writes after each record: every processor's dirty parts
        (None deletes), through JSON like the table's changelog."""
        for name in self.tables:
            processor = getattr(self, name)
            for part, value in processor.dirty_parts().items():
                if value is None:
                    self.tables[name].pop(part, None)
                else:
                    self.tables[name][part] = json.loads(json.dumps(value))

    def readers(self, topic: str) -> list[Any]:
        return {
            ORDERS: [self.venue],
            MARKET_TICKS: [self.venue, self.positions],
            EXECUTION_RESULTS: [self.execution, self.positions],
            PORTFOLIO_DECISIONS: [self.execution],
            SIZED_INTENTS: [self.execution],
        }.get(topic, [])

    def put(self, topic: str, value: dict[str, Any], key: bytes = b"k") -> list[Out]:
        """Deliver one input and everything it causes; returns every output, in order."""
        produced: list[Out] = []
        queue = deque([Out(topic, value, key)])
        while queue:
            out = queue.popleft()
            checked(out)
            offset = self.offsets.get(out.topic, 0)
            self.offsets[out.topic] = offset + 1
            for reader in self.readers(out.topic):
                assert out.value is not None
                new = reader.on_record(Record(out.topic, 0, offset, out.key, out.value, None))
                produced += new
                queue.extend(new)
            self.persist()
        self.log += produced
        return produced


def fresh() -> Bus:
    core = ExecutionCore(ExecutionConfig(), TICKS)
    return Bus(
        ExecutionProcessor(core, Ledger(), None),
        VenueProcessor(VenueCore(RULES)),
        PositionsProcessor(PositionsCore(None, liquidation_from_rules(RULES)), {}, None),
    )


def kinds(outs: list[Out]) -> list[str]:
    return [o.topic for o in outs]


def commands(outs: list[Out]) -> list[Any]:
    return [command_from_avro(o.value) for o in outs if o.topic == PORTFOLIO and o.value]


def test_grant_to_fill_to_stop_through_the_three_shells() -> None:
    bus = fresh()
    b0 = bar("BTCUSDT", 0, "60000", "60050", "59950", "60000")
    bus.put(MARKET_TICKS, b0.to_record())
    bus.put(SIZED_INTENTS, sized_plan("i1", "BTCUSDT", Side.LONG, "0.010", "60000", b0.close_time))
    outs = bus.put(
        PORTFOLIO_DECISIONS, decision(DecisionKind.GRANTED, "i1", "BTCUSDT", b0.close_time, 1)
    )
    # write-ahead: the ledger record, then the order; the venue's ack; its ledger update
    assert kinds(outs) == [EXECUTION_LEDGER, ORDERS, EXECUTION_RESULTS, EXECUTION_LEDGER]
    assert entry_from_avro(outs[0].value).state.value == "SENT"
    assert outs[1].value["client_order_id"] == "E-i1"

    outs = bus.put(MARKET_TICKS, bar("BTCUSDT", 1, "60000", "60040", "59980", "60010").to_record())
    fill = next(o for o in outs if o.topic == EXECUTION_RESULTS)
    assert fill.value["status"] == "FILLED"
    after_fill = outs[outs.index(fill) + 1 :]
    # execution: ledger, then the stop and take-profit, then SlotFilled; positions: OPEN
    exec_outs = [o for o in after_fill if o.topic in (EXECUTION_LEDGER, ORDERS, PORTFOLIO)][:4]
    assert kinds(exec_outs) == [EXECUTION_LEDGER, ORDERS, ORDERS, PORTFOLIO]
    assert commands(exec_outs) == [SlotFilled("i1:filled", "i1", "BTCUSDT", MINUTE + T0)]
    position = [o.value for o in bus.log if o.topic == "positions"][-1]
    assert (position["status"], D(position["stop_loss"]), D(position["take_profit"])) == (
        "OPEN", D("59106.0"), D("61506.1"),
    )  # fmt: skip
    assert position["liquidation_price"] is not None

    outs = bus.put(MARKET_TICKS, bar("BTCUSDT", 2, "60000", "60020", "59000", "59100").to_record())
    trades = [o.value for o in outs if o.topic == "trades"]
    assert [(t["intent_id"], t["exit_reason"]) for t in trades] == [("i1", "STOP_LOSS")]
    releases = [c for c in commands(outs) if isinstance(c, SlotRelease)]
    assert [(r.intent_id, r.reason) for r in releases] == [("i1", ReleaseReason.POSITION_CLOSED)]
    assert bus.execution.ledger.get("i1").state.value == "CLOSED"

    # A day and more later (decision time), the closed entry is pruned: a tombstone on the
    # compacted ledger topic, and its table item deleted.
    later = T0 + 25 * 60 * MINUTE
    outs = bus.put(PORTFOLIO_DECISIONS, decision(DecisionKind.GRANTED, "i9", "ETHUSDT", later, 9))
    assert [(o.topic, o.key, o.value) for o in outs if o.value is None] == [
        (EXECUTION_LEDGER, b"i1", None)
    ]
    assert "e:i1" not in bus.tables["execution"] and "i1" not in bus.execution.ledger
    assert "e:i9" in bus.tables["execution"]


def test_a_restarted_execution_resends_what_was_sent_and_the_venue_answers() -> None:
    bus = fresh()
    b0 = bar("BTCUSDT", 0, "60000", "60050", "59950", "60000")
    bus.put(MARKET_TICKS, b0.to_record())
    bus.put(SIZED_INTENTS, sized_plan("i1", "BTCUSDT", Side.LONG, "0.010", "60000", b0.close_time))
    # The grant: its ledger record and its order go out, the venue places the order, and
    # execution dies before it reads the ack: its table has the entry as SENT.
    grant = decision(DecisionKind.GRANTED, "i1", "BTCUSDT", b0.close_time, 1)
    step = bus.execution.on_record(Record(PORTFOLIO_DECISIONS, 0, 0, b"p", grant, None))
    assert kinds(step) == [EXECUTION_LEDGER, ORDERS]
    bus.persist()
    assert bus.tables["execution"]["e:i1"]["state"] == "SENT"
    bus.venue.on_record(Record(ORDERS, 0, 0, b"BTCUSDT", step[1].value, None))
    bus.persist()
    bus.log += step
    # The restart, from the table's parts: the SENT entry order goes out again first.
    core = ExecutionCore(ExecutionConfig(), TICKS)
    bus.execution = execution_from_parts(core, bus.tables["execution"])
    outs = bus.put(MARKET_TICKS, bar("BTCUSDT", 1, "60000", "60040", "59980", "60010").to_record())
    entries = [o.value for o in bus.log if o.topic == ORDERS and o.value["role"] == "ENTRY"]
    assert [e["client_order_id"] for e in entries] == ["E-i1", "E-i1"]  # sent, then resent
    fills = [o.value for o in outs if o.topic == EXECUTION_RESULTS and o.value["trade_id"]]
    assert [f["client_order_id"] for f in fills] == ["E-i1"]  # one fill, not two
    answers = [
        o.value
        for o in outs
        if o.topic == EXECUTION_RESULTS and o.value["last_filled_quantity"] == "0"
    ]
    assert [(a["client_order_id"], a["status"]) for a in answers][:1] == [("E-i1", "FILLED")]
    assert len(bus.venue.core.exchange.positions()) == 1
    assert bus.execution.ledger.get("i1").state.value == "FILLED"
    assert [type(c).__name__ for c in commands(bus.log)].count("SlotFilled") >= 1


def test_restored_positions_and_venue_continue_the_same() -> None:
    def run(restart_after: int | None) -> list[Out]:
        bus = fresh()
        bars = [
            bar("BTCUSDT", 0, "60000", "60050", "59950", "60000"),
            bar("BTCUSDT", 1, "60000", "60040", "59980", "60010"),
            bar("BTCUSDT", 2, "60010", "60300", "59990", "60200"),
            bar("BTCUSDT", 3, "60200", "60250", "59000", "59100"),
        ]
        outs = []
        for i, b in enumerate(bars):
            outs += bus.put(MARKET_TICKS, b.to_record())
            if i == 0:
                plan = sized_plan("i1", "BTCUSDT", Side.LONG, "0.010", "60000", b.close_time)
                outs += bus.put(SIZED_INTENTS, plan)
                g = decision(DecisionKind.GRANTED, "i1", "BTCUSDT", b.close_time, 1)
                outs += bus.put(PORTFOLIO_DECISIONS, g)
            if restart_after == i:
                core = PositionsCore(None, liquidation_from_rules(RULES))
                bus.positions = positions_from_parts(core, bus.tables["positions"])
                bus.venue = make_processor(RULES, PaperVenueConfig(), bus.tables["venue"])
                execution = ExecutionCore(ExecutionConfig(), TICKS)
                bus.execution = execution_from_parts(execution, bus.tables["execution"])
        return outs

    straight = run(None)
    for cut in range(4):
        assert run(cut) == straight


def test_unknown_decision_kinds_travel_as_strings_to_the_table() -> None:
    record = decision(DecisionKind.GRANTED, "i1", "BTCUSDT", T0, 1)
    assert decision_from_record({**record, "kind": "FILL_SYMBOL_HELD"}).kind == "FILL_SYMBOL_HELD"
    core = ExecutionCore()
    with pytest.raises(UnknownDecisionKind):
        core.on_decision(decision_from_record({**record, "kind": "NO_SUCH_KIND"}), Ledger())
