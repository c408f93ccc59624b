"""What the live venue agent decides with: the calls it asks its shell to make, what the
exchange answered, what it remembers of each client id, and the alerts it raises.

It reads and writes the paper exchange's record views (`agents.paper_exchange.model`:
`VenueOrder` in, `VenueReport` out), so execution and positions cannot tell the venues
apart. Money and quantities are exact `Decimal`; times are event-time epoch ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from agents.governor.model import Halt as HaltCommand
from agents.paper_exchange.model import VenueOrder, VenueReport

EVENT_TIME = {"avro": "event_time"}


class CallKind(StrEnum):
    """One REST call (or a pause) the core asks the shell for."""

    LOOKUP = "LOOKUP"  # GET order / algoOrder by client id
    SET_MARGIN = "SET_MARGIN"  # POST marginType (once per symbol)
    SET_LEVERAGE = "SET_LEVERAGE"  # POST leverage (when the entry's leverage changes)
    PLACE = "PLACE"  # POST order (MARKET) / algoOrder (STOP_MARKET, TAKE_PROFIT_MARKET)
    CANCEL = "CANCEL"  # DELETE algoOrder by client algo id
    WAIT = "WAIT"  # sleep `wait_ms` (the rate governor or a Retry-After asked for it)


@dataclass(frozen=True, slots=True)
class Call:
    kind: CallKind
    order: VenueOrder
    wait_ms: int = 0


@dataclass(frozen=True, slots=True)
class Found:
    """An order as the exchange knows it (a placement's answer or a lookup by client id).

    `status` is Binance's: a plain order's (NEW, PARTIALLY_FILLED, FILLED, CANCELED,
    EXPIRED, ...) or an algo order's (NEW, TRIGGERING, TRIGGERED, FINISHED, CANCELED,
    REJECTED, EXPIRED)."""

    status: str
    executed_quantity: Decimal
    average_price: Decimal | None
    exchange_id: int


@dataclass(frozen=True, slots=True)
class Done:
    """A call that succeeded with nothing to read (leverage, margin type, cancel)."""


NOT_FOUND = None  # a lookup's answer when the exchange does not know the client id


class SentState(StrEnum):
    """Where a client id stands in the agent's table (written before the next call)."""

    SENDING = "SENDING"  # a placement is under way or its outcome is not known yet
    ACKED = "ACKED"  # the exchange has it (open or filled)
    FINAL = "FINAL"  # it ended unfilled, was refused, or the agent reported its end
    UNRESOLVED = "UNRESOLVED"  # the outcome stayed unknown after every lookup: ask again


@dataclass(frozen=True, slots=True)
class SentOrder:
    """A client id this agent received, the order under it and where it stands."""

    order: VenueOrder
    state: SentState
    status: str  # the last status reported (ReportStatus value), "" before any
    reason: str | None
    updated_at: int
    seq: int = 0
    exchange_id: int | None = None  # orderId / algoId, once Binance answered
    filled_quantity: Decimal = Decimal(0)  # sum of the fills seen (deduplicated)
    filled_notional: Decimal = Decimal(0)  # sum of quantity x price of those fills
    # "<symbol>:<trade id>:<order id>" of every fill applied: kept with the cumulative
    # quantity in one state part, so a crash can never store one without the other
    fill_keys: tuple[str, ...] = ()


class EventSource(StrEnum):
    """Where a binance.user-events record came from."""

    STREAM = "STREAM"  # a user-data stream message, as Binance sent it
    RESYNC = "RESYNC"  # a GET /fapi/v1/userTrades row fetched after a (re)connect


@dataclass(frozen=True, slots=True)
class UserEventRecord:
    """One binance.user-events record: the raw payload, so the agent that owns the client
    id table interprets it (schemas/binance.user-events.avsc)."""

    event_id: str
    source: EventSource
    payload: str  # the JSON text of the message or userTrades row
    event_time_ms: int = field(metadata=EVENT_TIME)


class AlertKind(StrEnum):
    """risk.warnings kinds this agent writes (appended to the schema's enum)."""

    VENUE_HALT = "VENUE_HALT"
    ORDER_UNRESOLVED = "ORDER_UNRESOLVED"
    FOREIGN_ORDER = "FOREIGN_ORDER"  # a fill or update of an order this agent never placed
    RECONCILE_MISMATCH = "RECONCILE_MISMATCH"


@dataclass(frozen=True, slots=True)
class Alert:
    """One risk.warnings record (schemas/risk.warnings.avsc)."""

    warning_id: str
    kind: AlertKind
    symbol: str
    position_intent_id: str
    processor: str
    detail: str
    event_time_ms: int = field(metadata=EVENT_TIME)
    stop_price: Decimal | None = None
    stop_pct: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one `orders` record ended in: reports, governor commands, alerts, notes."""

    reports: tuple[VenueReport, ...] = ()
    commands: tuple[HaltCommand, ...] = ()
    alerts: tuple[Alert, ...] = ()
    notes: tuple[str, ...] = ()
