"""Faust shell of the harvest: positions + market.ticks -> exit.intents (+ risk.warnings).

One state per open position (table key `pos:<intent id>`, agents/exits/shell.py), so a
restarted worker resumes each ladder where it was; a step fires once because the core
counts the steps fired, and its exit id (`<position>:tp2`, ...) is the same if the record
that fired it comes again after a crash (execution ignores an exit id it has seen).
One instance reads every partition of both topics (the table has one partition).
"""

from __future__ import annotations

from typing import Any

from agents.exits.model import Bar, ExitIntent, PositionView, StopLossDefaulted
from agents.exits.shell import PositionProcessor
from agents.harvest import core
from agents.harvest.config import HarvestConfig
from agents.harvest.core import HarvestState
from agents.runtime import AgentContext
from agents.stateful import StatefulAgent, register_stateful
from exchange.rules import ExchangeRules
from topologies.declaration import MARKET_TICKS, POSITIONS


class HarvestProcessor(PositionProcessor[HarvestState]):
    def __init__(
        self,
        config: HarvestConfig,
        entries: dict[str, dict[str, Any]],
        rules: ExchangeRules | None = None,
    ) -> None:
        self.config = config
        super().__init__(
            entries,
            wait_for_stop=config.wait_for_stop,
            retention_ms=config.closed_retention_ms,
            rules=rules,
        )

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def apply_position(
        self, state: HarvestState | None, pos: PositionView
    ) -> tuple[HarvestState | None, list[ExitIntent], list[StopLossDefaulted]]:
        new, warnings = core.on_position(self.config, state, pos)
        return new, [], warnings

    def apply_bar(self, state: HarvestState, bar: Bar) -> tuple[HarvestState, list[ExitIntent]]:
        return core.on_bar(self.config, state, bar)

    def state_to_json(self, state: HarvestState) -> dict[str, Any]:
        return state.to_json()

    def state_from_json(self, value: dict[str, Any]) -> HarvestState:
        return HarvestState.from_json(value)

    def describe(self, state: HarvestState) -> tuple[str, bool, int]:
        return state.symbol, state.closed, state.updated_at_ms


def binding(ctx: AgentContext) -> StatefulAgent:
    """How the agent is bound to its topics; the Faust shell (`register`) and the
    in-process replay engine (quantum/app/backtest/inprocess.py) both use it."""
    config: HarvestConfig = ctx.config or HarvestConfig()
    rules = ExchangeRules.bundled()
    return StatefulAgent(
        # the replay's end marker comes through market.ticks; exit.intents has two
        # writers, so it is not forwarded (docs/exits.md)
        inputs={POSITIONS: False, MARKET_TICKS: True},
        outputs=(),
        make=lambda entries: HarvestProcessor(config, entries or {}, rules),
    )


def register(ctx: AgentContext) -> None:
    register_stateful(ctx, binding(ctx))
