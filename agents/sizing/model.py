"""What sizing reads (a trade intent, the sizing state) and decides (a size or a rejection).

`TradeIntent` mirrors schemas/trade.intents.avsc; `SizedIntent` is what the shell turns into a
governor `SlotRequest` (`agents.sizing.core.slot_request`); `SizingRejected` carries a
`SizingRejectReason` with a sentence of numbers, and goes to the rejections topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from exchange.model import PositionSide
from quantum.errors import InvalidRecord
from quantum.schemas import parse_decimal


def _decimal(value: Any, name: str) -> Decimal:
    try:
        return parse_decimal(value)
    except ValueError as exc:
        raise InvalidRecord("INVALID_VALUE", f"{name}: {exc}") from exc


class SizingRejectReason(StrEnum):
    BELOW_MIN_NOTIONAL = "BELOW_MIN_NOTIONAL"  # rounded size x mark < MIN_NOTIONAL (never bumped)
    BELOW_MIN_QTY = "BELOW_MIN_QTY"  # rounded size < MARKET_LOT_SIZE minQty
    EXPOSURE_CAP_REACHED = "EXPOSURE_CAP_REACHED"  # total or symbol margin cap leaves no room
    INVALID_STOP = "INVALID_STOP"  # stop on the wrong side of the entry, or at it
    INVALID_TAKE_PROFIT = "INVALID_TAKE_PROFIT"  # take-profit on the wrong side of the entry
    STOP_BEYOND_LIQUIDATION = "STOP_BEYOND_LIQUIDATION"  # liquidation comes before the stop
    LEVERAGE_NOT_ALLOWED = "LEVERAGE_NOT_ALLOWED"  # above config.max_leverage or the brackets
    SYMBOL_NOT_TRADING = "SYMBOL_NOT_TRADING"  # exchangeInfo status is not TRADING
    NO_EQUITY = "NO_EQUITY"  # equity <= 0


@dataclass(frozen=True, slots=True)
class TradeIntent:
    """A wish to open a position; `entry_price` is the mark price the decision saw."""

    intent_id: str
    symbol: str
    side: PositionSide
    entry_price: Decimal
    stop_loss: Decimal
    take_profit: Decimal | None
    leverage: int
    score: float
    event_time_ms: int

    def __post_init__(self) -> None:
        if self.entry_price <= 0 or self.stop_loss <= 0:
            raise InvalidRecord("INVALID_VALUE", f"{self.intent_id}: prices must be > 0")
        if self.take_profit is not None and self.take_profit <= 0:
            raise InvalidRecord("INVALID_VALUE", f"{self.intent_id}: take-profit must be > 0")
        if self.leverage < 1:
            raise InvalidRecord("INVALID_VALUE", f"{self.intent_id}: leverage must be >= 1")

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TradeIntent:
        """From a decoded schemas/trade.intents.avsc record (decimal strings)."""
        take_profit = record.get("take_profit")
        return cls(
            intent_id=str(record["intent_id"]),
            symbol=str(record["symbol"]),
            side=PositionSide(record["side"]),
            entry_price=_decimal(record["entry_price"], "entry_price"),
            stop_loss=_decimal(record["stop_loss"], "stop_loss"),
            take_profit=None if take_profit is None else _decimal(take_profit, "take_profit"),
            leverage=int(record["leverage"]),
            score=float(record["score"]),
            event_time_ms=int(record["event_time"]),
        )


@dataclass(frozen=True, slots=True)
class SizingState:
    """Equity and the isolated margin already used (open positions + reserved slots) per
    symbol; the shell keeps it from the positions topic and the sizes it has emitted."""

    equity: Decimal
    margin_by_symbol: Mapping[str, Decimal] = field(default_factory=dict)

    @property
    def total_margin(self) -> Decimal:
        return sum(self.margin_by_symbol.values(), Decimal(0))

    def symbol_margin(self, symbol: str) -> Decimal:
        return self.margin_by_symbol.get(symbol, Decimal(0))

    def with_margin(self, symbol: str, margin: Decimal) -> SizingState:
        """A new state with `margin` more on `symbol` (a reservation for a new size)."""
        updated = dict(self.margin_by_symbol)
        updated[symbol] = self.symbol_margin(symbol) + margin
        return SizingState(self.equity, updated)


@dataclass(frozen=True, slots=True)
class SizedIntent:
    """The intent with its size. `binding_limit` names what set the size (RISK, FIXED, or the
    cap that reduced it: TOTAL_MARGIN_CAP, SYMBOL_MARGIN_CAP, BRACKET_CAP, MAX_QTY);
    `risk_amount` is the loss, fees included, if the stop fills at its price."""

    intent_id: str
    symbol: str
    side: PositionSide
    quantity: Decimal
    notional: Decimal
    margin: Decimal
    leverage: int
    entry_price: Decimal
    stop_loss: Decimal
    take_profit: Decimal | None
    liquidation_price: Decimal | None
    risk_amount: Decimal
    binding_limit: str
    score: float
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class SizingRejected:
    intent_id: str
    symbol: str
    reason: SizingRejectReason
    detail: str
    event_time_ms: int


SizingDecision = SizedIntent | SizingRejected
