"""The exit guard of one open position: price take-profit and stop-loss, margin-PnL% exit,
liquidation-proximity guard, time stop; a missing stop-loss gets the default and a warning.

Pure: `(config, state, input) -> (new state, outputs)`; the state is small and JSON-safe,
one per position. Each rule closes everything that is left, once: the first rule to
trigger closes the position and the state is closed.

Every price rule is a price level, so bars and marks are evaluated the same way as in the
harvest (docs/exits.md): previous price -> open (a gap: fills at the open), then the bar's
adverse extreme, its favourable extreme, the close; the first level crossed fires, at the
level itself (or at the open after a gap). Levels at the same price: stop-loss, then
margin-PnL, then liquidation guard. A mark (from a positions record) is a single point
reached by a gap. The time stop is checked at the close, after the price rules.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from agents.exit_guard.config import ExitGuardConfig
from agents.exits.model import (
    Bar,
    ExitIntent,
    ExitReason,
    PositionView,
    Side,
    StopLossDefaulted,
    dec,
    dstr,
    sign,
)
from quantum.errors import InvalidRecord

SNAPSHOT_VERSION = 1
PROCESSOR = "exit_guard"


@dataclass(frozen=True, slots=True)
class GuardState:
    """Per-position guard state: the latest position facts and what was already evaluated."""

    intent_id: str
    symbol: str
    side: Side
    entry: Decimal
    quantity: Decimal  # open quantity as the positions topic last said
    stop: Decimal  # the position's stop-loss, or the default one
    stop_defaulted: bool
    margin: Decimal  # isolated margin; 0 = unknown (entry notional / leverage is used)
    leverage: int
    liquidation_price: Decimal | None
    opened_at_ms: int
    updated_at_ms: int  # last position record applied (older ones are redeliveries)
    last_bar_ms: int  # close time of the last bar taken in (-1: none)
    last_price: Decimal  # where the price was last seen
    closed: bool = False

    @property
    def effective_margin(self) -> Decimal:
        if self.margin > 0:
            return self.margin
        return self.entry * self.quantity / self.leverage

    def to_json(self) -> dict[str, Any]:
        return {
            "v": SNAPSHOT_VERSION,
            "intent_id": self.intent_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "entry": dstr(self.entry),
            "quantity": dstr(self.quantity),
            "stop": dstr(self.stop),
            "stop_defaulted": self.stop_defaulted,
            "margin": dstr(self.margin),
            "leverage": self.leverage,
            "liquidation_price": dstr(self.liquidation_price),
            "opened_at_ms": self.opened_at_ms,
            "updated_at_ms": self.updated_at_ms,
            "last_bar_ms": self.last_bar_ms,
            "last_price": dstr(self.last_price),
            "closed": self.closed,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GuardState:
        if d.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"guard state version {d.get('v')!r}, expected {SNAPSHOT_VERSION}")
        return cls(
            intent_id=d["intent_id"],
            symbol=d["symbol"],
            side=Side(d["side"]),
            entry=Decimal(d["entry"]),
            quantity=Decimal(d["quantity"]),
            stop=Decimal(d["stop"]),
            stop_defaulted=bool(d["stop_defaulted"]),
            margin=Decimal(d["margin"]),
            leverage=int(d["leverage"]),
            liquidation_price=dec(d["liquidation_price"]),
            opened_at_ms=int(d["opened_at_ms"]),
            updated_at_ms=int(d["updated_at_ms"]),
            last_bar_ms=int(d["last_bar_ms"]),
            last_price=Decimal(d["last_price"]),
            closed=bool(d["closed"]),
        )


def on_position(
    cfg: ExitGuardConfig, state: GuardState | None, pos: PositionView
) -> tuple[GuardState | None, list[ExitIntent], list[StopLossDefaulted]]:
    """Apply a `positions` record, then (evaluate_marks) check its mark price.

    Returns the state (None: nothing to keep), the exits fired, and a StopLossDefaulted
    warning the first time a position is seen without a stop-loss.
    """
    if not cfg.enabled:
        return None, [], []
    pos.check()
    warnings: list[StopLossDefaulted] = []
    if state is None:
        if pos.closed or pos.quantity == 0:
            return None, [], []
        stop, defaulted = _stop_of(cfg, pos)
        if defaulted:
            warnings.append(
                StopLossDefaulted(
                    pos.intent_id,
                    pos.symbol,
                    PROCESSOR,
                    stop,
                    cfg.default_stop_pct,
                    pos.updated_at_ms,
                )
            )
        state = GuardState(
            intent_id=pos.intent_id,
            symbol=pos.symbol,
            side=pos.side,
            entry=pos.entry_price,
            quantity=pos.quantity,
            stop=stop,
            stop_defaulted=defaulted,
            margin=pos.margin,
            leverage=pos.leverage,
            liquidation_price=pos.liquidation_price or None,
            opened_at_ms=pos.opened_at_ms,
            updated_at_ms=pos.updated_at_ms,
            last_bar_ms=-1,
            last_price=pos.entry_price,
        )
    else:
        if pos.intent_id != state.intent_id or pos.symbol != state.symbol:
            raise InvalidRecord(
                "INVALID_VALUE",
                f"position {pos.intent_id}/{pos.symbol} sent to the guard of "
                f"{state.intent_id}/{state.symbol}",
            )
        if state.closed or pos.updated_at_ms < state.updated_at_ms:
            return state, [], []
        if pos.closed or pos.quantity == 0:
            return (
                replace(state, quantity=Decimal(0), closed=True, updated_at_ms=pos.updated_at_ms),
                [],
                [],
            )
        stop, defaulted = _stop_of(cfg, pos)
        state = replace(
            state,
            entry=pos.entry_price,
            quantity=pos.quantity,
            stop=stop,
            stop_defaulted=defaulted,
            margin=pos.margin,
            leverage=pos.leverage,
            liquidation_price=pos.liquidation_price or None,
            updated_at_ms=pos.updated_at_ms,
        )
    exits: list[ExitIntent] = []
    if cfg.evaluate_marks and pos.mark_price is not None:
        state, exits = _evaluate(cfg, state, [pos.mark_price], pos.updated_at_ms)
    return state, exits, warnings


def on_bar(
    cfg: ExitGuardConfig, state: GuardState, bar: Bar
) -> tuple[GuardState, list[ExitIntent]]:
    """Evaluate one closed bar. Redelivered or older bars change nothing; the entry bar (opened
    before the position) is not evaluated, its extremes may predate the entry."""
    bar.check()
    if bar.symbol != state.symbol:
        raise InvalidRecord(
            "INVALID_VALUE", f"bar of {bar.symbol} sent to the guard of {state.symbol}"
        )
    if not cfg.enabled or state.closed or bar.close_time_ms <= state.last_bar_ms:
        return state, []
    exits: list[ExitIntent] = []
    if bar.open_time_ms >= state.opened_at_ms:
        lo_first = state.side is Side.LONG
        path = [bar.open, bar.low, bar.high] if lo_first else [bar.open, bar.high, bar.low]
        state, exits = _evaluate(cfg, state, [*path, bar.close], bar.close_time_ms)
    return replace(state, last_bar_ms=bar.close_time_ms, last_price=bar.close), exits


def on_halt(
    cfg: ExitGuardConfig, state: GuardState, event_time_ms: int
) -> tuple[GuardState, list[ExitIntent]]:
    """Close what is left of the position because the drawdown breaker halted the account
    (`BreakerConfig.flatten_on_halt`): reason HALT, id `<position>:halt`, at the last price
    seen. A closed position, or a disabled guard, sends nothing."""
    if not cfg.enabled or state.closed or state.quantity <= 0:
        return state, []
    return _close(
        state, "halt", ExitReason.HALT, state.last_price, event_time_ms, "drawdown breaker halt"
    )


def _stop_of(cfg: ExitGuardConfig, pos: PositionView) -> tuple[Decimal, bool]:
    if pos.stop_loss is not None:
        return pos.stop_loss, False
    return pos.entry_price * (1 - sign(pos.side) * cfg.default_stop_pct), True


def _adverse_levels(
    cfg: ExitGuardConfig, st: GuardState
) -> list[tuple[Decimal, int, str, ExitReason]]:
    """(signed level, priority at equal level, step, reason) of every live adverse rule."""
    sgn = sign(st.side)
    levels = []
    if cfg.stop_loss_enabled:
        levels.append((sgn * st.stop, 0, "sl", ExitReason.STOP_LOSS))
    if cfg.margin_loss_pct is not None and st.quantity > 0:
        # side * (p - entry) * qty <= -X * margin  <=>  s <= s_entry - X * margin / qty
        lv = sgn * st.entry - cfg.margin_loss_pct * st.effective_margin / st.quantity
        levels.append((lv, 1, "pnl", ExitReason.PNL_PCT))
    if cfg.liquidation_buffer_pct is not None and st.liquidation_price:
        y = cfg.liquidation_buffer_pct
        # long: (p - liq) / p <= y  <=>  p <= liq / (1 - y);  short: p >= liq / (1 + y)
        p = (
            st.liquidation_price / (1 - y)
            if st.side is Side.LONG
            else st.liquidation_price / (1 + y)
        )
        levels.append((sgn * p, 2, "liq", ExitReason.LIQUIDATION_GUARD))
    return levels


def _evaluate(
    cfg: ExitGuardConfig, st: GuardState, prices: list[Decimal], time_ms: int
) -> tuple[GuardState, list[ExitIntent]]:
    """Walk `prices` (the first reached by a gap) and fire the first rule crossed."""
    if st.closed or st.quantity <= 0:
        return st, []
    sgn = sign(st.side)
    adverse = _adverse_levels(cfg, st)
    s_tp = None
    if cfg.take_profit_pct is not None:
        s_tp = sgn * st.entry * (1 + sgn * cfg.take_profit_pct)
    a = sgn * st.last_price
    for k, price in enumerate(prices):
        b = sgn * price
        gap = k == 0
        hit = [lv for lv in adverse if lv[0] >= b]
        if hit:
            level, _, step, reason = min(hit, key=lambda h: (-h[0], h[1]))
            fill = b if gap or b >= a else min(level, a)
            return _close(
                st, step, reason, sgn * fill, time_ms, f"{reason.value} at {sgn * level:f}"
            )
        if s_tp is not None and b >= s_tp:
            fill = b if gap or b <= a else max(s_tp, a)
            return _close(st, "tp", ExitReason.TAKE_PROFIT, sgn * fill, time_ms, "take-profit")
        a = b
    if cfg.max_hold_ms is not None and time_ms - st.opened_at_ms >= cfg.max_hold_ms:
        held = (time_ms - st.opened_at_ms) // 1000
        return _close(
            st, "time", ExitReason.TIME_STOP, prices[-1], time_ms, f"time stop after {held} s"
        )
    return replace(st, last_price=prices[-1]), []


def _close(
    st: GuardState, step: str, reason: ExitReason, price: Decimal, time_ms: int, why: str
) -> tuple[GuardState, list[ExitIntent]]:
    intent = ExitIntent(
        exit_id=f"{st.intent_id}:{step}",
        symbol=st.symbol,
        position_intent_id=st.intent_id,
        quantity=st.quantity,
        reason=reason,
        event_time_ms=time_ms,
        reference_price=price,
        detail=why,
    )
    return replace(st, closed=True, last_price=price), [intent]
