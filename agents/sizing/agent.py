"""Faust shell of sizing: trade.intents -> trade.sized (the entry plan) + a SlotRequest.

One instance over the one-partition intents topic: total margin is a global cap, so the
sizes are decided in one order. The plan goes out before the request, and the execution
agent keeps a plan that arrives after its grant (agents/execution/core.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agents.governor.codec import COMMAND_SCHEMA, command_to_avro
from agents.governor.model import DecisionKind
from agents.runtime import AgentContext
from agents.selector.codec import rejected_to_avro
from agents.selector.model import Rejected, Stage
from agents.sizing.book import ExposureBook
from agents.sizing.config import SizingConfig
from agents.sizing.core import size_intent, slot_request
from agents.sizing.model import SizedIntent, TradeIntent
from agents.stateful import Out, Record, StatefulAgent, register_stateful
from exchange.rules import ExchangeRules
from quantum.end_of_stream import FIELD as MARKER_FIELD
from quantum.end_of_stream import EndOfStream
from quantum.schemas import format_decimal
from topologies.declaration import (
    PORTFOLIO,
    PORTFOLIO_DECISIONS,
    POSITIONS,
    SIZED_INTENTS,
    TRADE_INTENTS,
    TRADE_REJECTIONS,
    TRADES,
)

# Decisions that end a reservation without a position.
_SETTLED = frozenset(
    {DecisionKind.DENIED, DecisionKind.EXPIRED, DecisionKind.RELEASED, DecisionKind.FILL_REJECTED}
)


def sized_to_avro(s: SizedIntent, signal_id: str) -> dict[str, Any]:
    return {
        "intent_id": s.intent_id,
        "signal_id": signal_id,
        "symbol": s.symbol,
        "side": s.side.value,
        "entry_price": format_decimal(s.entry_price),
        "stop_loss": format_decimal(s.stop_loss),
        "take_profit": None if s.take_profit is None else format_decimal(s.take_profit),
        "leverage": s.leverage,
        "score": s.score,
        "quantity": format_decimal(s.quantity),
        "notional": format_decimal(s.notional),
        "event_time": s.event_time_ms,
        MARKER_FIELD: None,
    }


class SizingProcessor:
    def __init__(
        self, config: SizingConfig, rules: ExchangeRules, snapshot: dict[str, Any] | None
    ) -> None:
        self.config = config
        self.rules = rules
        if snapshot is None:
            self.book = ExposureBook(Decimal(config.initial_equity))
        else:
            self.book = ExposureBook.restore(snapshot)

    def on_record(self, record: Record) -> list[Out]:
        v = record.value
        if record.topic == TRADE_INTENTS:
            return self._size(v)
        if record.topic == POSITIONS:
            self.book.on_position(
                v["symbol"], v["intent_id"], v["status"], Decimal(v["isolated_margin"])
            )
        elif record.topic == TRADES:
            self.book.on_trade(v["trade_id"], Decimal(v["net_pnl"]))
        elif (
            record.topic == PORTFOLIO_DECISIONS
            and v["intent_id"]
            and DecisionKind(v["kind"]) in _SETTLED
        ):
            self.book.settle(v["intent_id"])
        return []

    def _size(self, v: dict[str, Any]) -> list[Out]:
        intent = TradeIntent.from_record(v)
        decision, _ = size_intent(intent, self.book.state(), self.rules, self.config)
        key = intent.symbol.encode()
        if isinstance(decision, SizedIntent):
            self.book.reserve(decision)
            command = command_to_avro(slot_request(decision))
            return [
                Out(SIZED_INTENTS, sized_to_avro(decision, v["signal_id"]), key),
                Out(PORTFOLIO, command, b"portfolio"),
            ]
        rejected = Rejected(
            rejection_id=f"sizing:{intent.intent_id}",
            stage=Stage.SIZING,
            reason=decision.reason.value,
            symbol=intent.symbol,
            signal_id=v["signal_id"],
            detail=decision.detail,
            event_time=intent.event_time_ms,
            intent_id=intent.intent_id,
        )
        return [Out(TRADE_REJECTIONS, rejected_to_avro(rejected), key)]

    def on_end_of_stream(self, marker: EndOfStream) -> list[Out]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return self.book.snapshot()


def binding(ctx: AgentContext) -> StatefulAgent:
    """How the agent is bound to its topics; the Faust shell (`register`) and the
    in-process replay engine (quantum/app/backtest/inprocess.py) both use it."""
    config: SizingConfig = ctx.config or SizingConfig()
    rules = ExchangeRules.bundled()
    return StatefulAgent(
        inputs={
            TRADE_INTENTS: True,
            POSITIONS: False,
            TRADES: False,
            PORTFOLIO_DECISIONS: False,
        },
        outputs=(SIZED_INTENTS, TRADE_REJECTIONS),
        make=lambda snap: SizingProcessor(config, rules, snap),
        schemas={PORTFOLIO: COMMAND_SCHEMA},
    )


def register(ctx: AgentContext) -> None:
    register_stateful(ctx, binding(ctx))
