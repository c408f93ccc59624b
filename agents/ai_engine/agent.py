"""Faust shell of the AI engine: market.bars -> ai.signals, and SetRegime to the portfolio.

Features are per symbol, so each symbol's state is its own table part (only the symbol a
bar belongs to is written back). The regime detector runs here, on the same feature rows:
a `SetRegime` is sent before the signal that completes its bucket, so it is in the
portfolio log before any slot request that signal leads to — the same order every run.
A signal is emitted for every bar past warm-up, HOLD included: the selector closes a
window once every symbol has reported.
"""

from __future__ import annotations

from typing import Any

from agents.ai_engine.codec import signal_to_avro
from agents.ai_engine.config import AIEngineConfig
from agents.ai_engine.core import SignalEngine, SymbolState
from agents.governor.codec import COMMAND_SCHEMA, command_to_avro
from agents.regime.config import RegimeConfig
from agents.regime.core import RegimeDetector
from agents.regime.inputs import RegimeInputs
from agents.runtime import AgentContext
from agents.stateful import Out, Record, StatefulAgent, register_stateful
from quantum.end_of_stream import EndOfStream
from topologies.declaration import AI_SIGNALS, MARKET_BARS, PORTFOLIO

REGIME_PART = "__regime__"


class AIEngineProcessor:
    def __init__(
        self,
        engine: SignalEngine,
        regime: RegimeConfig | None,
        parts: dict[str, Any] | None,
    ) -> None:
        self.engine = engine
        parts = dict(parts or {})
        regime_part = parts.pop(REGIME_PART, None)
        self.states: dict[str, SymbolState] = {s: engine.restore(v) for s, v in parts.items()}
        self.regime: RegimeDetector | None = None
        self.inputs: RegimeInputs | None = None
        if regime is not None:
            self.inputs = RegimeInputs(regime, engine.config.features.names())
            self.regime = (
                RegimeDetector(regime)
                if regime_part is None
                else RegimeDetector.from_snapshot(regime, regime_part)
            )
        self._dirty: set[str] = set()

    def on_record(self, record: Record) -> list[Out]:
        symbol = record.value["symbol"]
        state = self.states.get(symbol)
        if state is None:
            state = self.states[symbol] = self.engine.new_state(symbol)
        step = self.engine.step(state, record.value)
        self._dirty.add(symbol)
        out: list[Out] = []
        if step.row is not None and self.regime is not None and self.inputs is not None:
            for command in self.regime.observe(self.inputs.observation(step.row)):
                out.append(Out(PORTFOLIO, command_to_avro(command), b"portfolio"))
            self._dirty.add(REGIME_PART)
        if step.signal is not None:
            out.append(Out(AI_SIGNALS, signal_to_avro(step.signal), symbol.encode()))
        return out

    def on_end_of_stream(self, marker: EndOfStream) -> list[Out]:
        if self.regime is None:
            return []
        self._dirty.add(REGIME_PART)
        return [
            Out(PORTFOLIO, command_to_avro(c), b"portfolio")
            for c in self.regime.flush(marker.event_time)
        ]

    def dirty_parts(self) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        for name in sorted(self._dirty):
            if name == REGIME_PART:
                if self.regime is not None:
                    parts[name] = self.regime.to_snapshot()
            else:
                parts[name] = self.states[name].to_snapshot()
        self._dirty.clear()
        return parts

    def snapshot(self) -> dict[str, Any]:
        parts = {s: st.to_snapshot() for s, st in self.states.items()}
        if self.regime is not None:
            parts[REGIME_PART] = self.regime.to_snapshot()
        return parts


def binding(ctx: AgentContext) -> StatefulAgent:
    """How the agent is bound to its topics; the Faust shell (`register`) and the
    in-process replay engine (quantum/app/backtest/inprocess.py) both use it."""
    config: AIEngineConfig = ctx.config or AIEngineConfig()
    regime: RegimeConfig = getattr(ctx.settings, "regime", None) or RegimeConfig()
    bundle = None
    if config.needs_bundle:  # torch (about 2 s to import) only when a trained model runs
        from agents.ai_engine.weights import bundle_for

        bundle = bundle_for(config)
    engine = SignalEngine(config, bundle)
    return StatefulAgent(
        inputs={MARKET_BARS: True},
        outputs=(AI_SIGNALS,),
        make=lambda parts: AIEngineProcessor(engine, regime if regime.enabled else None, parts),
        schemas={PORTFOLIO: COMMAND_SCHEMA},
    )


def register(ctx: AgentContext) -> None:
    register_stateful(ctx, binding(ctx))
