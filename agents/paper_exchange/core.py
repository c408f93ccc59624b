"""The paper exchange agent's pure core: orders and bars in, execution reports out.

`VenueCore` wraps the deterministic `exchange.paper.PaperExchange` and adds what an
exchange behind a topic needs:

- **a memory of client order ids.** Every order received is remembered by its client
  order id: open ones as long as they are open, finished ones for `order_memory_ms` of
  event time (at most `order_memory_max` of them). An order whose client id is known is
  never placed again: a resend of the same order is answered with the original's current
  status (the "lookup by client order id" of Binance's `GET /fapi/v1/order`), which is
  what makes the execution agent's resend after a restart safe; a different order under
  a known id is refused as `DUPLICATE_CLIENT_ORDER_ID` (Binance -4116), which the
  execution core ignores;
- **the mapping of exchange events to execution.results** (docs/execution.md, "What
  the exchange side must provide"): `OrderAccepted` -> NEW, `OrderRejected` -> REJECTED
  (`"<RejectReason>: <detail>"`), `OrderFilled` -> FILLED (trade id, quantity as last and
  cumulative, price, fee as commission, realized PnL), `OrderCanceled` -> CANCELED
  (the cancel reason), `OrderExpired` -> EXPIRED, `Liquidated` -> FILLED with role
  LIQUIDATION and a client id of its own (`L-<symbol>-<trade id>`), the closing side, the
  insurance clearance fee as commission, and the intent whose entry opened the position.
  Every report echoes the order's intent, side, type, reduce-only flag, role, exit reason
  and trigger, and carries the leverage the order was accepted at;
- a failed cancel (the order is not open) is not a report about the order: nothing is
  reported, a note says why.

No clock, no I/O: every time is the event time of the order or the bar.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from agents.paper_exchange.config import PaperVenueConfig
from agents.paper_exchange.model import (
    DUPLICATE_CLIENT_ORDER_ID,
    LIQUIDATION_REASON,
    LIQUIDATION_ROLE,
    Holder,
    KnownOrder,
    OrderAction,
    ReportStatus,
    VenueOrder,
    VenueReport,
    VenueStep,
)
from exchange.model import (
    Bar,
    CancelOrder,
    Event,
    Liquidated,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderType,
    PlaceOrder,
    SetLeverage,
)
from exchange.model import LeverageRejected as _LeverageRejected
from exchange.paper import PaperExchange
from exchange.rules import ExchangeRules
from quantum.records import from_avro, to_avro

ZERO = Decimal(0)
SNAPSHOT_VERSION = 1


def liquidation_client_order_id(symbol: str, trade_id: int) -> str:
    """The client id of the exchange's own liquidation order (unique: trade ids are)."""
    return f"L-{symbol}-{trade_id}"


class VenueCore:
    """The paper exchange and its memory of client order ids (see the module docstring)."""

    def __init__(self, rules: ExchangeRules, config: PaperVenueConfig | None = None) -> None:
        self._cfg = config or PaperVenueConfig()
        self._rules = rules
        self.exchange = PaperExchange(rules, self._cfg)
        self._open: dict[str, KnownOrder] = {}
        self._open_json: dict[str, dict[str, Any]] = {}  # their snapshot form, made once
        self._finished: dict[str, KnownOrder] = {}  # in the order they finished
        self._holders: dict[str, Holder] = {}
        self._clock = 0
        self._seq = 0
        self._changes: dict[str, KnownOrder | None] = {}

    # ---- queries ----------------------------------------------------------------------------

    @property
    def config(self) -> PaperVenueConfig:
        return self._cfg

    @property
    def clock(self) -> int:
        """The newest event time seen (orders and bar closes)."""
        return self._clock

    def known(self, client_order_id: str) -> KnownOrder | None:
        """The order received under `client_order_id`, open or remembered, or None."""
        return self._open.get(client_order_id) or self._finished.get(client_order_id)

    def open_orders(self) -> list[KnownOrder]:
        return list(self._open.values())

    def finished_orders(self) -> list[KnownOrder]:
        return list(self._finished.values())

    # ---- inputs ------------------------------------------------------------------------------

    def on_order(self, order: VenueOrder) -> VenueStep:
        """Place or cancel an order (an `orders` record)."""
        coid = order.client_order_id
        at = order.event_time_ms
        self._clock = max(self._clock, at)
        if order.action == OrderAction.CANCEL:
            known = self._open.get(coid)
            if known is None or known.order.symbol != order.symbol:
                seen = self.known(coid)
                state = "never received" if seen is None else f"already {seen.status.value}"
                return VenueStep(notes=(f"cancel of {coid}: not open ({state}), no report",))
            events = self.exchange.cancel_order(CancelOrder(coid, order.symbol, at))
            return self._finish_step(self._events(events, None))
        known = self.known(coid)
        if known is not None:
            if known.order.same_order(order):
                answer = self._report(known, max(known.updated_at, at))
                return VenueStep((answer,), (f"{coid}: resent, answered {known.status.value}",))
            refused = self._refused(
                order, f"{DUPLICATE_CLIENT_ORDER_ID}: {coid} was received before as another order"
            )
            return VenueStep((refused,), (f"{coid}: another order under a known id",))
        if (
            order.leverage is not None
            and not order.reduce_only
            and self.exchange.leverage(order.symbol) != order.leverage
            and order.symbol in self._rules
        ):
            events = self.exchange.set_leverage(SetLeverage(order.symbol, order.leverage, at))
            for e in events:
                if isinstance(e, _LeverageRejected):
                    return self._finish_step(
                        [self._record_rejection(order, f"{e.reason}: {e.detail}", at)]
                    )
        events = self.exchange.place_order(
            PlaceOrder(
                client_order_id=coid,
                symbol=order.symbol,
                side=order.side,
                order_type=order.order_type,
                quantity=order.quantity,
                event_time_ms=at,
                price=order.price if order.order_type == OrderType.LIMIT else None,
                trigger_price=order.trigger_price if order.order_type.is_conditional else None,
                reduce_only=order.reduce_only,
            )
        )
        return self._finish_step(self._events(events, order))

    def on_bar(self, bar: Bar) -> VenueStep:
        """Step the bar's symbol through one closed bar (a `market.ticks` record).

        A redelivered bar changes nothing; an older one or one the exchange has no rules
        for raises `InvalidRecord` (dead-lettered), before anything changed.
        """
        events = self.exchange.on_bar(bar)
        self._clock = max(self._clock, bar.close_time)
        return self._finish_step(self._events(events, None))

    # ---- events -> reports ------------------------------------------------------------------

    def _events(self, events: list[Event], placing: VenueOrder | None) -> list[VenueReport]:
        reports: list[VenueReport] = []
        for e in events:
            report = self._apply(e, placing)
            if report is not None:
                reports.append(report)
        return reports

    def _apply(self, e: Event, placing: VenueOrder | None) -> VenueReport | None:
        if isinstance(e, OrderAccepted):
            assert placing is not None and placing.client_order_id == e.client_order_id
            known = KnownOrder(
                order=placing,
                order_id=e.order_id,
                status=ReportStatus.NEW,
                filled_quantity=ZERO,
                average_price=None,
                reason=None,
                leverage=self.exchange.leverage(e.symbol),
                updated_at=e.event_time_ms,
            )
            self._open[e.client_order_id] = known
            self._open_json[e.client_order_id] = to_avro(known)
            return self._report(known, e.event_time_ms)
        if isinstance(e, OrderRejected):
            assert placing is not None and placing.client_order_id == e.client_order_id
            return self._record_rejection(placing, f"{e.reason}: {e.detail}", e.event_time_ms)
        if isinstance(e, OrderFilled):
            known = self._take_open(e.client_order_id)
            done = replace(
                known,
                status=ReportStatus.FILLED,
                filled_quantity=e.quantity,
                average_price=e.price,
                updated_at=e.event_time_ms,
            )
            self._remember(done)
            if not done.order.reduce_only:
                self._holders[e.symbol] = Holder(done.order.intent_id, done.leverage or 1)
            if e.position_quantity == 0:
                self._holders.pop(e.symbol, None)
            return replace(
                self._report(done, e.event_time_ms),
                commission=e.fee,
                realized_pnl=e.realized_pnl,
                trade_id=str(e.trade_id),
                last_filled_quantity=e.quantity,
                last_filled_price=e.price,
            )
        if isinstance(e, OrderCanceled | OrderExpired):
            known = self._take_open(e.client_order_id)
            if isinstance(e, OrderCanceled):
                status, reason = ReportStatus.CANCELED, e.reason.value
            else:
                status, reason = ReportStatus.EXPIRED, f"{e.reason}: {e.detail}"
            done = replace(known, status=status, reason=reason, updated_at=e.event_time_ms)
            self._remember(done)
            return self._report(done, e.event_time_ms)
        if isinstance(e, Liquidated):
            return self._liquidated(e)
        return None  # leverage changes and funding are not reports about an order

    def _liquidated(self, e: Liquidated) -> VenueReport:
        holder = self._holders.pop(e.symbol, None)
        return VenueReport(
            client_order_id=liquidation_client_order_id(e.symbol, e.trade_id),
            intent_id="" if holder is None else holder.intent_id,
            symbol=e.symbol,
            status=ReportStatus.FILLED,
            filled_quantity=e.quantity,
            average_price=e.price,
            # the trader loses the whole isolated margin: the price PnL plus this fee
            commission=e.insurance_fee,
            commission_asset=self._cfg.quote_asset,
            realized_pnl=e.realized_pnl,
            reason=f"liquidated at {e.price} (liquidation price {e.liquidation_price})",
            event_time_ms=e.event_time_ms,
            trade_id=str(e.trade_id),
            last_filled_quantity=e.quantity,
            last_filled_price=e.price,
            order_side=e.side.closing_order_side,
            order_type=OrderType.MARKET,
            reduce_only=True,
            role=LIQUIDATION_ROLE,
            exit_reason=LIQUIDATION_REASON,
            trigger_price=None,
            leverage=None if holder is None else holder.leverage,
        )

    def _report(self, known: KnownOrder, at: int) -> VenueReport:
        """A report of `known` as it stands; no fill in it (last filled quantity 0)."""
        return VenueReport.of_order(
            known.order,
            known.status,
            at,
            quote_asset=self._cfg.quote_asset,
            reason=known.reason,
            filled_quantity=known.filled_quantity,
            average_price=known.average_price,
            leverage=known.leverage,
        )

    def _refused(self, order: VenueOrder, reason: str) -> VenueReport:
        known = KnownOrder(
            order=order,
            order_id=None,
            status=ReportStatus.REJECTED,
            filled_quantity=ZERO,
            average_price=None,
            reason=reason,
            leverage=None,
            updated_at=order.event_time_ms,
        )
        return self._report(known, order.event_time_ms)

    def _record_rejection(self, order: VenueOrder, reason: str, at: int) -> VenueReport:
        known = KnownOrder(
            order=order,
            order_id=None,
            status=ReportStatus.REJECTED,
            filled_quantity=ZERO,
            average_price=None,
            reason=reason,
            leverage=None,
            updated_at=at,
        )
        self._remember(known)
        return self._report(known, at)

    # ---- memory ------------------------------------------------------------------------------

    def _take_open(self, client_order_id: str) -> KnownOrder:
        known = self._open.pop(client_order_id, None)
        self._open_json.pop(client_order_id, None)
        if known is None:  # the exchange reported an order this agent never placed: a bug
            raise RuntimeError(f"paper exchange event for {client_order_id!r}, not an open order")
        return known

    def _remember(self, known: KnownOrder) -> None:
        """A finished order goes to the end of the memory (forgotten oldest first)."""
        self._seq += 1
        known = replace(known, seq=self._seq)
        self._finished.pop(known.order.client_order_id, None)
        self._finished[known.order.client_order_id] = known
        self._changes[known.order.client_order_id] = known

    def _forget(self) -> None:
        horizon = self._clock - self._cfg.order_memory_ms
        while self._finished:
            coid, oldest = next(iter(self._finished.items()))
            if len(self._finished) <= self._cfg.order_memory_max and oldest.updated_at >= horizon:
                return
            del self._finished[coid]
            self._changes[coid] = None

    def _finish_step(self, reports: list[VenueReport]) -> VenueStep:
        self._forget()
        return VenueStep(tuple(reports))

    def take_changes(self) -> dict[str, KnownOrder | None]:
        """Finished orders remembered (or forgotten: None) since the last call."""
        changes, self._changes = self._changes, {}
        return changes

    # ---- persistence -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything but the finished orders (JSON-safe): the exchange, the open orders,
        who holds each position, the clock. The finished orders are items of their own
        (`take_changes`), so a bar does not rewrite the whole memory."""
        return {
            "v": SNAPSHOT_VERSION,
            "exchange": self.exchange.snapshot(),
            "open": list(self._open_json.values()),
            "holders": {s: [h.intent_id, h.leverage] for s, h in sorted(self._holders.items())},
            "clock": self._clock,
            "seq": self._seq,
        }

    @classmethod
    def restore(
        cls,
        rules: ExchangeRules,
        config: PaperVenueConfig | None,
        snapshot: dict[str, Any] | None,
        finished: Iterable[KnownOrder] = (),
    ) -> VenueCore:
        """The core a snapshot and the remembered finished orders describe."""
        core = cls(rules, config)
        if snapshot is not None:
            if snapshot.get("v") != SNAPSHOT_VERSION:
                raise ValueError(f"unsupported paper venue snapshot {snapshot.get('v')!r}")
            core.exchange = PaperExchange.restore(rules, snapshot["exchange"], core._cfg)
            for d in snapshot["open"]:
                k = from_avro(KnownOrder, d)
                core._open[k.order.client_order_id] = k
                core._open_json[k.order.client_order_id] = d
            core._holders = {s: Holder(i, int(lev)) for s, (i, lev) in snapshot["holders"].items()}
            core._clock = int(snapshot["clock"])
            core._seq = int(snapshot["seq"])
        for k in sorted(finished, key=lambda k: k.seq):
            core._finished[k.order.client_order_id] = k
            core._seq = max(core._seq, k.seq)
        return core


def known_to_json(known: KnownOrder) -> dict[str, Any]:
    return to_avro(known)


def known_from_json(d: dict[str, Any]) -> KnownOrder:
    return from_avro(KnownOrder, d)


__all__ = [
    "VenueCore",
    "known_from_json",
    "known_to_json",
    "liquidation_client_order_id",
]
