"""What the execution agent reads, writes and remembers.

Inputs (past tense or facts): `EntryPlan` (a sized trade intent), the governor's
`Decision`, `ExitIntent` and `ExecutionResult`. Outputs: `PlaceOrder` / `CancelOrder`
(imperative, to the exchange), governor commands (`SlotFilled`, `SlotRelease`) and
ledger updates (`IntentEntry` or `Forget`). The Avro schemas `orders.avsc`,
`execution.results.avsc`, `exit.intents.avsc`, `trade.intents.avsc` and
`execution.ledger.avsc` mirror these; `agents.execution.codec` converts.

Money, prices and quantities are exact `Decimal`; times are event-time epoch ms. Where a
model mirrors its record field for field, `quantum.records` converts it (`event_time_ms`
is the record's `event_time`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from agents.exits.model import ExitReason  # one reason list for exits, orders and trades
from agents.governor.model import ReleaseReason, Side, SlotFilled, SlotRelease
from quantum.errors import InvalidRecord, PoisonRecord


class EntryState(StrEnum):
    """Where an intent is in its life; one ledger entry per intent id."""

    PLANNED = "PLANNED"  # sized intent known, no decision yet
    GRANTED = "GRANTED"  # granted, sized intent not seen yet (inputs reordered)
    SENT = "SENT"  # entry order written to the ledger; the shell sends it once this is durable
    ACKED = "ACKED"  # the exchange acknowledged the entry order
    FILLED = "FILLED"  # the position is open (entry filled in part or whole)
    CLOSED = "CLOSED"  # terminal: the position is flat again
    REJECTED = "REJECTED"  # terminal: the exchange rejected the entry order
    EXPIRED = "EXPIRED"  # terminal: nothing filled and the entry (or its grant) timed out
    DENIED = "DENIED"  # terminal: the governor denied the request
    BLOCKED = "BLOCKED"  # terminal: execution refused the grant (anti-pyramiding, cooldown)


TERMINAL_STATES = frozenset(
    {
        EntryState.CLOSED,
        EntryState.REJECTED,
        EntryState.EXPIRED,
        EntryState.DENIED,
        EntryState.BLOCKED,
    }
)
# Something of this intent is (or may be) at the exchange on its symbol.
LIVE_STATES = frozenset({EntryState.SENT, EntryState.ACKED, EntryState.FILLED})


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"


class OrderStatus(StrEnum):
    """Binance's order statuses, plus SENT: in the ledger, not yet acknowledged."""

    SENT = "SENT"
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"


FINAL_ORDER_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.EXPIRED, OrderStatus.CANCELED}
)
OPEN_ORDER_STATUSES = frozenset({OrderStatus.SENT, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


class OrderRole(StrEnum):
    """Why an order exists; each role has its own client order id."""

    ENTRY = "ENTRY"  # opens the position (the only order that is not reduce-only)
    STOP_LOSS = "STOP_LOSS"  # protective STOP_MARKET, placed after the entry fill
    TAKE_PROFIT = "TAKE_PROFIT"  # protective TAKE_PROFIT_MARKET, placed after the entry fill
    EXIT = "EXIT"  # an exit intent (exit.intents): reduce-only market
    CLOSE = "CLOSE"  # a full close execution decided (rotation, fill rejected, excess, ...)
    LIQUIDATION = "LIQUIDATION"  # the exchange's own liquidation order (not ours)


REDUCING_ROLES = frozenset(
    {
        OrderRole.STOP_LOSS,
        OrderRole.TAKE_PROFIT,
        OrderRole.EXIT,
        OrderRole.CLOSE,
        OrderRole.LIQUIDATION,
    }
)
PROTECTIVE_ROLES = frozenset({OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT})


# A result with status REJECTED and a reason starting with this is the exchange refusing a
# *resend* of a client order id it already has (Binance -4116); the original order's own
# results decide its fate, so the core ignores such a rejection.
DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"

EVENT_TIME = {"avro": "event_time"}  # the records' name for event_time_ms


# ---- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryPlan:
    """A sized trade intent (trade.intents with quantity set): the entry to send on GRANTED."""

    intent_id: str
    symbol: str
    side: Side
    quantity: Decimal
    entry_price: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    leverage: int
    event_time_ms: int = field(metadata=EVENT_TIME)


@dataclass(frozen=True, slots=True)
class ExitIntent:
    """Reduce (part of) the position `position_intent_id` opened; exits need no slot."""

    exit_id: str
    symbol: str
    position_intent_id: str
    quantity: Decimal
    reason: ExitReason
    event_time_ms: int = field(metadata=EVENT_TIME)


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """What happened to an order (execution.results): one exchange report.

    `filled_quantity` and `average_price` are cumulative for the order (Binance `z`, `ap`),
    so the latest report wins and a duplicate or an older one changes nothing.
    The fields after `event_time_ms` were added later and may be absent (defaults).
    """

    client_order_id: str
    intent_id: str
    symbol: str
    status: OrderStatus
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
    role: OrderRole | None = None
    exit_reason: ExitReason | None = None
    trigger_price: Decimal | None = None
    leverage: int | None = None


# ---- outputs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Send this order; resending the same client order id is how a restart recovers."""

    client_order_id: str
    intent_id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    quantity: Decimal
    trigger_price: Decimal | None
    reduce_only: bool
    role: OrderRole
    exit_reason: ExitReason | None
    leverage: int | None
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel the order `order` (as it was placed); canceling a finished order is harmless."""

    order: PlaceOrder
    event_time_ms: int

    @property
    def client_order_id(self) -> str:
        return self.order.client_order_id


ExchangeCommand = PlaceOrder | CancelOrder
GovernorCommand = SlotFilled | SlotRelease


# ---- the ledger ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order of an intent as the ledger knows it (cumulative fill, latest status)."""

    order: PlaceOrder
    status: OrderStatus
    filled_quantity: Decimal
    average_price: Decimal | None
    cancel_requested: bool
    exit_id: str | None  # EXIT orders: the exit intent they execute
    reason: str | None  # the exchange's rejection / expiry reason
    updated_at: int

    @property
    def client_order_id(self) -> str:
        return self.order.client_order_id

    @property
    def role(self) -> OrderRole:
        return self.order.role

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ORDER_STATUSES


@dataclass(frozen=True, slots=True)
class IntentEntry:
    """The ledger's record of one intent: a compacted-topic value keyed by intent id.

    `release` is the SlotRelease this intent owes the governor (ORDER_REJECTED /
    ORDER_EXPIRED) or None; a SlotFilled is owed once anything filled. Those two facts are
    all the governor commands an entry implies, so a redelivered input can send them again
    with the same command ids.
    """

    intent_id: str
    symbol: str
    state: EntryState
    plan: EntryPlan | None
    granted_at: int | None
    decided_at: int | None  # event time of the last governor decision applied
    sent_at: int | None  # event time the entry order was decided
    closed_at: int | None
    close_reason: ExitReason | None  # set: close whatever is (or becomes) open
    release: ReleaseReason | None
    note: str | None  # why the entry ended as it did (block reason, exchange reason)
    decisions: tuple[str, ...]  # decision ids applied (dedup of redelivered decisions)
    orders: tuple[OrderRecord, ...]  # in the order they were placed
    created_at: int
    updated_at: int

    def order(self, client_order_id: str) -> OrderRecord | None:
        for rec in self.orders:
            if rec.client_order_id == client_order_id:
                return rec
        return None

    def orders_with(self, role: OrderRole) -> list[OrderRecord]:
        return [r for r in self.orders if r.role == role]

    @property
    def entry_order(self) -> OrderRecord | None:
        for rec in self.orders:
            if rec.role == OrderRole.ENTRY:
                return rec
        return None

    @property
    def entry_filled(self) -> Decimal:
        rec = self.entry_order
        return Decimal(0) if rec is None else rec.filled_quantity

    @property
    def reduced(self) -> Decimal:
        return sum((r.filled_quantity for r in self.orders if r.role in REDUCING_ROLES), Decimal(0))

    @property
    def open_quantity(self) -> Decimal:
        """Quantity still open at the exchange as far as the ledger knows (never < 0)."""
        return max(self.entry_filled - self.reduced, Decimal(0))


@dataclass(frozen=True, slots=True)
class Forget:
    """Delete the ledger entry (a tombstone on the compacted topic)."""

    intent_id: str


LedgerUpdate = IntentEntry | Forget


@dataclass(frozen=True, slots=True)
class Step:
    """What one input caused. The shell writes `ledger_updates` first and awaits them,
    then sends `orders` to the exchange, then `commands` to the portfolio topic.
    `notes` say why an input changed nothing (for logs and metrics)."""

    ledger_updates: tuple[LedgerUpdate, ...] = ()
    orders: tuple[ExchangeCommand, ...] = ()
    commands: tuple[GovernorCommand, ...] = ()
    notes: tuple[str, ...] = field(default=())


# ---- typed errors: the shell dead-letters the input ----------------------------------------


class UnknownOrder(PoisonRecord):
    """An execution result for a client order id the ledger never wrote (reason UNKNOWN_ORDER)."""

    def __init__(self, message: str) -> None:
        super().__init__("UNKNOWN_ORDER", message)


class UnknownIntent(PoisonRecord):
    """An exit or close for an intent the ledger does not know (reason UNKNOWN_INTENT)."""

    def __init__(self, message: str) -> None:
        super().__init__("UNKNOWN_INTENT", message)


class UnknownDecisionKind(PoisonRecord):
    """A governor decision kind the execution table does not list (UNKNOWN_DECISION_KIND)."""

    def __init__(self, message: str) -> None:
        super().__init__("UNKNOWN_DECISION_KIND", message)


def invalid(message: str) -> InvalidRecord:
    return InvalidRecord("INVALID_VALUE", message)
