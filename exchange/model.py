"""The exchange's vocabulary: sides and order types, the bar it steps on (the kit's
`Kline`, or anything shaped like `Bar`), and the paper exchange's commands (imperative) and
events (past tense).

Every event carries the event time it happened at (bar open for fills at the open, bar close
for fills inside the bar, the command's time for accept/reject), so a replay reproduces it.
Money, prices and quantities are exact `Decimal`s; `to_dict` (the kit's `to_avro`) gives a
JSON-safe dict with decimal strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from quantum.errors import InvalidRecord
from quantum.marketdata.model import Kline as Kline  # re-exported: the project's one bar type
from quantum.records import to_avro


class PositionSide(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"

    @property
    def sign(self) -> int:
        """+1 long, -1 short: the `side` of Binance's formulas."""
        return 1 if self is PositionSide.LONG else -1

    @property
    def opening_order_side(self) -> OrderSide:
        return OrderSide.BUY if self is PositionSide.LONG else OrderSide.SELL

    @property
    def closing_order_side(self) -> OrderSide:
        return OrderSide.SELL if self is PositionSide.LONG else OrderSide.BUY


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is OrderSide.BUY else -1


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"  # GTC; fills at its price inside a bar (maker) or at the open (taker)
    STOP_MARKET = "STOP_MARKET"  # conditional: a market order once the trigger is reached
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"

    @property
    def is_conditional(self) -> bool:
        return self in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)

    @property
    def is_market(self) -> bool:
        """Executes as a market order (MARKET_LOT_SIZE applies)."""
        return self is not OrderType.LIMIT


class CancelReason(StrEnum):
    CANCELED_BY_CLIENT = "CANCELED_BY_CLIENT"  # a CancelOrder command
    POSITION_CLOSED = "POSITION_CLOSED"  # reduce-only order left over when its position closed
    ENTRY_NOT_FILLED = "ENTRY_NOT_FILLED"  # reduce-only order whose pending entry never filled


@runtime_checkable
class Bar(Protocol):
    """What the paper exchange needs of a closed bar; the kit's `Kline` (market.ticks) is one."""

    symbol: str
    open_time: int
    close_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


def check_bar(bar: Bar) -> None:
    """A bar the exchange can step on: positive prices, high/low around open and close."""
    where = f"{bar.symbol}@{bar.open_time}"
    if min(bar.open, bar.high, bar.low, bar.close) <= 0:
        raise InvalidRecord("INVALID_VALUE", f"{where}: price <= 0")
    if bar.high < max(bar.open, bar.close) or bar.low > min(bar.open, bar.close):
        raise InvalidRecord("INVALID_VALUE", f"{where}: high/low do not bound open/close")
    if bar.close_time < bar.open_time:
        raise InvalidRecord("INVALID_VALUE", f"{where}: close_time before open_time")


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """New order. `trigger_price` for STOP_MARKET/TAKE_PROFIT_MARKET, `price` for LIMIT."""

    client_order_id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    quantity: Decimal
    event_time_ms: int
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class CancelOrder:
    client_order_id: str
    symbol: str
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class SetLeverage:
    """Binance's per-symbol leverage (POST /fapi/v1/leverage); used by the next entries."""

    symbol: str
    leverage: int
    event_time_ms: int


Command = PlaceOrder | CancelOrder | SetLeverage


# --- events -------------------------------------------------------------------------------


class _Event:
    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (decimal strings, enum values) with the event's type name."""
        return {"type": type(self).__name__, **to_avro(self)}


@dataclass(frozen=True, slots=True)
class OrderAccepted(_Event):
    client_order_id: str
    order_id: int
    symbol: str
    side: OrderSide
    order_type: OrderType
    quantity: Decimal
    price: Decimal | None
    trigger_price: Decimal | None
    reduce_only: bool
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class OrderRejected(_Event):
    """Refused at submission; nothing changed. `reason` is an `exchange.rules.RejectReason`."""

    client_order_id: str
    symbol: str
    reason: str
    detail: str
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class OrderFilled(_Event):
    """A (full) fill. `realized_pnl` excludes the fee; the position fields are after the fill
    (`position_quantity` signed: + long, - short, 0 flat)."""

    client_order_id: str
    order_id: int
    trade_id: int
    symbol: str
    side: OrderSide
    order_type: OrderType
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    realized_pnl: Decimal
    maker: bool
    reduce_only: bool
    position_quantity: Decimal
    position_entry_price: Decimal | None
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class OrderCanceled(_Event):
    client_order_id: str
    order_id: int
    symbol: str
    reason: CancelReason
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class OrderExpired(_Event):
    """An accepted order that could not execute when its time came (e.g. a reduce-only
    order with no position left, an entry without enough margin at the fill price)."""

    client_order_id: str
    order_id: int
    symbol: str
    reason: str
    detail: str
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class LeverageChanged(_Event):
    symbol: str
    leverage: int
    max_notional: Decimal
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class LeverageRejected(_Event):
    symbol: str
    leverage: int
    reason: str
    detail: str
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class Liquidated(_Event):
    """The exchange closed an isolated position at its liquidation price (or the open of a
    bar that gapped through it). The trader loses exactly the isolated margin:
    `realized_pnl` is the price PnL of the close and `insurance_fee` the rest of the margin
    taken by the insurance fund (negative when the fund covered a loss beyond the margin)."""

    symbol: str
    side: PositionSide
    quantity: Decimal
    price: Decimal
    liquidation_price: Decimal
    realized_pnl: Decimal
    insurance_fee: Decimal
    margin_lost: Decimal
    trade_id: int
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class FundingPaid(_Event):
    """Funding settled on a position: `amount` < 0 paid, > 0 received (quote asset)."""

    symbol: str
    funding_rate: Decimal
    mark_price: Decimal
    amount: Decimal
    funding_time_ms: int
    event_time_ms: int


Event = (
    OrderAccepted
    | OrderRejected
    | OrderFilled
    | OrderCanceled
    | OrderExpired
    | LeverageChanged
    | LeverageRejected
    | Liquidated
    | FundingPaid
)


@dataclass(frozen=True, slots=True)
class PositionView:
    """A position as the exchange sees it (isolated margin, one-way mode)."""

    symbol: str
    side: PositionSide
    quantity: Decimal
    entry_price: Decimal
    leverage: int
    isolated_margin: Decimal
    liquidation_price: Decimal | None
    mark_price: Decimal
    unrealized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An accepted order still waiting (a MARKET order until the next bar's open)."""

    client_order_id: str
    order_id: int
    symbol: str
    side: OrderSide
    order_type: OrderType
    quantity: Decimal
    price: Decimal | None
    trigger_price: Decimal | None
    reduce_only: bool
    leverage: int
    submitted_ms: int
