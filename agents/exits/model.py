"""What exit processors read (positions, closed bars) and write (reduce-only exit intents).

This is the `exit.intents` contract, as `agents/governor/model.py` is the portfolio's:
the harvest ladder and the exit guard both import it, neither imports the other, and
`ExitReason` mirrors the Avro enum of `schemas/exit.intents.avsc` symbol for symbol
(a unit test keeps them equal). Prices and quantities are exact `Decimal`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from agents.governor.model import Side
from quantum.errors import InvalidRecord


class ExitReason(StrEnum):
    """Why an exit fired; the order is the Avro enum's (new symbols only ever at the end)."""

    STOP_LOSS = "STOP_LOSS"  # price crossed the initial stop (harvest emergency exit, guard SL)
    PNL_PCT = "PNL_PCT"  # unrealized PnL reached -X % of the position's margin
    LIQUIDATION_GUARD = "LIQUIDATION_GUARD"  # price came within Y % of the liquidation price
    HARVEST = "HARVEST"  # a profit-side ladder step (partial take-profit at +kR)
    TAKE_PROFIT = "TAKE_PROFIT"  # the guard's price take-profit
    ROTATE_OUT = "ROTATE_OUT"  # the governor rotated the position out
    HALT = "HALT"  # closed because of the drawdown circuit breaker
    RECONCILE = "RECONCILE"  # exchange reconciliation found a mismatch
    BREAK_EVEN = "BREAK_EVEN"  # price came back to the stop moved to entry after +0.5R
    TRAILING_STOP = "TRAILING_STOP"  # price fell back by the trailing distance from its peak
    PARTIAL_STOP = "PARTIAL_STOP"  # a loss-side ladder step (symmetric mode, partial stop at -kR)
    TIME_STOP = "TIME_STOP"  # the position was open longer than the time stop allows
    OTHER = "OTHER"  # readers' fallback for a reason newer than their schema; never written
    FILL_REJECTED = "FILL_REJECTED"  # the governor found no slot for the fill: close at once
    EXCESS_FILL = "EXCESS_FILL"  # a late fill on a symbol another intent holds: reduce it
    LIQUIDATION = "LIQUIDATION"  # the exchange liquidated the position


@dataclass(frozen=True, slots=True)
class PositionView:
    """What the exit processors need of a `positions` record (see `agents.exits.codec`).

    `quantity` is what is still open; `closed` is true once it is fully exited.
    `risk` is R in price units; None means |entry_price - stop_loss| (the audit's entry
    risk). `qty_step` is the exchange's lot step: when set, ladder steps round down to it.
    `margin` is the position's isolated margin (0: unknown or cross, then notional at
    entry / leverage is used).
    """

    intent_id: str
    symbol: str
    side: Side
    entry_price: Decimal
    quantity: Decimal
    stop_loss: Decimal | None
    opened_at_ms: int
    updated_at_ms: int
    leverage: int = 1
    margin: Decimal = Decimal(0)
    liquidation_price: Decimal | None = None
    mark_price: Decimal | None = None
    closed: bool = False
    risk: Decimal | None = None
    qty_step: Decimal | None = None

    def check(self) -> None:
        """Raise InvalidRecord if the values make no sense (the shell dead-letters it)."""
        if not self.intent_id:
            raise InvalidRecord("INVALID_VALUE", "position: empty intent_id")
        _positive("position.entry_price", self.entry_price)
        _non_negative("position.quantity", self.quantity)
        _non_negative("position.margin", self.margin)
        if self.stop_loss is not None:
            _positive("position.stop_loss", self.stop_loss)
        if self.liquidation_price is not None:
            _non_negative("position.liquidation_price", self.liquidation_price)
        if self.mark_price is not None:
            _positive("position.mark_price", self.mark_price)
        if self.risk is not None:
            _positive("position.risk", self.risk)
        if self.qty_step is not None:
            _positive("position.qty_step", self.qty_step)
        if self.leverage < 1:
            raise InvalidRecord("INVALID_VALUE", f"position.leverage {self.leverage} < 1")


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed bar of `symbol`. `atr`, when the feed sends it, is the ATR to use for this
    bar's evaluation (as of the previous close); otherwise the processor keeps its own."""

    symbol: str
    open_time_ms: int
    close_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    atr: Decimal | None = None

    def check(self) -> None:
        for name in ("open", "high", "low", "close"):
            _positive(f"bar.{name}", getattr(self, name))
        if not self.low <= min(self.open, self.close) <= max(self.open, self.close) <= self.high:
            raise InvalidRecord(
                "INVALID_VALUE",
                f"bar {self.symbol}@{self.open_time_ms}: need low <= open, close <= high "
                f"(o={self.open} h={self.high} l={self.low} c={self.close})",
            )
        if self.close_time_ms < self.open_time_ms:
            raise InvalidRecord("INVALID_VALUE", f"bar {self.symbol}: close_time < open_time")
        if self.atr is not None:
            _non_negative("bar.atr", self.atr)


@dataclass(frozen=True, slots=True)
class ExitIntent:
    """Reduce `quantity` of the position `position_intent_id`; always reduce-only.

    `exit_id` is `f"{position_intent_id}:{step}"` (step: `tp1`, `sl2`, `stop`, `tp`, `liq`,
    ...), so the same trigger always has the same id and a redelivered or re-derived exit
    is recognised downstream. `reference_price` is the price at which the rule triggered
    under the intrabar rule (the level, or the bar's open when the bar opened beyond it);
    the fill price is execution's. `detail` says which rule, in words, for the trade record.
    """

    exit_id: str
    symbol: str
    position_intent_id: str
    quantity: Decimal
    reason: ExitReason
    event_time_ms: int
    reference_price: Decimal
    detail: str = ""

    @property
    def reduce_only(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class StopLossDefaulted:
    """Warning: a position arrived without a stop-loss, so `stop_price` (the configured
    default, `stop_pct` from entry) is in force. Emitted once per position and processor."""

    position_intent_id: str
    symbol: str
    processor: str
    stop_price: Decimal
    stop_pct: Decimal
    event_time_ms: int


def _positive(name: str, value: Decimal) -> None:
    if not (isinstance(value, Decimal) and value.is_finite() and value > 0):
        raise InvalidRecord("INVALID_VALUE", f"{name} must be a finite decimal > 0, got {value!r}")


def _non_negative(name: str, value: Decimal) -> None:
    if not (isinstance(value, Decimal) and value.is_finite() and value >= 0):
        raise InvalidRecord("INVALID_VALUE", f"{name} must be a finite decimal >= 0, got {value!r}")


def sign(side: Side) -> int:
    """+1 for LONG, -1 for SHORT: `sign * (price - entry)` is the favourable move."""
    return 1 if side is Side.LONG else -1


def dec(text: str | None) -> Decimal | None:
    """State helper: a stored decimal string back to Decimal (None stays None)."""
    return None if text is None else Decimal(text)


def dstr(value: Decimal | None) -> str | None:
    """State helper: Decimal to a plain, exact string (None stays None)."""
    return None if value is None else format(value, "f")
