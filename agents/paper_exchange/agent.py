"""Faust shell of the paper exchange: orders + market.ticks -> execution.results.

One instance over every partition of both topics: the exchange is one account (its
wallet and margin checks span every symbol), so it runs as one stateful agent
(agents/stateful.py). The exchange, its open orders and its clock are the table's
snapshot; the finished orders it remembers (to answer a resent client order id) are items
of their own, so a bar does not rewrite the whole memory. In a lock-step replay the bars
of a step reach it on market.ticks before the orders they cause are placed, so a market
order fills at the next bar's open, as docs/paper-exchange.md says.
"""

from __future__ import annotations

from typing import Any

from agents.paper_exchange.codec import order_from_avro, report_to_avro
from agents.paper_exchange.config import PaperVenueConfig
from agents.paper_exchange.core import VenueCore, known_from_json, known_to_json
from agents.runtime import AgentContext
from agents.stateful import Out, Record, StatefulAgent, register_stateful
from exchange.rules import ExchangeRules
from quantum.end_of_stream import EndOfStream
from quantum.marketdata import Kline
from topologies.declaration import EXECUTION_RESULTS, MARKET_TICKS, ORDERS


class VenueProcessor:
    """Records in, reports out; the core's memory changes become table items."""

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

    def take_changes(self) -> dict[str, Any | None]:
        return {
            coid: None if known is None else known_to_json(known)
            for coid, known in self.core.take_changes().items()
        }


def register(ctx: AgentContext) -> None:
    config: PaperVenueConfig = ctx.config or PaperVenueConfig()
    rules = ExchangeRules.bundled()

    def make(snapshot: dict[str, Any] | None, items: dict[str, Any]) -> VenueProcessor:
        finished = [known_from_json(v) for v in items.values()]
        return VenueProcessor(VenueCore.restore(rules, config, snapshot, finished))

    register_stateful(
        ctx,
        StatefulAgent(
            # execution.results has no end-of-stream field: the marker stops here
            inputs={ORDERS: False, MARKET_TICKS: True},
            outputs=(),
            make_keyed=make,
        ),
    )
