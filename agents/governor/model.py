"""Commands the governor reads from the portfolio topic and the decisions it writes.

Commands are imperative (`SlotRequest`), decisions past tense in `DecisionKind`
(`GRANTED`, `DENIED`, ...). Every value here is plain data: the Avro schemas
`schemas/portfolio.avsc` and `schemas/portfolio.decisions.avsc` mirror these
classes field for field, and `agents.governor.codec` converts between them.

Every decision carries the book's occupancy *after* it (`open_after`,
`reserved_after`) and the limits in force, so the decisions log alone is
enough for `quantum audit portfolio` to check the invariant at every offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from quantum.frozen import fast_init


class Side(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"


class Regime(StrEnum):
    BASE = "BASE"
    TREND_STRONG = "TREND_STRONG"
    CHOP = "CHOP"


class ReleaseReason(StrEnum):
    ORDER_REJECTED = "ORDER_REJECTED"
    ORDER_EXPIRED = "ORDER_EXPIRED"
    POSITION_CLOSED = "POSITION_CLOSED"
    ROTATED_OUT = "ROTATED_OUT"


class SlotState(StrEnum):
    """Where one intent is in its lifecycle (docs/governor.md draws the machine).

    WAITING -> RESERVED -> OPEN -> CLOSED is the happy path; DENIED, EXPIRED and
    REJECTED end it early. RESERVED and OPEN hold a slot; the others hold none.
    Ended states are remembered for `memory_horizon_ms` of event time, so a fill or
    release redelivered under a new command id is still recognised.
    """

    WAITING = "WAITING"  # a request waiting for a rotated-out position's slot
    RESERVED = "RESERVED"  # granted, order not filled yet: holds a slot
    OPEN = "OPEN"  # filled: a position on the exchange, holds a slot
    CLOSED = "CLOSED"  # the position was closed (POSITION_CLOSED / ROTATED_OUT)
    DENIED = "DENIED"  # the request was denied (or withdrawn): no order was ever sent
    EXPIRED = "EXPIRED"  # the reservation outlived reservation_ttl_ms; its order may still fill
    REJECTED = "REJECTED"  # the order ended unfilled, or its fill found no room or a held symbol


class DenyReason(StrEnum):
    LIMIT_FULL = "LIMIT_FULL"  # open + reserved at (or above) the hard cap
    REGIME_SLOTS_FULL = "REGIME_SLOTS_FULL"  # at the regime's active slots, no rotation possible
    HALTED = "HALTED"
    DUPLICATE_SYMBOL = "DUPLICATE_SYMBOL"  # symbol already open, reserved or waiting on a rotation
    COOLDOWN = "COOLDOWN"  # symbol released less than symbol_cooldown_ms ago
    ROTATION_TIMEOUT = "ROTATION_TIMEOUT"  # the rotated-out position's release never came
    ROTATION_PENDING = "ROTATION_PENDING"  # strong enough to rotate, but one rotation is pending
    WITHDRAWN = "WITHDRAWN"  # a release of the waiting request's own intent withdrew it
    DUPLICATE_INTENT = "DUPLICATE_INTENT"  # the intent is already known (a fill came first)


class DecisionKind(StrEnum):
    GRANTED = "GRANTED"  # final for a request: a slot is reserved
    DENIED = "DENIED"  # final for a request, with a DenyReason
    ROTATE_OUT = "ROTATE_OUT"  # close `symbol` so that `for_intent_id` can have its slot
    EXPIRED = "EXPIRED"  # a reservation never filled; its slot is free again
    FILLED = "FILLED"  # a reservation became an open position
    FILL_REJECTED = "FILL_REJECTED"  # a fill for no live reservation and no room: close it at once
    RELEASED = "RELEASED"  # a slot was freed
    RELEASE_IGNORED = "RELEASE_IGNORED"  # release that matches no slot: recorded, frees nothing
    REGIME_CHANGED = "REGIME_CHANGED"
    HALTED = "HALTED"
    RESUMED = "RESUMED"
    FILL_IGNORED = "FILL_IGNORED"  # a fill for an intent already CLOSED or REJECTED: no position
    FILL_SYMBOL_HELD = "FILL_SYMBOL_HELD"  # a late fill on a symbol another intent holds: reduce it
    CONFIG_CHANGED = "CONFIG_CHANGED"  # restarted with other limits; the first decision after


FINAL_KINDS = frozenset({DecisionKind.GRANTED, DecisionKind.DENIED})


@fast_init
@dataclass(frozen=True, slots=True)
class SlotRequest:
    """Ask for a slot for a new position; `intent_id` is also the command id."""

    intent_id: str
    symbol: str
    side: Side
    notional: Decimal
    score: float
    event_time_ms: int

    @property
    def command_id(self) -> str:
        return self.intent_id


@fast_init
@dataclass(frozen=True, slots=True)
class SlotFilled:
    """The order of a granted request filled: the reservation is now an open position."""

    command_id: str
    intent_id: str
    symbol: str
    event_time_ms: int


@fast_init
@dataclass(frozen=True, slots=True)
class SlotRelease:
    """Free a slot, found by `intent_id` if given, else by `symbol`.

    The project's own services always name the intent; a release by symbol is for outside
    sources and frees only what its reason refers to (docs/governor.md, rule 7).
    """

    command_id: str
    symbol: str
    intent_id: str | None
    reason: ReleaseReason
    event_time_ms: int


@fast_init
@dataclass(frozen=True, slots=True)
class SetRegime:
    command_id: str
    regime: Regime
    event_time_ms: int


@fast_init
@dataclass(frozen=True, slots=True)
class Halt:
    """Deny every new entry until `Resume`; exits never need a slot."""

    command_id: str
    reason: str
    event_time_ms: int


@fast_init
@dataclass(frozen=True, slots=True)
class Resume:
    command_id: str
    event_time_ms: int


@fast_init
@dataclass(frozen=True, slots=True)
class Clock:
    """Event-time heartbeat: lets reservations and rotation waits expire with no other traffic."""

    command_id: str
    event_time_ms: int


Command = SlotRequest | SlotFilled | SlotRelease | SetRegime | Halt | Resume | Clock


@fast_init
@dataclass(frozen=True, slots=True)
class Decision:
    """One line of the governor's decisions log.

    `command_id` is the command that caused it; `decision_id` is
    `f"{command_id}#{n}"` (n = its position among that command's decisions),
    so a decision is named by its input and a replay names it the same way.
    Fields that do not apply to a kind are None.
    """

    decision_id: str
    command_id: str
    kind: DecisionKind
    event_time_ms: int
    intent_id: str | None
    symbol: str | None
    side: Side | None
    notional: Decimal | None
    score: float | None
    deny_reason: DenyReason | None
    release_reason: ReleaseReason | None
    for_intent_id: str | None  # ROTATE_OUT: the request waiting on this rotation
    regime: Regime
    halted: bool
    open_after: int
    reserved_after: int
    active_slots: int
    max_open_positions: int
