"""Faust shell of the selector: ai.signals (+ bars, positions) -> trade.intents, trade.rejections.

The selector is one global decision (top-N across symbols, correlation against open
positions), so it runs as one instance over every signal partition; its windows close on
the event time all signal partitions have reached (`EventTimeWatermark`), never on a wall
clock.
"""

from __future__ import annotations

from typing import Any

from agents.runtime import AgentContext
from agents.selector.codec import (
    bar_from_avro,
    intent_to_avro,
    position_from_avro,
    rejected_to_avro,
    signal_from_avro,
)
from agents.selector.config import SelectorConfig
from agents.selector.core import InvalidInput, SelectorCore
from agents.selector.model import Rejected
from agents.stateful import Out, Record, StatefulAgent, register_stateful
from quantum.end_of_stream import EndOfStream, EventTimeWatermark
from quantum.errors import InvalidRecord
from topologies.declaration import (
    AI_SIGNALS,
    MARKET_BARS,
    POSITIONS,
    TOPOLOGY,
    TRADE_INTENTS,
    TRADE_REJECTIONS,
)


class SelectorProcessor:
    def __init__(self, config: SelectorConfig, snapshot: dict[str, Any] | None) -> None:
        parts = [(AI_SIGNALS, p) for p in range(TOPOLOGY.topic(AI_SIGNALS).partitions)]
        self.watermark = EventTimeWatermark(parts)
        if snapshot is None:
            self.core = SelectorCore(config)
        else:
            self.core = SelectorCore.restore(config, snapshot["core"])
            self.watermark.restore(snapshot["watermark"])

    def on_record(self, record: Record) -> list[Out]:
        try:
            if record.topic == AI_SIGNALS:
                signal = signal_from_avro(record.value)
                wm = self.watermark.observe(AI_SIGNALS, record.partition, signal.event_time)
                return _outs(self.core.on_signal(signal, watermark=wm))
            if record.topic == MARKET_BARS:
                self.core.on_bar(bar_from_avro(record.value))
                return []
            self.core.on_position(position_from_avro(record.value))
            return []
        except InvalidInput as exc:
            raise InvalidRecord(exc.reason, str(exc)) from exc

    def on_end_of_stream(self, marker: EndOfStream) -> list[Out]:
        return _outs(self.core.on_end_of_stream())

    def snapshot(self) -> dict[str, Any]:
        return {"core": self.core.snapshot(), "watermark": self.watermark.snapshot()}


def _outs(outputs: list[Any]) -> list[Out]:
    out = []
    for o in outputs:
        if isinstance(o, Rejected):
            out.append(Out(TRADE_REJECTIONS, rejected_to_avro(o), o.symbol.encode()))
        else:
            # one partition: sizing sees intents in the selector's (deterministic) order
            out.append(Out(TRADE_INTENTS, intent_to_avro(o), o.symbol.encode()))
    return out


def binding(ctx: AgentContext) -> StatefulAgent:
    """How the agent is bound to its topics; the Faust shell (`register`) and the
    in-process replay engine (quantum/app/backtest/inprocess.py) both use it."""
    config: SelectorConfig = ctx.config or SelectorConfig()
    return StatefulAgent(
        inputs={AI_SIGNALS: True, MARKET_BARS: True, POSITIONS: False},
        outputs=(TRADE_INTENTS, TRADE_REJECTIONS),
        make=lambda snap: SelectorProcessor(config, snap),
    )


def register(ctx: AgentContext) -> None:
    register_stateful(ctx, binding(ctx))
