"""What the paper exchange agent reads (`VenueOrder`: an `orders` record), writes
(`VenueReport`: an `execution.results` record) and remembers (`KnownOrder`).

These are the agent's own views of the two schemas (a pure core imports no other agent's
model); `quantum.records` converts them. Role and exit reason are echoed from the order to
its reports as they came (the schemas' enum symbols), so they are plain strings here.
Money and quantities are exact `Decimal`; times are event-time epoch ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from exchange.model import OrderSide, OrderType

EVENT_TIME = {"avro": "event_time"}


class OrderAction(StrEnum):
    NEW = "NEW"  # place the order
    CANCEL = "CANCEL"  # cancel the order with this client order id


class ReportStatus(StrEnum):
    """Binance's order statuses, as execution.results carries them."""

    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"


FINAL_STATUSES = frozenset(
    {ReportStatus.FILLED, ReportStatus.REJECTED, ReportStatus.EXPIRED, ReportStatus.CANCELED}
)

LIQUIDATION_ROLE = "LIQUIDATION"
LIQUIDATION_REASON = "LIQUIDATION"
# The reason of a REJECTED answer to a resend that differs from the order first received
# under its client order id (Binance -4116); the execution core ignores such a rejection.
DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """One `orders` record: place (`action` NEW) or cancel an order."""

    client_order_id: str
    intent_id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    quantity: Decimal
    price: Decimal | None
    trigger_price: Decimal | None
    reduce_only: bool
    event_time_ms: int = field(metadata=EVENT_TIME)
    action: OrderAction = OrderAction.NEW
    role: str | None = None
    exit_reason: str | None = None
    leverage: int | None = None

    def same_order(self, other: VenueOrder) -> bool:
        """The same placement (a resend), whatever its event time."""
        return (
            self.intent_id,
            self.symbol,
            self.side,
            self.order_type,
            self.quantity,
            self.price,
            self.trigger_price,
            self.reduce_only,
            self.role,
            self.exit_reason,
            self.leverage,
        ) == (
            other.intent_id,
            other.symbol,
            other.side,
            other.order_type,
            other.quantity,
            other.price,
            other.trigger_price,
            other.reduce_only,
            other.role,
            other.exit_reason,
            other.leverage,
        )


@dataclass(frozen=True, slots=True)
class VenueReport:
    """One `execution.results` record: what happened to one order (cumulative fills)."""

    client_order_id: str
    intent_id: str
    symbol: str
    status: ReportStatus
    filled_quantity: Decimal
    average_price: Decimal | None
    commission: Decimal
    commission_asset: str
    realized_pnl: Decimal
    reason: str | None
    event_time_ms: int = field(metadata=EVENT_TIME)
    trade_id: str | None = None
    last_filled_quantity: Decimal | None = None
    last_filled_price: Decimal | None = None
    order_side: OrderSide | None = None
    order_type: OrderType | None = None
    reduce_only: bool = False
    role: str | None = None
    exit_reason: str | None = None
    trigger_price: Decimal | None = None
    leverage: int | None = None

    @classmethod
    def of_order(
        cls,
        o: VenueOrder,
        status: ReportStatus,
        at: int,
        *,
        quote_asset: str,
        reason: str | None = None,
        filled_quantity: Decimal = Decimal(0),
        average_price: Decimal | None = None,
        leverage: int | None = None,
    ) -> VenueReport:
        """A report of order `o` with no fill in it (last filled quantity 0): what every
        venue sends for an acceptance, a refusal, a cancel or an answer to a resend."""
        return cls(
            client_order_id=o.client_order_id,
            intent_id=o.intent_id,
            symbol=o.symbol,
            status=status,
            filled_quantity=filled_quantity,
            average_price=average_price,
            commission=Decimal(0),
            commission_asset=quote_asset,
            realized_pnl=Decimal(0),
            reason=reason,
            event_time_ms=at,
            trade_id=None,
            last_filled_quantity=Decimal(0),
            last_filled_price=None,
            order_side=o.side,
            order_type=o.order_type,
            reduce_only=o.reduce_only,
            role=o.role,
            exit_reason=o.exit_reason,
            trigger_price=o.trigger_price,
            leverage=o.leverage if leverage is None else leverage,
        )


@dataclass(frozen=True, slots=True)
class KnownOrder:
    """An order the agent received under its client order id, and where it stands.

    `order_id` is the exchange's id (None: refused at submission); `leverage` the
    symbol's leverage when it was accepted; `seq` orders finished orders for forgetting.
    """

    order: VenueOrder
    order_id: int | None
    status: ReportStatus
    filled_quantity: Decimal
    average_price: Decimal | None
    reason: str | None
    leverage: int | None
    updated_at: int
    seq: int = 0

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class Holder:
    """The intent whose entry opened a symbol's position (named by its liquidation)."""

    intent_id: str
    leverage: int


@dataclass(frozen=True, slots=True)
class VenueStep:
    """What one order or bar caused: reports in the exchange's order, and notes (why
    something produced no report) for the logs."""

    reports: tuple[VenueReport, ...] = ()
    notes: tuple[str, ...] = ()
