"""Faust shell of the paper exchange: orders + market.ticks -> execution.results.

One instance over every partition of both topics: the exchange is one account (its
wallet and margin checks span every symbol), so it runs as one stateful agent
(agents/stateful.py) whose state is in parts: `venue` (the exchange, its open orders,
who holds each position, its clock), rewritten after every record, and one part per
finished order it remembers (`o:<client order id>`, to answer a resent id), written when
the order finishes and before `venue`, so a bar does not rewrite the whole memory and any
prefix of a record's part writes is a state the core continues from. In a lock-step replay the bars
of a step reach it on market.ticks before the orders they cause are placed, so a market
order fills at the next bar's open, as docs/paper-exchange.md says.
"""

from __future__ import annotations

from typing import Any

from agents.binance_exchange.config import check_venue_kind
from agents.paper_exchange.codec import order_from_avro, report_to_avro
from agents.paper_exchange.config import PaperVenueConfig
from agents.paper_exchange.core import VenueCore, known_from_json, known_to_json
from agents.runtime import AgentContext
from agents.stateful import Out, Record, StatefulAgent, register_stateful
from exchange.rules import ExchangeRules
from quantum.end_of_stream import EndOfStream
from quantum.marketdata import Kline
from topologies.declaration import EXECUTION_RESULTS, MARKET_TICKS, ORDERS

VENUE_PART = "venue"
ORDER_PART = "o:"


class VenueProcessor:
    """Records in, reports out; the core's memory changes become table parts."""

    def __init__(self, core: VenueCore) -> None:
        self.core = core

    def on_record(self, record: Record) -> list[Out]:
        if record.topic == ORDERS:
            step = self.core.on_order(order_from_avro(record.value))
        else:
            step = self.core.on_bar(Kline.from_record(record.value))
        return [Out(EXECUTION_RESULTS, report_to_avro(r), r.symbol.encode()) for r in step.reports]

    def on_end_of_stream(self, marker: EndOfStream) -> list[Out]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return self.core.snapshot()

    def dirty_parts(self) -> dict[str, Any]:
        """Finished orders remembered or forgotten (None), then the venue itself."""
        parts: dict[str, Any] = {
            ORDER_PART + coid: None if known is None else known_to_json(known)
            for coid, known in self.core.take_changes().items()
        }
        parts[VENUE_PART] = self.core.snapshot()
        return parts


def make_processor(
    rules: ExchangeRules, config: PaperVenueConfig, parts: dict[str, Any] | None
) -> VenueProcessor:
    """The processor a table's parts describe (None: a first start)."""
    parts = parts or {}
    finished = [known_from_json(v) for k, v in parts.items() if k.startswith(ORDER_PART)]
    return VenueProcessor(VenueCore.restore(rules, config, parts.get(VENUE_PART), finished))


def binding(ctx: AgentContext) -> StatefulAgent:
    """How the agent is bound to its topics; the Faust shell (`register`) and the
    in-process replay engine (quantum/app/backtest/inprocess.py) both use it."""
    config: PaperVenueConfig = ctx.config or PaperVenueConfig()
    rules = ExchangeRules.bundled()

    return StatefulAgent(
        # execution.results has no end-of-stream field: the marker stops here
        inputs={ORDERS: False, MARKET_TICKS: True},
        outputs=(),
        make=lambda parts: make_processor(rules, config, parts),
    )


def register(ctx: AgentContext) -> None:
    check_venue_kind(ctx.settings, "paper")  # QT_VENUE__KIND=binance runs binance_exchange
    register_stateful(ctx, binding(ctx))
