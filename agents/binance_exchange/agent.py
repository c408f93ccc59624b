"""Faust shell of the live venue: orders + binance.user-events -> Binance REST calls ->
execution.results (+ governor Halt commands and alerts).

One instance over every partition (the account is one: leverage, margin type and the
rate limits span every symbol), bound by the stateful shell (agents/stateful.py). Its
state is in parts: one per client id received (`s:<client id>`, the idempotency table,
holding the keys of the fills applied to that order beside its cumulative quantity, so
the two are always written together) and `venue` (leverage and margin type set, algo
links, holders, liquidation fill keys, fills waiting for their order, clock). Parts are
written after the record, client ids first, then `venue`; a redelivered fill whose order
part was written is recognised by its key there.

`VenueCalls` makes the core's calls on `exchange.binance.rest.BinanceFutures`. The calls
block the worker's event loop for their duration (python-binance is synchronous): run
this agent in a worker of its own (`quantum worker --agents binance_exchange`), so a
slow answer or a rate-limit pause (up to `max_wait_ms`) holds back nothing but orders.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from agents.binance_exchange.config import BinanceVenueConfig, check_venue_kind
from agents.binance_exchange.core import (
    Answer,
    BinanceVenueCore,
    is_algo,
    sent_from_json,
    sent_to_json,
)
from agents.binance_exchange.model import Call, CallKind, Done, Found, Outcome, UserEventRecord
from agents.governor.codec import COMMAND_SCHEMA, command_to_avro
from agents.paper_exchange.codec import order_from_avro, report_to_avro
from agents.runtime import AgentContext
from agents.stateful import Out, Record, StatefulAgent, register_stateful
from exchange.binance.errors import Rejected
from exchange.binance.rest import BinanceFutures, MarginType, ProtectiveKind, VenueError
from exchange.model import OrderType
from quantum.end_of_stream import EndOfStream
from quantum.records import from_avro, to_avro
from topologies.declaration import (
    BINANCE_USER_EVENTS,
    EXECUTION_RESULTS,
    ORDERS,
    PORTFOLIO,
    RISK_WARNINGS,
)

log = logging.getLogger(__name__)

VENUE_PART = "venue"
SENT_PART = "s:"
PORTFOLIO_KEY = b"portfolio"
ZERO = Decimal(0)


class VenueCalls:
    """The core's calls made on Binance: each returns the core's `Answer`."""

    def __init__(
        self,
        venue: BinanceFutures,
        config: BinanceVenueConfig,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.venue = venue
        self._cfg = config
        self._sleep = sleep

    def __call__(self, call: Call) -> Answer:
        o = call.order
        try:
            if call.kind is CallKind.WAIT:
                self._sleep(call.wait_ms / 1000)
                return Done()
            if call.kind is CallKind.LOOKUP:
                return self._lookup(call)
            if call.kind is CallKind.SET_MARGIN:
                self.venue.set_margin_type(o.symbol, MarginType(self._cfg.margin_type))
                return Done()
            if call.kind is CallKind.SET_LEVERAGE:
                assert o.leverage is not None
                self.venue.set_leverage(o.symbol, o.leverage)
                return Done()
            if call.kind is CallKind.CANCEL:
                self.venue.cancel_algo(o.client_order_id)
                return Done()
            return self._place(call)
        except VenueError as exc:
            return exc.outcome
        except ValueError as exc:  # a client id Binance would refuse: never sent
            return Rejected(0, "INVALID_CLIENT_ORDER_ID", str(exc))

    def _lookup(self, call: Call) -> Answer:
        o = call.order
        if is_algo(o):
            algo = self.venue.query_algo(o.client_order_id)
            return None if algo is None else Found(algo.status, ZERO, None, algo.algo_id)
        plain = self.venue.query_order(o.symbol, o.client_order_id)
        if plain is None:
            return None
        average = plain.average_price if plain.executed_quantity > 0 else None
        return Found(plain.status, plain.executed_quantity, average, plain.order_id)

    def _place(self, call: Call) -> Answer:
        o = call.order
        if o.order_type is OrderType.MARKET:
            placed = self.venue.place_market(
                o.symbol, str(o.side), o.quantity, o.client_order_id, reduce_only=o.reduce_only
            )
            # the answer's fill has no trade id: the user stream reports it
            return Found("NEW", ZERO, None, placed.order_id)
        assert o.trigger_price is not None
        algo = self.venue.place_protective(
            o.symbol,
            str(o.side),
            ProtectiveKind(str(o.order_type)),
            o.trigger_price,
            o.quantity,
            o.client_order_id,
            working_type=self._cfg.working_type,
        )
        return Found(algo.status, ZERO, None, algo.algo_id)


class BinanceVenueProcessor:
    """Records in, calls made, reports out; the core's table changes become parts."""

    def __init__(self, core: BinanceVenueCore, calls: Callable[[Call], Answer]) -> None:
        self.core = core
        self.calls = calls

    def on_record(self, record: Record) -> list[Out]:
        if record.topic == ORDERS:
            order = order_from_avro(record.value)
            step = self.core.start(order)
            while step.call is not None:
                step = self.core.advance(step.call, self.calls(step.call))
            outcome = step.outcome
        else:
            outcome = self.core.on_user_event(from_avro(UserEventRecord, record.value))
        return outs_of(outcome)

    def on_end_of_stream(self, marker: EndOfStream) -> list[Out]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return self.core.snapshot()

    def dirty_parts(self) -> dict[str, Any]:
        parts: dict[str, Any] = {
            SENT_PART + coid: None if sent is None else sent_to_json(sent)
            for coid, sent in self.core.take_changes().items()
        }
        parts[VENUE_PART] = self.core.snapshot()
        return parts


def outs_of(outcome: Outcome) -> list[Out]:
    """The records of an outcome: reports, then governor commands, then alerts."""
    for note in outcome.notes:
        log.info("binance_exchange: %s", note)
    outs = [Out(EXECUTION_RESULTS, report_to_avro(r), r.symbol.encode()) for r in outcome.reports]
    outs += [Out(PORTFOLIO, command_to_avro(c), PORTFOLIO_KEY) for c in outcome.commands]
    outs += [Out(RISK_WARNINGS, to_avro(a), a.symbol.encode()) for a in outcome.alerts]
    return outs


def make_processor(
    config: BinanceVenueConfig, calls: Callable[[Call], Answer], parts: dict[str, Any] | None
) -> BinanceVenueProcessor:
    """The processor a table's parts describe (None: a first start)."""
    parts = parts or {}
    sent = [sent_from_json(v) for k, v in parts.items() if k.startswith(SENT_PART)]
    core = BinanceVenueCore.restore(config, parts.get(VENUE_PART), sent)
    return BinanceVenueProcessor(core, calls)


def connect(config: BinanceVenueConfig) -> BinanceFutures:
    """The REST adapter with the keys from the environment or secrets file."""
    from exchange.binance.credentials import Credentials

    venue = BinanceFutures(
        Credentials.load(),
        mainnet=config.mainnet,
        timeout_s=config.timeout_s,
        rest_url=config.rest_url,
    )
    log.warning("binance_exchange: trading on %r", venue)
    return venue


def register(ctx: AgentContext) -> None:
    check_venue_kind(ctx.settings, "binance")
    config: BinanceVenueConfig = ctx.config or BinanceVenueConfig()
    calls = VenueCalls(connect(config), config)
    register_stateful(
        ctx,
        StatefulAgent(
            inputs={ORDERS: False, BINANCE_USER_EVENTS: False},
            outputs=(),
            make=lambda parts: make_processor(config, calls, parts),
            schemas={PORTFOLIO: COMMAND_SCHEMA},
        ),
    )
