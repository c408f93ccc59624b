"""What the positions agent reads (`ExecutionReport`, marks), keeps (`SymbolBook`) and
writes (`Position` to the compacted positions topic, `ClosedTrade`, `SlotRelease`).

`ExecutionReport` is this agent's view of an execution.results record; the enums repeat
the schema's symbols (a test holds them equal), because a pure core imports no other
agent's model. Money and quantities are exact `Decimal`; times are event-time epoch ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from agents.exits.model import ExitReason  # the one reason list
from agents.governor.model import Side, SlotRelease
from quantum.errors import InvalidRecord


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class ReportStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"


FINAL_STATUSES = frozenset(
    {ReportStatus.FILLED, ReportStatus.REJECTED, ReportStatus.EXPIRED, ReportStatus.CANCELED}
)


class OrderRole(StrEnum):
    ENTRY = "ENTRY"
    STOP_LOSS = "STOP_LOSS"
    TAKE_PROFIT = "TAKE_PROFIT"
    EXIT = "EXIT"
    CLOSE = "CLOSE"
    LIQUIDATION = "LIQUIDATION"


class PositionStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """One exchange report about one order (execution.results), as positions reads it.

    A report carries a fill when `last_filled_quantity` > 0 (Binance `l`), or, for
    records without that field, when its cumulative `filled_quantity` grew.
    """

    client_order_id: str
    intent_id: str
    symbol: str
    status: ReportStatus
    filled_quantity: Decimal
    average_price: Decimal | None
    commission: Decimal
    event_time_ms: int = field(metadata={"avro": "event_time"})
    trade_id: str | None = None
    last_filled_quantity: Decimal | None = None
    last_filled_price: Decimal | None = None
    order_side: OrderSide | None = None
    role: OrderRole | None = None
    exit_reason: ExitReason | None = None
    trigger_price: Decimal | None = None
    leverage: int | None = None


@dataclass(frozen=True, slots=True)
class OrderFill:
    """Cumulative fill of one order as seen so far (for reports without `last_*` fields)."""

    client_order_id: str
    quantity: Decimal
    notional: Decimal
    final: bool


@dataclass(frozen=True, slots=True)
class Position:
    """A position per symbol (one-way mode: the exchange nets every fill on a symbol).

    Sums are kept exactly (`entry_notional`/`entry_quantity` of the increasing fills,
    `exit_notional`/`exit_quantity` of the reducing ones), so the state is a function of
    the set of fills and the closed trade's PnL is exact: side x (exit - entry notional).
    """

    symbol: str
    intent_id: str  # the intent whose fill opened it
    side: Side
    status: PositionStatus
    entry_quantity: Decimal
    entry_notional: Decimal
    exit_quantity: Decimal
    exit_notional: Decimal
    fees: Decimal
    leverage: int
    mark_price: Decimal
    stop_loss: Decimal | None
    stop_order: str | None  # client order id of the stop in force
    take_profit: Decimal | None
    take_profit_order: str | None
    liquidation_price: Decimal | None
    exit_reason: ExitReason | None
    opened_at: int
    updated_at: int
    marked_at: int
    closed_at: int | None

    @property
    def quantity(self) -> Decimal:
        return self.entry_quantity - self.exit_quantity

    @property
    def sign(self) -> int:
        return 1 if self.side == Side.LONG else -1

    @property
    def entry_price(self) -> Decimal:
        return self.entry_notional / self.entry_quantity

    @property
    def exit_price(self) -> Decimal | None:
        return None if self.exit_quantity == 0 else self.exit_notional / self.exit_quantity

    @property
    def realized_pnl(self) -> Decimal:
        """side x (exit notional - exit quantity x average entry); exact once flat."""
        if self.exit_quantity == self.entry_quantity:
            return self.sign * (self.exit_notional - self.entry_notional)
        return self.sign * (self.exit_notional - self.exit_quantity * self.entry_price)

    @property
    def unrealized_pnl(self) -> Decimal:
        return self.sign * (self.mark_price - self.entry_price) * self.quantity

    @property
    def isolated_margin(self) -> Decimal:
        """Initial margin of what is open: entry price x quantity / leverage."""
        return self.entry_price * self.quantity / self.leverage


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """One round trip, first fill to flat: a row of trades.csv (trades.avsc)."""

    trade_id: str
    intent_id: str
    symbol: str
    side: Side
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal
    entry_time_ms: int = field(metadata={"avro": "entry_time"})
    exit_time_ms: int = field(metadata={"avro": "exit_time"})
    realized_pnl: Decimal
    fees: Decimal
    net_pnl: Decimal
    exit_reason: ExitReason | None
    leverage: int


@dataclass(frozen=True, slots=True)
class SeenFill:
    """A fill already applied: its key, event time, and the trade it closed (if it did)."""

    key: str
    event_time_ms: int
    closed_trade_id: str | None


@dataclass(frozen=True, slots=True)
class SymbolBook:
    """Everything the positions agent keeps per symbol (its table value)."""

    symbol: str
    position: Position | None  # the open position, or the last closed one
    seen: tuple[SeenFill, ...]
    orders: tuple[OrderFill, ...]
    trades: tuple[ClosedTrade, ...]  # closed within the dedup horizon

    @staticmethod
    def empty(symbol: str) -> SymbolBook:
        return SymbolBook(symbol, None, (), (), ())

    def seen_fill(self, key: str) -> SeenFill | None:
        for s in self.seen:
            if s.key == key:
                return s
        return None

    def order(self, client_order_id: str) -> OrderFill | None:
        for o in self.orders:
            if o.client_order_id == client_order_id:
                return o
        return None

    def trade(self, trade_id: str) -> ClosedTrade | None:
        for t in self.trades:
            if t.trade_id == trade_id:
                return t
        return None


@dataclass(frozen=True, slots=True)
class PositionStep:
    """What one input caused: the new book; the position record to publish (keyed by
    symbol) if it changed; a closed trade and the release it implies."""

    book: SymbolBook
    position: Position | None = None
    trade: ClosedTrade | None = None
    commands: tuple[SlotRelease, ...] = ()
    notes: tuple[str, ...] = field(default=())


def invalid(message: str) -> InvalidRecord:
    return InvalidRecord("INVALID_VALUE", message)
