"""Faust shell of the exit guard and the drawdown breaker.

positions + market.ticks -> exit.intents (+ risk.warnings): the guard's price, margin-PnL,
liquidation-proximity and time exits, one state per open position (table key
`pos:<intent id>`, agents/exits/shell.py).

positions -> equity -> portfolio: the breaker's `Halt` when the drawdown from the peak
reaches its limit (the governor then denies new entries: reduce-only until `Resume`).
The breaker reads every `Resume` back from the portfolio topic. Its state and the equity
book are two more table keys (`breaker`, `equity`). With `flatten_on_halt`, a Halt also
closes every open position the guard follows (reason HALT).

One instance reads every partition (the table has one partition): the breaker is one
account-wide decision.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agents.exit_guard import breaker, core, equity
from agents.exit_guard.config import BreakerConfig, ExitGuardConfig
from agents.exit_guard.core import GuardState
from agents.exits.model import Bar, ExitIntent, PositionView, StopLossDefaulted
from agents.exits.shell import PositionProcessor
from agents.governor.codec import COMMAND_SCHEMA, command_from_avro, command_to_avro
from agents.governor.model import Halt, Resume
from agents.runtime import AgentContext
from agents.stateful import Out, Record, StatefulAgent, register_stateful
from quantum.errors import InvalidRecord
from quantum.schemas import parse_decimal
from topologies.declaration import MARKET_TICKS, PORTFOLIO, POSITIONS

BREAKER_KEY = "breaker"
EQUITY_KEY = "equity"
PORTFOLIO_KEY = b"portfolio"


class GuardProcessor(PositionProcessor[GuardState]):
    def __init__(
        self,
        config: ExitGuardConfig,
        breaker_config: BreakerConfig,
        entries: dict[str, dict[str, Any]],
    ) -> None:
        self.config = config
        self.breaker_config = breaker_config
        self.breaker = breaker.BreakerState()
        self.book = equity.EquityBook(breaker_config.initial_equity)
        super().__init__(
            entries,
            wait_for_stop=config.wait_for_stop,
            retention_ms=config.closed_retention_ms,
        )

    # ---- the guard core ------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def apply_position(
        self, state: GuardState | None, pos: PositionView
    ) -> tuple[GuardState | None, list[ExitIntent], list[StopLossDefaulted]]:
        return core.on_position(self.config, state, pos)

    def apply_bar(self, state: GuardState, bar: Bar) -> tuple[GuardState, list[ExitIntent]]:
        return core.on_bar(self.config, state, bar)

    def state_to_json(self, state: GuardState) -> dict[str, Any]:
        return state.to_json()

    def state_from_json(self, value: dict[str, Any]) -> GuardState:
        return GuardState.from_json(value)

    def describe(self, state: GuardState) -> tuple[str, bool, int]:
        return state.symbol, state.closed, state.updated_at_ms

    # ---- the breaker ---------------------------------------------------------------------

    def restore_extra(self, key: str, value: dict[str, Any]) -> None:
        if key == BREAKER_KEY:
            self.breaker = breaker.BreakerState.from_json(value)
        elif key == EQUITY_KEY:
            self.book = equity.EquityBook.from_json(value)
        else:
            super().restore_extra(key, value)

    def extra_snapshot(self) -> Any:
        return self.breaker, self.book

    def extra_restore(self, saved: Any) -> None:
        self.breaker, self.book = saved

    def after_position(self, value: dict[str, Any], pos: PositionView) -> list[Out]:
        """Every position record moves the equity; the breaker takes the new point."""
        try:
            realized = parse_decimal(value["realized_pnl"])
            fees = parse_decimal(value.get("fees") or "0")
            unrealized = parse_decimal(value.get("unrealized_pnl") or "0")
        except ValueError as exc:
            raise InvalidRecord("INVALID_VALUE", f"position PnL: {exc}") from exc
        self.book = equity.on_position(
            self.book,
            intent_id=pos.intent_id,
            closed=pos.closed,
            realized_pnl=realized,
            fees=fees,
            unrealized_pnl=unrealized,
            event_time_ms=pos.updated_at_ms,
            retention_ms=self.config.closed_retention_ms,
        )
        self.set_extra(EQUITY_KEY, self.book.to_json())
        point = breaker.EquityPoint(pos.updated_at_ms, self.book.equity())
        return self._breaker_step(point)

    def _breaker_step(self, point: breaker.EquityPoint) -> list[Out]:
        before = self.breaker
        self.breaker, commands = breaker.on_equity(self.breaker_config, self.breaker, point)
        if self.breaker != before:
            self.set_extra(BREAKER_KEY, self.breaker.to_json())
        outs: list[Out] = []
        for command in commands:
            outs.append(Out(PORTFOLIO, command_to_avro(command), PORTFOLIO_KEY))
            if isinstance(command, Halt) and self.breaker_config.flatten_on_halt:
                outs += self._flatten(command.event_time_ms)
        return outs

    def _flatten(self, event_time_ms: int) -> list[Out]:
        exits: list[ExitIntent] = []
        for pid, state in list(self.open_states()):
            new, closing = core.on_halt(self.config, state, event_time_ms)
            if closing:
                self.put(pid, new)
                exits += closing
        return self.exit_outs(exits)

    def on_other(self, record: Record) -> list[Out]:
        if record.topic != PORTFOLIO:
            return super().on_other(record)
        try:
            command = command_from_avro(record.value)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRecord("INVALID_VALUE", f"portfolio command: {exc}") from exc
        if isinstance(command, Resume):
            before = self.breaker
            self.breaker = breaker.on_resume(self.breaker, command)
            if self.breaker != before:
                self.set_extra(BREAKER_KEY, self.breaker.to_json())
        return []

    @property
    def account_equity(self) -> Decimal:
        """The equity the breaker last took in."""
        return self.book.equity()


def binding(ctx: AgentContext) -> StatefulAgent:
    """How the agent is bound to its topics; the Faust shell (`register`) and the
    in-process replay engine (quantum/app/backtest/inprocess.py) both use it."""
    config: ExitGuardConfig = ctx.config or ExitGuardConfig()
    breaker_config: BreakerConfig = getattr(ctx.settings, "breaker", None) or BreakerConfig()
    return StatefulAgent(
        inputs={POSITIONS: False, MARKET_TICKS: True, PORTFOLIO: False},
        outputs=(),
        make=lambda entries: GuardProcessor(config, breaker_config, entries or {}),
        schemas={PORTFOLIO: COMMAND_SCHEMA},
    )


def register(ctx: AgentContext) -> None:
    register_stateful(ctx, binding(ctx))
