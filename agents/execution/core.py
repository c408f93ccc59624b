"""The execution agent's pure core: (input, ledger) -> Step(ledger updates, orders, commands).

No I/O, no wall clock: every time is the event time carried by the input. The core reads
the ledger and never mutates it; the shell makes the returned ledger updates durable,
applies them, and only then sends the orders (docs/execution.md). Because an order is
always preceded by its ledger record and every rule checks the ledger first, a
redelivered grant, result or exit never places a second order, and a restarted agent
finds every order it may have sent in state SENT.

Rules (docs/execution.md has them in full):
- GRANTED -> exactly one entry order (client id from the intent id), unless another
  intent is live on the symbol (anti-pyramiding) or the symbol is cooling down: then
  BLOCKED and `SlotRelease(ORDER_REJECTED)`. A grant older than grant_max_age_ms places
  nothing.
- entry REJECTED -> `SlotRelease(ORDER_REJECTED)`; EXPIRED/CANCELED with nothing filled ->
  `SlotRelease(ORDER_EXPIRED)`; the first fill -> `SlotFilled`; the entry done ->
  protective STOP_MARKET and TAKE_PROFIT_MARKET (reduce-only).
- ROTATE_OUT / FILL_REJECTED / a late fill on a held symbol -> a reduce-only market
  close of the open quantity; flat -> every other open order of the intent canceled.
- exit intents -> reduce-only market orders, clamped to what is open and not already
  being closed.
Decision kinds are handled through `DECISION_TABLE`, so a new kind is one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum

from agents.execution import ids
from agents.execution.config import ExecutionConfig
from agents.execution.ledger import Ledger
from agents.execution.model import (
    DUPLICATE_CLIENT_ORDER_ID,
    FINAL_ORDER_STATUSES,
    LIVE_STATES,
    PROTECTIVE_ROLES,
    REDUCING_ROLES,
    TERMINAL_STATES,
    CancelOrder,
    EntryPlan,
    EntryState,
    ExchangeCommand,
    ExecutionResult,
    ExitIntent,
    ExitReason,
    Forget,
    GovernorCommand,
    IntentEntry,
    OrderRecord,
    OrderRole,
    OrderSide,
    OrderStatus,
    OrderType,
    PlaceOrder,
    Step,
    UnknownDecisionKind,
    UnknownIntent,
    UnknownOrder,
    invalid,
)
from agents.governor.model import Decision, ReleaseReason, Side, SlotFilled, SlotRelease

ZERO = Decimal(0)


class DecisionAction(StrEnum):
    """What a governor decision kind means for execution."""

    NONE = "NONE"  # informational: nothing to do
    ENTER = "ENTER"  # place the intent's entry order
    FORGET = "FORGET"  # the intent will never trade: a waiting plan ends
    CANCEL_ENTRY = "CANCEL_ENTRY"  # the reservation lapsed: cancel an unfilled entry order
    CLOSE = "CLOSE"  # close the intent's open quantity at market (reason in the table)


# Decision kind (its string value) -> (action, exit reason of the close it causes).
# A kind missing from the table is dead-lettered (UnknownDecisionKind), never silently
# ignored; keyed by string so kinds the governor's model does not have yet can be listed.
DECISION_TABLE: dict[str, tuple[DecisionAction, ExitReason | None]] = {
    "GRANTED": (DecisionAction.ENTER, None),
    "DENIED": (DecisionAction.FORGET, None),
    "EXPIRED": (DecisionAction.CANCEL_ENTRY, None),
    "ROTATE_OUT": (DecisionAction.CLOSE, ExitReason.ROTATE_OUT),
    "FILL_REJECTED": (DecisionAction.CLOSE, ExitReason.FILL_REJECTED),
    "FILLED": (DecisionAction.NONE, None),
    "RELEASED": (DecisionAction.NONE, None),
    "RELEASE_IGNORED": (DecisionAction.NONE, None),
    "REGIME_CHANGED": (DecisionAction.NONE, None),
    "HALTED": (DecisionAction.NONE, None),
    "RESUMED": (DecisionAction.NONE, None),
    # Issue 7's lifecycle kinds (names as the governor work in progress spells them):
    # a late fill on a symbol another intent holds -> reduce the extra (that intent's
    # quantity); a fill for an intent the governor has CLOSED or REJECTED -> recorded
    # there, nothing here; a restart with other limits -> informational.
    "FILL_SYMBOL_HELD": (DecisionAction.CLOSE, ExitReason.EXCESS_FILL),
    "FILL_IGNORED": (DecisionAction.NONE, None),
    "CONFIG_CHANGED": (DecisionAction.NONE, None),
}

_STATUS_RANK = {
    OrderStatus.SENT: 0,
    OrderStatus.NEW: 1,
    OrderStatus.PARTIALLY_FILLED: 2,
    OrderStatus.FILLED: 3,
    OrderStatus.REJECTED: 3,
    OrderStatus.EXPIRED: 3,
    OrderStatus.CANCELED: 3,
}
_PROTECTIVE_REASON = {
    OrderRole.STOP_LOSS: ExitReason.STOP_LOSS,
    OrderRole.TAKE_PROFIT: ExitReason.TAKE_PROFIT,
}
MAX_CLOSE_ATTEMPTS = 3


def _opposite(side: OrderSide) -> OrderSide:
    return OrderSide.SELL if side == OrderSide.BUY else OrderSide.BUY


def entry_side(side: Side) -> OrderSide:
    return OrderSide.BUY if side == Side.LONG else OrderSide.SELL


class ExecutionCore:
    """Stateless apart from its config: every method is a function of its arguments."""

    def __init__(
        self,
        config: ExecutionConfig | None = None,
        tick_sizes: Mapping[str, Decimal] | None = None,
    ) -> None:
        self._cfg = config or ExecutionConfig()
        self._ticks = dict(tick_sizes or {})
        self._actions: dict[DecisionAction, Callable[..., Step]] = {
            DecisionAction.NONE: lambda d, e, ledger, reason: Step(),
            DecisionAction.ENTER: self._granted,
            DecisionAction.FORGET: self._denied,
            DecisionAction.CANCEL_ENTRY: self._expired,
            DecisionAction.CLOSE: self._close_decision,
        }

    @property
    def config(self) -> ExecutionConfig:
        return self._cfg

    # ---- inputs ----------------------------------------------------------------------------

    def on_intent(self, plan: EntryPlan, ledger: Ledger) -> Step:
        """A sized trade intent: remember it; if its grant came first, enter now."""
        _check_plan(plan)
        at = plan.event_time_ms
        e = ledger.get(plan.intent_id)
        if e is None:
            entry = IntentEntry(
                intent_id=plan.intent_id,
                symbol=plan.symbol,
                state=EntryState.PLANNED,
                plan=plan,
                granted_at=None,
                decided_at=None,
                sent_at=None,
                closed_at=None,
                close_reason=None,
                release=None,
                note=None,
                decisions=(),
                orders=(),
                created_at=at,
                updated_at=at,
            )
            return Step(ledger_updates=(entry,))
        if e.symbol != plan.symbol:
            raise invalid(f"intent {plan.intent_id!r} is on {e.symbol}, plan says {plan.symbol}")
        if e.plan is not None:
            if e.plan != plan:
                raise invalid(f"intent {plan.intent_id!r}: a different plan under the same id")
            return self._unchanged(e, at, "plan seen before")
        if e.state != EntryState.GRANTED:
            # Decided before its plan arrived (a denial): keep the plan, so the entry is the
            # one an orderly arrival would have made.
            kept = replace(
                e, plan=plan, created_at=min(e.created_at, at), updated_at=max(e.updated_at, at)
            )
            return self._finish(e, kept, [], at)
        planned = replace(
            e, plan=plan, created_at=min(e.created_at, at), updated_at=max(e.updated_at, at)
        )
        assert e.granted_at is not None
        if ledger.decision_clock - e.granted_at > self._cfg.grant_max_age_ms:
            expired = replace(
                planned,
                state=EntryState.EXPIRED,
                release=ReleaseReason.ORDER_EXPIRED,
                note="GRANT_TOO_OLD",
            )
            return self._finish(e, expired, [], at)
        return self._enter(e, planned, ledger, max(e.granted_at, at))

    def on_decision(self, decision: Decision, ledger: Ledger) -> Step:
        """A line of the governor's decisions log, dispatched through DECISION_TABLE."""
        kind = str(decision.kind)
        row = DECISION_TABLE.get(kind)
        if row is None:
            raise UnknownDecisionKind(f"decision {decision.decision_id!r}: unknown kind {kind!r}")
        action, reason = row
        if action == DecisionAction.NONE:
            return Step()
        intent_id = decision.intent_id
        if not intent_id or not intent_id.strip():
            raise invalid(f"decision {decision.decision_id!r} ({kind}) names no intent")
        e = ledger.get(intent_id)
        if e is not None:
            if decision.symbol is not None and decision.symbol != e.symbol:
                raise invalid(
                    f"decision {decision.decision_id!r}: intent {intent_id!r} is on {e.symbol}, "
                    f"the decision says {decision.symbol}"
                )
            if decision.decision_id in e.decisions:
                return self._unchanged(e, decision.event_time_ms, "decision seen before")
        return self._actions[action](decision, e, ledger, reason)

    def on_exit_intent(self, exit_intent: ExitIntent, ledger: Ledger) -> Step:
        """A reduce-only exit of (part of) an open position."""
        x = exit_intent
        if not x.exit_id.strip() or not x.position_intent_id.strip():
            raise invalid("exit intent without exit_id or position_intent_id")
        if x.quantity <= 0:
            raise invalid(f"exit {x.exit_id!r}: quantity {x.quantity} must be > 0")
        at = x.event_time_ms
        e = ledger.get(x.position_intent_id)
        if e is None:
            raise UnknownIntent(f"exit {x.exit_id!r} for unknown intent {x.position_intent_id!r}")
        if e.symbol != x.symbol:
            raise invalid(f"exit {x.exit_id!r} is for {x.symbol}, the position is on {e.symbol}")
        if any(r.exit_id == x.exit_id for r in e.orders):
            return self._unchanged(e, at, "exit seen before")
        if e.state != EntryState.FILLED or e.open_quantity <= 0:
            return self._unchanged(e, at, f"exit {x.exit_id!r}: no open position ({e.state.value})")
        free = e.open_quantity - _pending_reduce(e)
        if free <= 0:
            return self._unchanged(e, at, f"exit {x.exit_id!r}: the position is already closing")
        entry = e.entry_order
        assert entry is not None
        order = PlaceOrder(
            client_order_id=ids.client_order_id(ids.EXIT_TAG, x.exit_id),
            intent_id=e.intent_id,
            symbol=e.symbol,
            side=_opposite(entry.order.side),
            order_type=OrderType.MARKET,
            quantity=min(x.quantity, free),
            trigger_price=None,
            reduce_only=True,
            role=OrderRole.EXIT,
            exit_reason=x.reason,
            leverage=None,
            event_time_ms=at,
        )
        if ledger.find_order(order.client_order_id) is not None:
            raise invalid(f"exit {x.exit_id!r}: its client order id is taken by another order")
        new = replace(
            e, orders=(*e.orders, _record(order, exit_id=x.exit_id)), updated_at=_later(e, at)
        )
        return self._finish(e, new, [order], at)

    def on_execution_result(self, result: ExecutionResult, ledger: Ledger) -> Step:
        """An exchange report about one order: acknowledged, (partly) filled, or ended."""
        r = result
        at = r.event_time_ms
        if r.status == OrderStatus.SENT:
            raise invalid(f"result for {r.client_order_id!r} with the ledger-only status SENT")
        found = ledger.find_order(r.client_order_id)
        if found is None:
            if r.role == OrderRole.LIQUIDATION:
                return self._liquidation(r, ledger)
            raise UnknownOrder(
                f"result for client order id {r.client_order_id!r} (intent {r.intent_id!r}, "
                f"{r.symbol}) that this ledger never wrote"
            )
        e, rec = found
        if r.symbol != e.symbol or (r.intent_id and r.intent_id != e.intent_id):
            raise invalid(
                f"result for {r.client_order_id!r} names {r.intent_id!r}/{r.symbol}, "
                f"the ledger has {e.intent_id!r}/{e.symbol}"
            )
        if r.status == OrderStatus.REJECTED and (r.reason or "").startswith(
            DUPLICATE_CLIENT_ORDER_ID
        ):
            return self._unchanged(e, at, "the exchange refused a resend of a known order")
        if rec.role != OrderRole.LIQUIDATION and r.filled_quantity > rec.order.quantity:
            raise invalid(
                f"result for {r.client_order_id!r}: filled {r.filled_quantity} exceeds the "
                f"order's quantity {rec.order.quantity}"
            )
        merged = _merge(rec, r)
        if merged is None:
            return self._unchanged(e, at, "result seen before or older than the ledger's")
        new = _replace_order(e, merged, at)
        if (
            rec.role in PROTECTIVE_ROLES
            and merged.status in FINAL_ORDER_STATUSES
            and merged.status != OrderStatus.FILLED
            and not merged.cancel_requested
            and self._cfg.close_when_unprotected
            and new.close_reason is None
            and new.state == EntryState.FILLED
            and new.open_quantity > 0
        ):
            new = replace(new, close_reason=_PROTECTIVE_REASON[rec.role])
        orders: list[ExchangeCommand] = []
        new = self._settle(new, at, orders)
        return self._finish(e, new, orders, at)

    def on_order_missing(self, client_order_id: str, ledger: Ledger, now_ms: int) -> Step:
        """The exchange does not know an order the ledger has as SENT (restart recovery).

        An entry sent longer ago than grant_max_age_ms is not resent (its reservation has
        lapsed): it ends EXPIRED. A cancel-requested order ends CANCELED. Anything else is
        resent as it was, same client order id.
        """
        found = ledger.find_order(client_order_id)
        if found is None:
            raise UnknownOrder(f"lookup of client order id {client_order_id!r}: not in the ledger")
        e, rec = found
        if rec.status != OrderStatus.SENT:
            return Step(notes=(f"{client_order_id}: already {rec.status.value}",))
        sent = e.sent_at if e.sent_at is not None else rec.order.event_time_ms
        if rec.cancel_requested:
            ended = replace(rec, status=OrderStatus.CANCELED, reason="NOT_FOUND_AT_EXCHANGE")
        elif rec.role == OrderRole.ENTRY and now_ms - sent > self._cfg.grant_max_age_ms:
            ended = replace(rec, status=OrderStatus.EXPIRED, reason="NOT_FOUND_AT_EXCHANGE")
        else:
            return Step(orders=(rec.order,), notes=(f"{client_order_id}: resend",))
        new = _replace_order(e, replace(ended, updated_at=max(rec.updated_at, now_ms)), now_ms)
        orders: list[ExchangeCommand] = []
        new = self._settle(new, now_ms, orders)
        return self._finish(e, new, orders, now_ms)

    # ---- maintenance -------------------------------------------------------------------------

    def pending_orders(self, ledger: Ledger) -> list[PlaceOrder]:
        """Orders in the ledger the exchange never acknowledged: look each up by client
        order id before anything is resent (restart recovery)."""
        return [r.order for e in ledger for r in e.orders if r.status == OrderStatus.SENT]

    def pending_cancels(self, ledger: Ledger) -> list[CancelOrder]:
        """Cancels the ledger decided whose order may still be open: send them again after a
        restart (after `on_order_missing` for the SENT ones the exchange does not know).
        Canceling an order the exchange has finished is harmless."""
        return [
            CancelOrder(r.order, r.updated_at)
            for e in ledger
            for r in e.orders
            if r.cancel_requested and r.is_open
        ]

    def prune(self, ledger: Ledger, now_ms: int) -> Step:
        """Forget terminal entries, and plans or grants that never went anywhere, whose last
        change is ledger_retention_ms or more before `now_ms` (the decision clock)."""
        horizon = now_ms - self._cfg.ledger_retention_ms
        gone = tuple(
            Forget(e.intent_id)
            for e in ledger
            if e.updated_at <= horizon
            and (e.state in TERMINAL_STATES or e.state in (EntryState.PLANNED, EntryState.GRANTED))
        )
        return Step(ledger_updates=gone)

    def implied_commands(
        self, entry: IntentEntry, event_time_ms: int
    ) -> tuple[GovernorCommand, ...]:
        """The governor commands an entry's state stands for (deterministic ids)."""
        out: list[GovernorCommand] = []
        if entry.entry_filled > 0:
            out.append(
                SlotFilled(
                    command_id=ids.filled_command_id(entry.intent_id),
                    intent_id=entry.intent_id,
                    symbol=entry.symbol,
                    event_time_ms=event_time_ms,
                )
            )
        if entry.release is not None:
            out.append(
                SlotRelease(
                    command_id=ids.release_command_id(entry.intent_id, entry.release),
                    symbol=entry.symbol,
                    intent_id=entry.intent_id,
                    reason=entry.release,
                    event_time_ms=event_time_ms,
                )
            )
        return tuple(out)

    # ---- decision actions --------------------------------------------------------------------

    def _granted(
        self, d: Decision, e: IntentEntry | None, ledger: Ledger, _reason: ExitReason | None
    ) -> Step:
        at = d.event_time_ms
        if d.symbol is None:
            raise invalid(f"GRANTED {d.decision_id!r} names no symbol")
        if ledger.decision_clock - at > self._cfg.grant_max_age_ms:
            note = f"grant {d.decision_id!r} older than grant_max_age_ms: no order"
            if e is None:
                return Step(notes=(note,))
            if e.state != EntryState.PLANNED:
                return self._unchanged(e, at, note)
            expired = replace(
                e,
                state=EntryState.EXPIRED,
                granted_at=at,
                decided_at=_max(e.decided_at, at),
                release=ReleaseReason.ORDER_EXPIRED,
                note="GRANT_TOO_OLD",
                decisions=(*e.decisions, d.decision_id),
                updated_at=_later(e, at),
            )
            return self._finish(e, expired, [], at)
        if e is None:
            waiting = IntentEntry(
                intent_id=d.intent_id or "",
                symbol=d.symbol,
                state=EntryState.GRANTED,
                plan=None,
                granted_at=at,
                decided_at=at,
                sent_at=None,
                closed_at=None,
                close_reason=None,
                release=None,
                note=None,
                decisions=(d.decision_id,),
                orders=(),
                created_at=at,
                updated_at=at,
            )
            return Step(ledger_updates=(waiting,))
        if e.state != EntryState.PLANNED:
            return self._unchanged(e, at, f"grant for an intent already {e.state.value}: no order")
        granted = replace(
            e,
            granted_at=at,
            decided_at=_max(e.decided_at, at),
            decisions=(*e.decisions, d.decision_id),
            updated_at=_later(e, at),
        )
        return self._enter(e, granted, ledger, at)

    def _denied(
        self, d: Decision, e: IntentEntry | None, ledger: Ledger, _reason: ExitReason | None
    ) -> Step:
        at = d.event_time_ms
        if e is None:  # remembered, so a plan arriving later is not left waiting
            denied_first = IntentEntry(
                intent_id=d.intent_id or "",
                symbol=d.symbol or "",
                state=EntryState.DENIED,
                plan=None,
                granted_at=None,
                decided_at=at,
                sent_at=None,
                closed_at=None,
                close_reason=None,
                release=None,
                note=_deny_note(d),
                decisions=(d.decision_id,),
                orders=(),
                created_at=at,
                updated_at=at,
            )
            if not denied_first.symbol:
                raise invalid(f"DENIED {d.decision_id!r} names no symbol")
            return Step(ledger_updates=(denied_first,))
        if e.state not in (EntryState.PLANNED, EntryState.GRANTED):
            return self._unchanged(e, at, f"{d.kind} for an intent already {e.state.value}")
        denied = replace(
            e,
            state=EntryState.DENIED,
            decided_at=_max(e.decided_at, at),
            note=_deny_note(d),
            decisions=(*e.decisions, d.decision_id),
            updated_at=_later(e, at),
        )
        return self._finish(e, denied, [], at)

    def _expired(
        self, d: Decision, e: IntentEntry | None, ledger: Ledger, _reason: ExitReason | None
    ) -> Step:
        if e is None:
            return Step(notes=(f"EXPIRED for unknown intent {d.intent_id!r}",))
        at = d.event_time_ms
        seen = replace(
            e,
            decided_at=_max(e.decided_at, at),
            decisions=(*e.decisions, d.decision_id),
            updated_at=_later(e, at),
        )
        if e.state in (EntryState.PLANNED, EntryState.GRANTED):
            return self._finish(
                e, replace(seen, state=EntryState.EXPIRED, note="reservation expired"), [], at
            )
        orders: list[ExchangeCommand] = []
        entry = e.entry_order
        if e.state in (EntryState.SENT, EntryState.ACKED) and entry is not None:
            # The slot is gone; an unfilled entry must not fill now. If it does anyway, the
            # fill goes to the governor as a late fill like any other.
            seen = self._cancel(seen, entry, at, orders)
        return self._finish(e, seen, orders, at)

    def _close_decision(
        self, d: Decision, e: IntentEntry | None, ledger: Ledger, reason: ExitReason | None
    ) -> Step:
        assert reason is not None
        if e is None:
            raise UnknownIntent(f"{d.kind} {d.decision_id!r} for unknown intent {d.intent_id!r}")
        at = d.event_time_ms
        seen = replace(
            e,
            decided_at=_max(e.decided_at, at),
            decisions=(*e.decisions, d.decision_id),
            updated_at=_later(e, at),
        )
        if e.state in TERMINAL_STATES:
            return self._finish(e, seen, [], at)
        if seen.close_reason is None:
            seen = replace(seen, close_reason=reason)
        orders: list[ExchangeCommand] = []
        new = self._settle(seen, at, orders)
        return self._finish(e, new, orders, at)

    # ---- rules -------------------------------------------------------------------------------

    def _enter(self, old: IntentEntry, e: IntentEntry, ledger: Ledger, now: int) -> Step:
        """Place the one entry order, or block the grant (and give the slot back)."""
        plan = e.plan
        assert plan is not None
        blocked: str | None = None
        live = [x for x in ledger.live_on(e.symbol) if x.intent_id != e.intent_id]
        if live:
            blocked = f"ANTI_PYRAMIDING: {live[0].intent_id} is {live[0].state.value}"
        elif e.close_reason is not None:
            blocked = f"CLOSE_REQUESTED: {e.close_reason.value} before the entry"
        else:
            last = _last_activity(ledger, e.symbol, e.intent_id)
            if last is not None and now - last < self._cfg.symbol_cooldown_ms:
                blocked = f"COOLDOWN: last entry or close on {e.symbol} at {last}"
        if blocked is not None:
            out = replace(
                e, state=EntryState.BLOCKED, release=ReleaseReason.ORDER_REJECTED, note=blocked
            )
            return self._finish(old, out, [], now)
        order = PlaceOrder(
            client_order_id=ids.client_order_id(ids.ENTRY_TAG, e.intent_id),
            intent_id=e.intent_id,
            symbol=e.symbol,
            side=entry_side(plan.side),
            order_type=OrderType.MARKET,
            quantity=plan.quantity,
            trigger_price=None,
            reduce_only=False,
            role=OrderRole.ENTRY,
            exit_reason=None,
            leverage=plan.leverage,
            event_time_ms=now,
        )
        if ledger.find_order(order.client_order_id) is not None:
            raise invalid(f"intent {e.intent_id!r}: its entry client order id is taken")
        sent = replace(
            e,
            state=EntryState.SENT,
            sent_at=now,
            orders=(*e.orders, _record(order)),
            updated_at=max(e.updated_at, now),
        )
        return self._finish(old, sent, [order], now)

    def _settle(self, e: IntentEntry, at: int, orders: list[ExchangeCommand]) -> IntentEntry:
        """Bring an entry's state in line with its orders, adding the orders that implies."""
        entry = e.entry_order
        if entry is None or e.state in (EntryState.REJECTED, EntryState.EXPIRED):
            return e
        entry_final = entry.status in FINAL_ORDER_STATUSES
        filled = e.entry_filled
        if filled <= 0:
            if not entry_final:
                if e.state == EntryState.SENT and entry.status != OrderStatus.SENT:
                    return replace(e, state=EntryState.ACKED)
                return e
            if entry.status == OrderStatus.REJECTED:
                return replace(
                    e,
                    state=EntryState.REJECTED,
                    release=ReleaseReason.ORDER_REJECTED,
                    note=entry.reason,
                )
            return replace(
                e, state=EntryState.EXPIRED, release=ReleaseReason.ORDER_EXPIRED, note=entry.reason
            )
        if e.state in (EntryState.SENT, EntryState.ACKED):
            e = replace(e, state=EntryState.FILLED)
        if e.open_quantity <= 0:
            if not entry_final:
                return self._cancel(e, entry, at, orders)  # flat while the entry still works
            if e.state != EntryState.CLOSED:
                e = replace(e, state=EntryState.CLOSED, closed_at=at)
            for rec in e.orders:
                if rec.role in REDUCING_ROLES and rec.is_open:
                    e = self._cancel(e, rec, at, orders)
            return e
        if e.close_reason is not None:
            if not entry_final:
                e = self._cancel(e, entry, at, orders)
            return self._close(e, at, orders)
        if entry_final and not any(r.role in PROTECTIVE_ROLES for r in e.orders):
            return self._protect(e, at, orders)
        return e

    def _close(self, e: IntentEntry, at: int, orders: list[ExchangeCommand]) -> IntentEntry:
        """A reduce-only market order for whatever is open and not already being closed."""
        closes = e.orders_with(OrderRole.CLOSE)
        if any(r.is_open and not r.cancel_requested for r in closes):
            return e
        failed = sum(
            1 for r in closes if r.status in FINAL_ORDER_STATUSES and r.filled_quantity == 0
        )
        if failed >= MAX_CLOSE_ATTEMPTS:
            note = f"CLOSE_FAILED: {failed} close orders ended unfilled; needs reconciliation"
            return e if e.note == note else replace(e, note=note)
        free = e.open_quantity - _pending_reduce(e)
        if free <= 0:
            return e
        entry = e.entry_order
        assert entry is not None and e.close_reason is not None
        order = PlaceOrder(
            client_order_id=ids.client_order_id(ids.close_tag(len(closes) + 1), e.intent_id),
            intent_id=e.intent_id,
            symbol=e.symbol,
            side=_opposite(entry.order.side),
            order_type=OrderType.MARKET,
            quantity=free,
            trigger_price=None,
            reduce_only=True,
            role=OrderRole.CLOSE,
            exit_reason=e.close_reason,
            leverage=None,
            event_time_ms=at,
        )
        orders.append(order)
        return replace(e, orders=(*e.orders, _record(order)))

    def _protect(self, e: IntentEntry, at: int, orders: list[ExchangeCommand]) -> IntentEntry:
        """Protective stop-loss and take-profit for the open quantity, from the average fill."""
        entry = e.entry_order
        assert entry is not None and e.plan is not None
        price = entry.average_price or e.plan.entry_price
        long = e.plan.side == Side.LONG
        qty = e.open_quantity
        placed: list[OrderRecord] = []
        for role, tag, otype, pct, level in (
            (
                OrderRole.STOP_LOSS,
                ids.STOP_LOSS_TAG,
                OrderType.STOP_MARKET,
                self._cfg.stop_loss_pct,
                e.plan.stop_loss,
            ),
            (
                OrderRole.TAKE_PROFIT,
                ids.TAKE_PROFIT_TAG,
                OrderType.TAKE_PROFIT_MARKET,
                self._cfg.take_profit_pct,
                e.plan.take_profit,
            ),
        ):
            # The loss side is below a long's entry and above a short's.
            below = long == (role == OrderRole.STOP_LOSS)
            trigger = self._level(e.symbol, price, pct, level, below)
            if trigger is None:
                continue
            order = PlaceOrder(
                client_order_id=ids.client_order_id(tag, e.intent_id),
                intent_id=e.intent_id,
                symbol=e.symbol,
                side=_opposite(entry.order.side),
                order_type=otype,
                quantity=qty,
                trigger_price=trigger,
                reduce_only=True,
                role=role,
                exit_reason=_PROTECTIVE_REASON[role],
                leverage=None,
                event_time_ms=at,
            )
            orders.append(order)
            placed.append(_record(order))
        if not placed:
            return e
        return replace(e, orders=(*e.orders, *placed))

    def _level(
        self, symbol: str, price: Decimal, pct: Decimal, level: Decimal | None, below: bool
    ) -> Decimal | None:
        """The trigger price, rounded to the tick toward the entry; None: place no order."""
        if self._cfg.use_intent_levels and level is not None and (level < price) == below:
            raw = level
        elif pct > 0:
            raw = price * (1 - pct) if below else price * (1 + pct)
        else:
            return None
        tick = self._ticks.get(symbol)
        if tick is not None and tick > 0:
            rounding = ROUND_CEILING if below else ROUND_FLOOR
            raw = (raw / tick).to_integral_value(rounding=rounding) * tick
        if raw <= 0 or raw == price or (raw < price) != below:
            return None
        return raw

    def _cancel(
        self, e: IntentEntry, rec: OrderRecord, at: int, orders: list[ExchangeCommand]
    ) -> IntentEntry:
        if rec.cancel_requested or not rec.is_open:
            return e
        orders.append(CancelOrder(rec.order, at))
        return _replace_order(e, replace(rec, cancel_requested=True), at)

    def _liquidation(self, r: ExecutionResult, ledger: Ledger) -> Step:
        """The exchange's liquidation order: it reduces the one open position on the symbol."""
        at = r.event_time_ms
        open_ = [x for x in ledger.live_on(r.symbol) if x.state == EntryState.FILLED]
        named = [x for x in open_ if x.intent_id == r.intent_id]
        candidates = named or open_
        if not candidates:
            raise UnknownOrder(f"liquidation {r.client_order_id!r} on {r.symbol}: no open position")
        e = candidates[0]
        entry = e.entry_order
        assert entry is not None
        order = PlaceOrder(
            client_order_id=r.client_order_id,
            intent_id=e.intent_id,
            symbol=e.symbol,
            side=r.order_side or _opposite(entry.order.side),
            order_type=r.order_type or OrderType.MARKET,
            quantity=r.filled_quantity,
            trigger_price=None,
            reduce_only=True,
            role=OrderRole.LIQUIDATION,
            exit_reason=ExitReason.LIQUIDATION,
            leverage=None,
            event_time_ms=at,
        )
        rec = replace(
            _record(order),
            status=r.status,
            filled_quantity=r.filled_quantity,
            average_price=r.average_price,
            updated_at=at,
        )
        new = replace(e, orders=(*e.orders, rec), updated_at=_later(e, at))
        orders: list[ExchangeCommand] = []
        new = self._settle(new, at, orders)
        return self._finish(e, new, orders, at)

    # ---- output ------------------------------------------------------------------------------

    def _finish(
        self, old: IntentEntry | None, new: IntentEntry, orders: list[ExchangeCommand], at: int
    ) -> Step:
        """The Step for old -> new: the new entry, its orders, and the governor commands the
        new state implies that the old one did not."""
        before = set() if old is None else {c.command_id for c in self.implied_commands(old, at)}
        commands = tuple(c for c in self.implied_commands(new, at) if c.command_id not in before)
        updates = () if new == old else (new,)
        return Step(ledger_updates=updates, orders=tuple(orders), commands=commands)

    def _unchanged(self, e: IntentEntry, at: int, note: str) -> Step:
        """An input that changes nothing (a redelivery, a stale report): send the entry's
        governor commands again, same ids, in case the first send was lost in a crash."""
        return Step(commands=self.implied_commands(e, at), notes=(f"{e.intent_id}: {note}",))


# ---- helpers ---------------------------------------------------------------------------------


def _check_plan(p: EntryPlan) -> None:
    if not p.intent_id.strip() or not p.symbol.strip():
        raise invalid("plan without intent_id or symbol")
    if p.quantity <= 0:
        raise invalid(f"plan {p.intent_id!r}: quantity {p.quantity} must be > 0 (sized)")
    if p.entry_price <= 0:
        raise invalid(f"plan {p.intent_id!r}: entry price {p.entry_price} must be > 0")
    if p.leverage < 1:
        raise invalid(f"plan {p.intent_id!r}: leverage {p.leverage} must be >= 1")
    for name, v in (("stop_loss", p.stop_loss), ("take_profit", p.take_profit)):
        if v is not None and v <= 0:
            raise invalid(f"plan {p.intent_id!r}: {name} {v} must be > 0")


def _deny_note(d: Decision) -> str:
    return "DENIED" if d.deny_reason is None else f"DENIED {d.deny_reason.value}"


def _record(order: PlaceOrder, exit_id: str | None = None) -> OrderRecord:
    return OrderRecord(
        order=order,
        status=OrderStatus.SENT,
        filled_quantity=ZERO,
        average_price=None,
        cancel_requested=False,
        exit_id=exit_id,
        reason=None,
        updated_at=order.event_time_ms,
    )


def _merge(rec: OrderRecord, r: ExecutionResult) -> OrderRecord | None:
    """The order record after report `r`, or None when `r` tells nothing new.

    A final status never changes; cumulative fills only grow; a lower status after a
    higher one (NEW after FILLED: the ack overtaken by the fill) is ignored.
    """
    if rec.status in FINAL_ORDER_STATUSES:
        return None
    filled = max(rec.filled_quantity, r.filled_quantity)
    status = r.status if _STATUS_RANK[r.status] >= _STATUS_RANK[rec.status] else rec.status
    avg = rec.average_price
    if r.average_price is not None and r.filled_quantity >= rec.filled_quantity:
        avg = r.average_price
    reason = r.reason if status != rec.status and r.reason else rec.reason
    if (status, filled, avg, reason) == (
        rec.status,
        rec.filled_quantity,
        rec.average_price,
        rec.reason,
    ):
        return None
    return replace(
        rec,
        status=status,
        filled_quantity=filled,
        average_price=avg,
        reason=reason,
        updated_at=max(rec.updated_at, r.event_time_ms),
    )


def _replace_order(e: IntentEntry, rec: OrderRecord, at: int) -> IntentEntry:
    orders = tuple(rec if r.client_order_id == rec.client_order_id else r for r in e.orders)
    return replace(e, orders=orders, updated_at=_later(e, at))


def _pending_reduce(e: IntentEntry) -> Decimal:
    """Quantity already on its way out: the unfilled rest of open market exits and closes."""
    return sum(
        (
            r.order.quantity - r.filled_quantity
            for r in e.orders
            if r.role in (OrderRole.EXIT, OrderRole.CLOSE) and r.is_open and not r.cancel_requested
        ),
        ZERO,
    )


def _last_activity(ledger: Ledger, symbol: str, except_intent: str) -> int | None:
    """Latest entry order or position close on `symbol` by another intent (cooldown start)."""
    times = [
        t
        for x in ledger.on_symbol(symbol)
        if x.intent_id != except_intent
        for t in (x.sent_at, x.closed_at)
        if t is not None
    ]
    return max(times, default=None)


def _later(e: IntentEntry, at: int) -> int:
    return max(e.updated_at, at)


def _max(a: int | None, b: int) -> int:
    return b if a is None else max(a, b)


__all__ = [
    "DECISION_TABLE",
    "LIVE_STATES",
    "DecisionAction",
    "ExecutionCore",
    "entry_side",
]
