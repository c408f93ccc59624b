"""The live venue agent's pure core: one `orders` record in, the REST calls to make, and
from their answers the execution reports, governor commands and alerts out.

The shell drives it call by call::

    step = core.start(order)
    while step.call is not None:
        step = core.advance(step.call, answer_of(step.call))

`answer_of` is a `Found` (the exchange has the order), `None` (a lookup found nothing),
`Done` (a call with nothing to read) or a failure outcome of `exchange.binance.errors`
(`Rejected`, `RetryAfter`, `Halt`, `Unknown`). The rules (docs/binance-venue.md):

- **the table first.** Every client id received is remembered (`SentOrder`). An order
  whose id is known is never placed again: its resend is answered from a lookup by client
  id (or from the table when Binance has forgotten it); another order under a known id is
  refused as `DUPLICATE_CLIENT_ORDER_ID`, which the execution core ignores.
- **the lookup second.** An id not in the table is looked up before it is placed
  (`lookup_before_send`): the table is written after the record, so an order placed just
  before a crash is found at Binance instead of placed twice.
- `Rejected` -> a REJECTED report `"<reason>: <code> <msg>"` (execution releases the slot);
- `Unknown` -> look the order up by client id, again after `lookup_backoff_ms` while the
  lookups fail, and place it again only when Binance twice says it does not know it;
  when every lookup fails the id is left UNRESOLVED with an alert, no report (the order
  may exist), and the next delivery of the order asks again;
- `RetryAfter` -> WAIT the time asked, then the same call; past `max_wait_ms` for one
  order a REJECTED `RATE_LIMITED` (nothing was sent);
- `Halt` -> a `Halt` command for the governor, a VENUE_HALT alert, and every order until
  the process restarts REJECTED `VENUE_HALTED` without a call (an order whose placement's
  outcome is unknown stays UNRESOLVED instead: it may exist).

Fills are not reported here: a placement's answer has no trade id, so they come from the
user-data stream (`agents.binance_exchange.userstream`), which positions dedupes by trade
id. Every report echoes the order (intent, side, type, reduce-only, role, exit reason,
trigger, leverage) like the paper exchange's.

No clock, no I/O: every time is the order's event time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from agents.binance_exchange.config import BinanceVenueConfig
from agents.binance_exchange.model import (
    Alert,
    AlertKind,
    Call,
    CallKind,
    Done,
    EventSource,
    Found,
    Outcome,
    SentOrder,
    SentState,
    UserEventRecord,
)
from agents.governor.model import Halt as HaltCommand
from agents.paper_exchange.model import (
    DUPLICATE_CLIENT_ORDER_ID,
    LIQUIDATION_REASON,
    LIQUIDATION_ROLE,
    Holder,
    OrderAction,
    ReportStatus,
    VenueOrder,
    VenueReport,
)
from exchange.binance.errors import Halt, Rejected, RetryAfter, Unknown
from exchange.binance.userstream import (
    AlgoStatus,
    AlgoUpdate,
    Fill,
    FillDeduplicator,
    OrderUpdate,
    fill_from_user_trade,
    parse_event,
)
from exchange.model import OrderSide, OrderType
from quantum.errors import InvalidRecord
from quantum.records import from_avro, to_avro

ZERO = Decimal(0)
PROCESSOR = "binance_exchange"
SNAPSHOT_VERSION = 1
PLACEABLE = frozenset({OrderType.MARKET, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET})
ALGO_TYPES = frozenset({OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET})

Answer = Found | Done | Rejected | RetryAfter | Halt | Unknown | None

# Binance statuses -> execution.results statuses. An algo order that triggered became a
# plain order whose fills the user stream reports under the algo's client id.
_PLAIN_STATUS = {
    "NEW": ReportStatus.NEW,
    "PARTIALLY_FILLED": ReportStatus.PARTIALLY_FILLED,
    "FILLED": ReportStatus.FILLED,
    "CANCELED": ReportStatus.CANCELED,
    "EXPIRED": ReportStatus.EXPIRED,
    "EXPIRED_IN_MATCH": ReportStatus.EXPIRED,
    "REJECTED": ReportStatus.REJECTED,
}
_ALGO_STATUS = {
    "NEW": ReportStatus.NEW,
    "TRIGGERING": ReportStatus.NEW,
    "TRIGGERED": ReportStatus.NEW,
    "FINISHED": ReportStatus.NEW,
    "CANCELED": ReportStatus.CANCELED,
    "EXPIRED": ReportStatus.EXPIRED,
    "REJECTED": ReportStatus.REJECTED,
}
_ENDED_UNFILLED = frozenset({ReportStatus.CANCELED, ReportStatus.EXPIRED, ReportStatus.REJECTED})


def is_algo(order: VenueOrder) -> bool:
    """Conditional types go through the Algo Order API (clientAlgoId = client order id)."""
    return order.order_type in ALGO_TYPES


@dataclass(slots=True)
class _Progress:
    """The order being worked on and what its calls have cost so far."""

    order: VenueOrder
    resend: bool  # the id was in the table: this is a resend to answer
    maybe_sent: bool = False  # a placement's outcome was unknown: the order may exist
    waited_ms: int = 0
    lookups: int = 0  # lookups that failed (no answer)
    not_found: int = 0  # lookups after an unknown placement that found nothing
    retry: Call | None = None  # the call a WAIT repeats
    failures: int = 0  # unknown outcomes of leverage / margin calls


@dataclass(frozen=True, slots=True)
class Step:
    """The next call to make (None: the order is done) and, when done, its outcome."""

    call: Call | None
    outcome: Outcome = field(default_factory=Outcome)


class BinanceVenueCore:
    """The table of client ids and the per-order call machine (module docstring)."""

    def __init__(self, config: BinanceVenueConfig | None = None) -> None:
        self._cfg = config or BinanceVenueConfig()
        self._sent: dict[str, SentOrder] = {}
        self._leverage: dict[str, int] = {}
        self._margin_set: set[str] = set()
        self._halted: str | None = None
        self._clock = 0
        self._seq = 0
        self._changes: dict[str, SentOrder | None] = {}
        self._progress: _Progress | None = None
        self._dedup = FillDeduplicator(self._cfg.fill_memory_ms)
        self._liquidations: dict[str, int] = {}  # fill key -> trade time (no order of ours)
        self._by_order_id: dict[int, str] = {}  # Binance orderId -> our client id
        self._algo_links: dict[int, str] = {}  # a triggered algo's orderId -> its client id
        self._holders: dict[str, Holder] = {}
        self._orphans: dict[int, list[Fill]] = {}  # fills of orders not (yet) known, by orderId

    # ---- queries ----------------------------------------------------------------------------

    @property
    def halted(self) -> str | None:
        return self._halted

    def known(self, client_order_id: str) -> SentOrder | None:
        return self._sent.get(client_order_id)

    def leverage(self, symbol: str) -> int | None:
        return self._leverage.get(symbol)

    # ---- one order ---------------------------------------------------------------------------

    def start(self, order: VenueOrder) -> Step:
        """The first call for an `orders` record (or its outcome when it needs none)."""
        if self._progress is not None:
            raise RuntimeError("start() before the previous order finished")
        self._clock = max(self._clock, order.event_time_ms)
        coid = order.client_order_id
        known = self._sent.get(coid)
        if order.action == OrderAction.CANCEL:
            return self._start_cancel(order, known)
        if known is not None and not known.order.same_order(order):
            return self._finish(
                reports=[
                    self._report(
                        order,
                        ReportStatus.REJECTED,
                        order.event_time_ms,
                        f"{DUPLICATE_CLIENT_ORDER_ID}: {coid} was received before as another order",
                    )
                ],
                notes=[f"{coid}: another order under a known id"],
            )
        if order.order_type not in PLACEABLE:
            return self._reject_new(order, f"UNSUPPORTED_ORDER_TYPE: {order.order_type}")
        if self._halted is not None:
            if known is not None and known.state in (SentState.ACKED, SentState.FINAL):
                return self._answer_from_table(order, known)
            return self._reject_new(order, f"VENUE_HALTED: {self._halted}")
        self._progress = _Progress(order, resend=known is not None)
        if known is None:
            self._put(SentOrder(order, SentState.SENDING, "", None, order.event_time_ms))
            if not self._cfg.lookup_before_send:
                return Step(self._next_send_call(order))
        elif known.state is SentState.UNRESOLVED or known.state is SentState.SENDING:
            self._progress.maybe_sent = True
        return Step(Call(CallKind.LOOKUP, order))

    def advance(self, call: Call, answer: Answer) -> Step:
        """The answer to `call`; the next call, or the order's outcome."""
        p = self._progress
        if p is None or call.order is not p.order:
            raise RuntimeError("advance() for a call the core did not ask for")
        if call.kind is CallKind.WAIT:
            assert p.retry is not None
            retry, p.retry = p.retry, None
            return Step(retry)
        if isinstance(answer, RetryAfter):
            return self._on_retry_after(p, call, answer)
        if isinstance(answer, Halt):
            return self._on_halt(p, answer)
        if call.kind is CallKind.LOOKUP:
            return self._on_lookup(p, answer)
        if call.kind is CallKind.PLACE:
            return self._on_place(p, answer)
        if call.kind is CallKind.CANCEL:
            return self._on_cancel(p, answer)
        return self._on_setting(p, call, answer)

    # ---- answers -------------------------------------------------------------------------

    def _on_lookup(self, p: _Progress, answer: Answer) -> Step:
        order = p.order
        if isinstance(answer, Found):
            return self._answer_found(order, answer)
        if answer is None:
            if order.action == OrderAction.CANCEL:
                return self._finish(notes=[f"cancel of {order.client_order_id}: not at Binance"])
            known = self._sent.get(order.client_order_id)
            if p.resend and known is not None and known.state is SentState.FINAL:
                return self._answer_from_table(order, known)  # Binance forgot it; we did not
            if p.maybe_sent and p.not_found == 0:
                # a lost answer's order may not show yet: ask once more before placing
                p.not_found += 1
                return self._wait_then(p, Call(CallKind.LOOKUP, order), self._backoff())
            return Step(self._next_send_call(order))
        if isinstance(answer, Unknown | Rejected):  # the lookup itself got no answer
            p.lookups += 1
            if p.lookups < self._cfg.lookup_attempts:
                return self._wait_then(p, Call(CallKind.LOOKUP, order), self._backoff())
            if p.maybe_sent or order.action == OrderAction.CANCEL:
                return self._unresolved(order, f"lookup failed {p.lookups} times: {answer}")
            return self._reject_new(order, f"VENUE_UNAVAILABLE: lookup before sending: {answer}")
        raise TypeError(f"unexpected answer to a lookup: {answer!r}")

    def _on_place(self, p: _Progress, answer: Answer) -> Step:
        order = p.order
        if isinstance(answer, Found):
            return self._answer_found(order, answer)
        if isinstance(answer, Rejected):
            if p.maybe_sent:  # an earlier attempt may have placed it (-4116: it did)
                return self._answer_rejected_resend(order, answer)
            return self._reject_new(order, f"{answer.reason}: {answer.code} {answer.message}")
        if isinstance(answer, Unknown):
            p.maybe_sent = True
            return Step(Call(CallKind.LOOKUP, order))
        raise TypeError(f"unexpected answer to a placement: {answer!r}")

    def _answer_rejected_resend(self, order: VenueOrder, answer: Rejected) -> Step:
        if answer.code == -4116:  # open under this id: the first attempt got through
            return self._finish(notes=[f"{order.client_order_id}: already open at Binance"])
        return self._reject_new(order, f"{answer.reason}: {answer.code} {answer.message}")

    def _on_cancel(self, p: _Progress, answer: Answer) -> Step:
        order = p.order
        coid = order.client_order_id
        if isinstance(answer, Done):
            known = self._sent.get(coid)
            base = known.order if known is not None else order
            self._mark(coid, SentState.FINAL, ReportStatus.CANCELED, "CANCELED", order)
            report = self._report(base, ReportStatus.CANCELED, order.event_time_ms, "CANCELED")
            return self._finish(reports=[report])
        if isinstance(answer, Rejected):  # not open (-2011): not a report about the order
            return self._finish(notes=[f"cancel of {coid}: {answer.reason} ({answer.code})"])
        if isinstance(answer, Unknown):
            return Step(Call(CallKind.LOOKUP, order))
        raise TypeError(f"unexpected answer to a cancel: {answer!r}")

    def _on_setting(self, p: _Progress, call: Call, answer: Answer) -> Step:
        order = p.order
        if isinstance(answer, Done):
            if call.kind is CallKind.SET_MARGIN:
                self._margin_set.add(order.symbol)
            elif order.leverage is not None:
                self._leverage[order.symbol] = order.leverage
            return Step(self._next_send_call(order))
        if isinstance(answer, Rejected):
            if call.kind is CallKind.SET_MARGIN:
                # e.g. -4048 (a position or open orders exist): the order can still go at
                # the symbol's current margin type; note it and do not ask again
                self._margin_set.add(order.symbol)
                return Step(self._next_send_call(order))
            return self._reject_new(order, f"{answer.reason}: {answer.code} {answer.message}")
        if isinstance(answer, Unknown):  # leverage and margin type are idempotent: ask again
            p.failures += 1
            if p.failures < self._cfg.lookup_attempts:
                return self._wait_then(p, call, self._backoff())
            return self._reject_new(order, f"VENUE_UNAVAILABLE: {call.kind}: {answer}")
        raise TypeError(f"unexpected answer to {call.kind}: {answer!r}")

    def _on_retry_after(self, p: _Progress, call: Call, answer: RetryAfter) -> Step:
        if p.waited_ms + answer.ms <= self._cfg.max_wait_ms:
            p.waited_ms += answer.ms
            return self._wait_then(p, call, answer.ms, count=False)
        order = p.order
        reason = f"RATE_LIMITED: waited {p.waited_ms} ms, asked {answer.ms} more ({answer.message})"
        if call.kind is CallKind.CANCEL:
            return self._finish(notes=[f"cancel of {order.client_order_id}: {reason}"])
        if p.maybe_sent:
            return self._unresolved(order, reason)
        return self._reject_new(order, reason)

    def _on_halt(self, p: _Progress, answer: Halt) -> Step:
        order = p.order
        reason = f"HTTP {answer.status} code {answer.code}: {answer.message}"
        self._halted = reason
        at = order.event_time_ms
        command = HaltCommand(
            command_id=f"{PROCESSOR}:halt:{order.client_order_id}:{at}",
            reason=f"binance: {reason}",
            event_time_ms=at,
        )
        alert = self._alert(AlertKind.VENUE_HALT, order, f"trading halted: {reason}")
        if p.maybe_sent:
            done = self._unresolved(order, f"halted while unknown: {reason}")
        elif order.action == OrderAction.CANCEL:
            done = self._finish(notes=[f"cancel of {order.client_order_id}: halted"])
        else:
            done = self._reject_new(order, f"VENUE_HALTED: {reason}")
        o = done.outcome
        return Step(None, replace(o, commands=(command, *o.commands), alerts=(alert, *o.alerts)))

    # ---- the user-data stream ----------------------------------------------------------------

    def on_user_event(self, record: UserEventRecord) -> Outcome:
        """One binance.user-events record: a stream message or a resynced userTrades row.

        Fills pass the `FillDeduplicator` once whatever their source, so a reconnect's
        resync and the stream's late copy of the same fill make one report. Raises
        `InvalidRecord` for a payload that is not JSON or not an event of its type."""
        try:
            payload = json.loads(record.payload)
        except ValueError:
            bad = f"{record.event_id}: payload is not JSON"
            raise InvalidRecord("INVALID_VALUE", bad) from None
        self._clock = max(self._clock, record.event_time_ms)
        if record.source is EventSource.RESYNC:
            order_id = payload.get("orderId") if isinstance(payload, dict) else None
            coid = self._client_id_of(order_id)
            outcome = self._on_fill(fill_from_user_trade(payload, coid or ""), None)
        else:
            event = parse_event(payload)
            if isinstance(event, OrderUpdate):
                outcome = self._on_order_update(event)
            elif isinstance(event, AlgoUpdate):
                outcome = self._on_algo_update(event)
            else:
                outcome = Outcome(notes=(f"{type(event).__name__}: nothing to report",))
        self._dedup.prune_keys(self._clock)
        horizon = self._clock - self._cfg.fill_memory_ms
        for key in [k for k, t in self._liquidations.items() if t < horizon]:
            del self._liquidations[key]
        for order_id in [i for i, fs in self._orphans.items() if fs[-1].trade_time_ms < horizon]:
            del self._orphans[order_id]
        return outcome

    def _client_id_of(self, order_id: object) -> str | None:
        if isinstance(order_id, bool) or not isinstance(order_id, int):
            return None
        return self._by_order_id.get(order_id) or self._algo_links.get(order_id)

    def _owner(self, client_order_id: str, order_id: int) -> SentOrder | None:
        """Our order an update is about: by client id, else a triggered algo's by orderId."""
        known = self._sent.get(client_order_id)
        if known is not None:
            return known
        linked = self._algo_links.get(order_id)
        return self._sent.get(linked) if linked is not None else None

    def _on_order_update(self, u: OrderUpdate) -> Outcome:
        if u.is_fill:
            return self._on_fill(Fill.of(u), u)
        known = self._owner(u.client_order_id, u.order_id)
        if known is None:
            return self._foreign(u.symbol, u.client_order_id, u.event_time_ms, str(u.status))
        if not is_algo(known.order):
            self._by_order_id[u.order_id] = known.order.client_order_id
        status = _PLAIN_STATUS.get(u.status)
        if status is None or status is ReportStatus.FILLED:
            return Outcome(notes=(f"{u.client_order_id}: {u.status} needs no report",))
        if is_algo(known.order) and status is ReportStatus.NEW:
            return Outcome(notes=(f"{u.client_order_id}: triggered algo order placed",))
        return self._status_report(known, status, u.event_time_ms, f"BINANCE_{u.status}")

    def _on_algo_update(self, u: AlgoUpdate) -> Outcome:
        known = self._sent.get(u.client_algo_id)
        if known is None:
            return self._foreign(u.symbol, u.client_algo_id, u.event_time_ms, str(u.status))
        claimed = Outcome()
        if u.actual_order_id.isdigit():
            actual = int(u.actual_order_id)
            self._algo_links[actual] = u.client_algo_id
            claimed = self._claim_orphans(actual)
        status = _ALGO_STATUS[str(u.status)]
        if u.status in (AlgoStatus.TRIGGERING, AlgoStatus.TRIGGERED, AlgoStatus.FINISHED):
            note = f"{u.client_algo_id}: algo {u.status}"
            return replace(claimed, notes=(*claimed.notes, note))
        reason = None if status is ReportStatus.NEW else (u.reject_reason or f"BINANCE_{u.status}")
        return self._status_report(known, status, u.event_time_ms, reason)

    def _status_report(
        self, known: SentOrder, status: ReportStatus, at: int, reason: str | None
    ) -> Outcome:
        order = known.order
        final = status in _ENDED_UNFILLED
        if known.state is SentState.FINAL and final and known.status == status:
            return Outcome(notes=(f"{order.client_order_id}: already {status}",))
        stamped = replace(order, event_time_ms=at)
        self._mark(
            order.client_order_id,
            SentState.FINAL if final else SentState.ACKED,
            status,
            reason if final else None,
            stamped,
        )
        report = replace(
            self._report(order, status, at, reason if final else None),
            filled_quantity=known.filled_quantity,
            average_price=_average(known),
        )
        return Outcome(reports=(report,))

    def _on_fill(self, fill: Fill, update: OrderUpdate | None) -> Outcome:
        first = self._dedup.accept_fill(fill)
        if first is None:
            return Outcome(notes=(f"fill {fill.key}: seen before",))
        known = self._owner(fill.client_order_id, fill.order_id)
        if known is None and (fill.liquidation or fill.client_order_id == ""):
            known_by_id = self._client_id_of(fill.order_id)
            known = self._sent.get(known_by_id) if known_by_id else None
        if known is None:
            if fill.liquidation:
                self._liquidations[fill_key(fill)] = fill.trade_time_ms
                return Outcome(reports=(self._liquidated(fill),))
            # perhaps a triggered algo order's fill ahead of the ALGO_UPDATE naming its
            # orderId: kept, reported when that link arrives; alerted meanwhile
            self._orphans.setdefault(fill.order_id, []).append(fill)
            return self._foreign(fill.symbol, fill.client_order_id, fill.event_time_ms, "fill")
        return self._apply_fill(known, fill)

    def _claim_orphans(self, order_id: int) -> Outcome:
        """Fills of `order_id` that came before it was known, applied now, in order."""
        reports: list[VenueReport] = []
        for fill in sorted(self._orphans.pop(order_id, []), key=lambda f: f.trade_time_ms):
            known = self._owner(fill.client_order_id, fill.order_id)
            if known is not None:
                reports += self._apply_fill(known, fill).reports
        return Outcome(reports=tuple(reports))

    def _apply_fill(self, known: SentOrder, fill: Fill) -> Outcome:
        order = known.order
        key = fill_key(fill)
        if key in known.fill_keys:  # applied before a crash cut its other parts' writes
            return Outcome(notes=(f"fill {key}: already in {order.client_order_id}",))
        filled = known.filled_quantity + fill.quantity
        notional = known.filled_notional + fill.quantity * fill.price
        status = ReportStatus.FILLED if filled >= order.quantity else ReportStatus.PARTIALLY_FILLED
        updated = replace(
            known,
            state=SentState.FINAL if status is ReportStatus.FILLED else SentState.ACKED,
            status=str(status),
            reason=None,
            updated_at=max(known.updated_at, fill.event_time_ms),
            filled_quantity=filled,
            filled_notional=notional,
            fill_keys=(*known.fill_keys, key),
        )
        self._put(updated)
        if not order.reduce_only:
            self._holders[order.symbol] = Holder(order.intent_id, order.leverage or 1)
        report = replace(
            self._report(order, status, fill.event_time_ms, None),
            filled_quantity=filled,
            average_price=_average(updated),
            commission=fill.commission,
            commission_asset=fill.commission_asset or self._cfg.quote_asset,
            realized_pnl=fill.realized_pnl,
            trade_id=str(fill.trade_id),
            last_filled_quantity=fill.quantity,
            last_filled_price=fill.price,
        )
        return Outcome(reports=(report,))

    def _liquidated(self, fill: Fill) -> VenueReport:
        holder = self._holders.pop(fill.symbol, None)
        return VenueReport(
            client_order_id=f"L-{fill.symbol}-{fill.trade_id}",
            intent_id="" if holder is None else holder.intent_id,
            symbol=fill.symbol,
            status=ReportStatus.FILLED,
            filled_quantity=fill.quantity,
            average_price=fill.price,
            commission=fill.commission,
            commission_asset=fill.commission_asset or self._cfg.quote_asset,
            realized_pnl=fill.realized_pnl,
            reason=f"liquidated at {fill.price} ({fill.client_order_id or 'by Binance'})",
            event_time_ms=fill.event_time_ms,
            trade_id=str(fill.trade_id),
            last_filled_quantity=fill.quantity,
            last_filled_price=fill.price,
            order_side=OrderSide(fill.side),
            order_type=OrderType.MARKET,
            reduce_only=True,
            role=LIQUIDATION_ROLE,
            exit_reason=LIQUIDATION_REASON,
            trigger_price=None,
            leverage=None if holder is None else holder.leverage,
        )

    def _foreign(self, symbol: str, client_id: str, at: int, what: str) -> Outcome:
        alert = Alert(
            warning_id=f"{PROCESSOR}:{client_id}:{AlertKind.FOREIGN_ORDER}:{what}:{at}",
            kind=AlertKind.FOREIGN_ORDER,
            symbol=symbol,
            position_intent_id="",
            processor=PROCESSOR,
            detail=f"{what} of order {client_id!r} that this agent never placed",
            event_time_ms=at,
        )
        return Outcome(alerts=(alert,), notes=(f"{client_id}: not ours ({what})",))

    # ---- building blocks ---------------------------------------------------------------------

    def _start_cancel(self, order: VenueOrder, known: SentOrder | None) -> Step:
        coid = order.client_order_id
        target = known.order if known is not None else order
        if not is_algo(target):
            return self._finish(notes=[f"cancel of {coid}: only protective orders are canceled"])
        if known is not None and known.state is SentState.FINAL:
            return self._finish(notes=[f"cancel of {coid}: already {known.status or 'ended'}"])
        if self._halted is not None:
            return self._finish(notes=[f"cancel of {coid}: halted ({self._halted})"])
        cancel = replace(target, action=OrderAction.CANCEL, event_time_ms=order.event_time_ms)
        self._progress = _Progress(cancel, resend=False)
        return Step(Call(CallKind.CANCEL, cancel))

    def _next_send_call(self, order: VenueOrder) -> Call:
        if not order.reduce_only and order.order_type is OrderType.MARKET:
            if order.symbol not in self._margin_set:
                return Call(CallKind.SET_MARGIN, order)
            if order.leverage is not None and self._leverage.get(order.symbol) != order.leverage:
                return Call(CallKind.SET_LEVERAGE, order)
        return Call(CallKind.PLACE, order)

    def _wait_then(self, p: _Progress, call: Call, ms: int, *, count: bool = True) -> Step:
        if count:
            p.waited_ms += ms
        p.retry = call
        return Step(Call(CallKind.WAIT, p.order, wait_ms=ms))

    def _backoff(self) -> int:
        return self._cfg.lookup_backoff_ms

    def _answer_found(self, order: VenueOrder, found: Found) -> Step:
        table = _ALGO_STATUS if is_algo(order) else _PLAIN_STATUS
        status = table.get(found.status)
        if status is None:
            return self._unresolved(order, f"unknown Binance status {found.status!r}")
        filled = ZERO if is_algo(order) else found.executed_quantity
        final = status in _ENDED_UNFILLED or status is ReportStatus.FILLED
        reason = None if status not in _ENDED_UNFILLED else f"BINANCE_{found.status}"
        self._mark(
            order.client_order_id,
            SentState.FINAL if final else SentState.ACKED,
            status,
            reason,
            order,
            found.exchange_id,
        )
        report = replace(
            self._report(order, status, order.event_time_ms, reason),
            filled_quantity=filled,
            average_price=found.average_price if filled > 0 else None,
        )
        return self._finish(reports=[report])

    def _answer_from_table(self, order: VenueOrder, known: SentOrder) -> Step:
        status = ReportStatus(known.status) if known.status else ReportStatus.NEW
        report = self._report(order, status, order.event_time_ms, known.reason)
        return self._finish(reports=[report], notes=[f"{order.client_order_id}: from the table"])

    def _reject_new(self, order: VenueOrder, reason: str) -> Step:
        self._mark(order.client_order_id, SentState.FINAL, ReportStatus.REJECTED, reason, order)
        return self._finish(
            reports=[self._report(order, ReportStatus.REJECTED, order.event_time_ms, reason)]
        )

    def _unresolved(self, order: VenueOrder, why: str) -> Step:
        self._mark(order.client_order_id, SentState.UNRESOLVED, "", why, order)
        alert = self._alert(
            AlertKind.ORDER_UNRESOLVED,
            order,
            f"{order.client_order_id}: outcome unknown ({why}); not placed again until a "
            "lookup answers",
        )
        return self._finish(alerts=[alert], notes=[f"{order.client_order_id}: UNRESOLVED"])

    def _alert(self, kind: AlertKind, order: VenueOrder, detail: str) -> Alert:
        return Alert(
            warning_id=f"{PROCESSOR}:{order.client_order_id}:{kind}:{order.event_time_ms}",
            kind=kind,
            symbol=order.symbol,
            position_intent_id=order.intent_id,
            processor=PROCESSOR,
            detail=detail,
            event_time_ms=order.event_time_ms,
        )

    def _report(
        self, o: VenueOrder, status: ReportStatus, at: int, reason: str | None
    ) -> VenueReport:
        return VenueReport.of_order(o, status, at, quote_asset=self._cfg.quote_asset, reason=reason)

    def _finish(
        self,
        *,
        reports: Iterable[VenueReport] = (),
        alerts: Iterable[Alert] = (),
        notes: Iterable[str] = (),
    ) -> Step:
        self._progress = None
        self._forget()
        return Step(None, Outcome(tuple(reports), (), tuple(alerts), tuple(notes)))

    # ---- the table ---------------------------------------------------------------------------

    def _put(self, sent: SentOrder) -> None:
        self._seq += 1
        sent = replace(sent, seq=self._seq)
        self._sent.pop(sent.order.client_order_id, None)
        self._sent[sent.order.client_order_id] = sent
        self._changes[sent.order.client_order_id] = sent

    def _mark(
        self,
        coid: str,
        state: SentState,
        status: str,
        reason: str | None,
        order: VenueOrder,
        exchange_id: int | None = None,
    ) -> None:
        known = self._sent.get(coid)
        if known is None:
            base = replace(order, action=OrderAction.NEW)
            known = SentOrder(base, state, "", None, order.event_time_ms)
        updated = replace(
            known,
            state=state,
            status=str(status),
            reason=reason,
            updated_at=max(known.updated_at, order.event_time_ms),
            exchange_id=exchange_id if exchange_id is not None else known.exchange_id,
        )
        self._put(updated)
        if updated.exchange_id is not None and not is_algo(updated.order):
            self._by_order_id[updated.exchange_id] = coid

    def _forget(self) -> None:
        horizon = self._clock - self._cfg.order_memory_ms
        for coid, sent in list(self._sent.items()):
            if sent.state is not SentState.FINAL:
                continue
            if len(self._sent) <= self._cfg.order_memory_max and sent.updated_at >= horizon:
                break
            del self._sent[coid]
            self._changes[coid] = None

    def take_changes(self) -> dict[str, SentOrder | None]:
        changes, self._changes = self._changes, {}
        return changes

    # ---- persistence -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The venue part (JSON-safe): leverage and margin type set, halt, clock, seq. The
        client ids are parts of their own (`take_changes`)."""
        return {
            "v": SNAPSHOT_VERSION,
            "leverage": dict(sorted(self._leverage.items())),
            "margin_set": sorted(self._margin_set),
            "algo_links": {str(k): v for k, v in sorted(self._algo_links.items())},
            "holders": {s: [h.intent_id, h.leverage] for s, h in sorted(self._holders.items())},
            "orphans": [to_avro(f) for fills in self._orphans.values() for f in fills],
            "liquidations": dict(sorted(self._liquidations.items())),
            "clock": self._clock,
            "seq": self._seq,
        }

    @classmethod
    def restore(
        cls,
        config: BinanceVenueConfig | None,
        snapshot: dict[str, Any] | None,
        sent: Iterable[SentOrder] = (),
    ) -> BinanceVenueCore:
        """The core a snapshot and the remembered client ids describe. A halt is not
        restored: the governor keeps its own, and a restarted process asks Binance anew."""
        core = cls(config)
        if snapshot is not None:
            if snapshot.get("v") != SNAPSHOT_VERSION:
                raise ValueError(f"unsupported binance venue snapshot {snapshot.get('v')!r}")
            core._leverage = {s: int(v) for s, v in snapshot["leverage"].items()}
            core._margin_set = set(snapshot["margin_set"])
            core._algo_links = {int(k): v for k, v in snapshot["algo_links"].items()}
            core._holders = {s: Holder(i, int(lev)) for s, (i, lev) in snapshot["holders"].items()}
            for d in snapshot.get("orphans", []):
                fill = from_avro(Fill, d)
                core._orphans.setdefault(fill.order_id, []).append(fill)
            core._clock = int(snapshot["clock"])
            core._seq = int(snapshot["seq"])
        for s in sorted(sent, key=lambda s: s.seq):
            core._sent[s.order.client_order_id] = s
            core._seq = max(core._seq, s.seq)
            if s.exchange_id is not None and not is_algo(s.order):
                core._by_order_id[s.exchange_id] = s.order.client_order_id
        core._liquidations = {
            k: int(t) for k, t in (snapshot or {}).get("liquidations", {}).items()
        }
        keys = [
            *(k for s in core._sent.values() for k in s.fill_keys),
            *core._liquidations,
            *(fill_key(f) for fills in core._orphans.values() for f in fills),
        ]
        # trade times are not kept per key: a restored key is remembered from now
        core._dedup = FillDeduplicator.restore(
            ((_key_of(k), core._clock) for k in keys), core._cfg.fill_memory_ms
        )
        return core


def fill_key(fill: Fill) -> str:
    """`<symbol>:<trade id>:<order id>`: the deduplicator's key as text."""
    return f"{fill.symbol}:{fill.trade_id}:{fill.order_id}"


def _key_of(text: str) -> tuple[str, int, int]:
    symbol, trade_id, order_id = text.split(":")
    return symbol, int(trade_id), int(order_id)


def _average(sent: SentOrder) -> Decimal | None:
    if sent.filled_quantity <= 0:
        return None
    return sent.filled_notional / sent.filled_quantity


def sent_to_json(sent: SentOrder) -> dict[str, Any]:
    return to_avro(sent)


def sent_from_json(d: dict[str, Any]) -> SentOrder:
    return from_avro(SentOrder, d)


__all__ = ["BinanceVenueCore", "Step", "is_algo", "sent_from_json", "sent_to_json"]
