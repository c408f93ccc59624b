"""The positions agent's pure core: fills and marks -> the position per symbol.

No I/O, no wall clock. One `SymbolBook` per symbol (the agent's table, keyed like the
topics). Rules (docs/execution.md, "Positions"):
- every fill is applied once: its key is the exchange trade id, or for reports without
  one `"{client_order_id}:{cumulative filled}"`; a redelivered fill changes nothing but
  sends the outputs it caused again (same ids), in case a crash lost them;
- one-way mode: fills on a symbol net into one position; BUY adds, SELL subtracts;
- a position is exact sums of its increasing and reducing fills, so its quantity is the
  sum of the fills and a closed trade's gross PnL is side x (exit - entry notional);
- flat again -> the position CLOSED, a `ClosedTrade`, and `SlotRelease` for the intent
  that opened it: ROTATED_OUT when the closing fill was a rotation, else POSITION_CLOSED;
- bars mark it to market (unrealized PnL); protective orders' triggers are its stop and
  take-profit while they are open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

from agents.governor.model import ReleaseReason, Side, SlotRelease
from agents.positions.config import PositionsConfig
from agents.positions.model import (
    FINAL_STATUSES,
    ClosedTrade,
    ExecutionReport,
    ExitReason,
    OrderFill,
    OrderRole,
    OrderSide,
    Position,
    PositionStatus,
    PositionStep,
    ReportStatus,
    SeenFill,
    SymbolBook,
    invalid,
)

ZERO = Decimal(0)

# A fill of these roles without a reason of its own closes for this reason.
_ROLE_REASON = {
    OrderRole.STOP_LOSS: ExitReason.STOP_LOSS,
    OrderRole.TAKE_PROFIT: ExitReason.TAKE_PROFIT,
    OrderRole.LIQUIDATION: ExitReason.LIQUIDATION,
}

LiquidationPrice = Callable[[Position], Decimal | None]


def release_command_id(intent_id: str, reason: ReleaseReason) -> str:
    """Same form as the execution agent's releases: one command per intent and reason."""
    return f"{intent_id}:release:{reason.value}"


def trade_id(position: Position) -> str:
    return f"{position.intent_id}:{position.opened_at}"


class PositionsCore:
    """Stateless apart from its config; `liquidation_price` (optional, pure) estimates a
    position's liquidation price from the exchange's rules (`exchange/`)."""

    def __init__(
        self,
        config: PositionsConfig | None = None,
        liquidation_price: LiquidationPrice | None = None,
    ) -> None:
        self._cfg = config or PositionsConfig()
        self._liq = liquidation_price

    @property
    def config(self) -> PositionsConfig:
        return self._cfg

    # ---- inputs ----------------------------------------------------------------------------

    def on_report(self, report: ExecutionReport, book: SymbolBook | None) -> PositionStep:
        """One execution report: apply its fill (once), track protective triggers."""
        r = report
        book = book or SymbolBook.empty(r.symbol)
        if r.symbol != book.symbol:
            raise invalid(f"report for {r.symbol} applied to the book of {book.symbol}")
        fill = _fill_of(r, book)
        if fill is None:
            new_book = self._track_orders(r, book)
            changed = new_book.position != book.position
            return PositionStep(
                book=new_book, position=new_book.position if changed else None, notes=()
            )
        key, qty, price = fill
        seen = book.seen_fill(key)
        if seen is not None:
            return self._replay(book, seen)
        side = r.order_side or _inferred_side(r, book)
        trade: ClosedTrade | None = None
        pos = book.position if _is_open(book.position) else None
        at = r.event_time_ms
        orders = book.orders
        if pos is None:
            pos, orders = self._open(r, side, qty, price, at), ()
        elif (side == OrderSide.BUY) == (pos.side == Side.LONG):
            pos = replace(
                pos,
                entry_quantity=pos.entry_quantity + qty,
                entry_notional=pos.entry_notional + qty * price,
                fees=pos.fees + r.commission,
                leverage=r.leverage or pos.leverage,
                updated_at=max(pos.updated_at, at),
            )
        else:
            closing = min(qty, pos.quantity)
            pos = replace(
                pos,
                exit_quantity=pos.exit_quantity + closing,
                exit_notional=pos.exit_notional + closing * price,
                fees=pos.fees + r.commission,
                exit_reason=_reason_of(r) or pos.exit_reason,
                updated_at=max(pos.updated_at, at),
            )
            if pos.quantity == 0:
                pos = replace(pos, status=PositionStatus.CLOSED, closed_at=at)
                trade = _trade(pos)
            rest = qty - closing
            if rest > 0:  # crossed through flat (not possible with reduce-only orders)
                flipped = replace(r, commission=ZERO)
                pos, orders = self._open(flipped, side, rest, price, at), ()
        pos = self._with_liquidation(pos)
        closed_id = None if trade is None else trade.trade_id
        book = _record_fill(book, orders, SeenFill(key, at, closed_id), trade)
        book = self._track_orders(r, replace(book, position=pos))
        book = self._prune(book, at)
        commands = () if trade is None else (_release(trade),)
        return PositionStep(book=book, position=book.position, trade=trade, commands=commands)

    def on_mark(
        self, symbol: str, price: Decimal, event_time_ms: int, book: SymbolBook | None
    ) -> PositionStep:
        """A bar's close (or a mark price): unrealized PnL of the open position."""
        book = book or SymbolBook.empty(symbol)
        if symbol != book.symbol:
            raise invalid(f"mark for {symbol} applied to the book of {book.symbol}")
        if not price.is_finite() or price <= 0:
            raise invalid(f"mark price {price} for {symbol} must be > 0")
        pos = book.position
        if pos is None or pos.status != PositionStatus.OPEN:
            return PositionStep(book=book)
        if event_time_ms < pos.marked_at:
            return PositionStep(book=book, notes=(f"{symbol}: mark older than the last one",))
        marked = replace(
            pos,
            mark_price=price,
            marked_at=event_time_ms,
            updated_at=max(pos.updated_at, event_time_ms),
        )
        if marked == pos:
            return PositionStep(book=book)
        book = replace(book, position=marked)
        return PositionStep(book=book, position=marked)

    # ---- rules -------------------------------------------------------------------------------

    def _open(
        self, r: ExecutionReport, side: OrderSide, qty: Decimal, price: Decimal, at: int
    ) -> Position:
        return Position(
            symbol=r.symbol,
            intent_id=r.intent_id,
            side=Side.LONG if side == OrderSide.BUY else Side.SHORT,
            status=PositionStatus.OPEN,
            entry_quantity=qty,
            entry_notional=qty * price,
            exit_quantity=ZERO,
            exit_notional=ZERO,
            fees=r.commission,
            leverage=r.leverage or self._cfg.default_leverage,
            mark_price=price,
            stop_loss=None,
            stop_order=None,
            take_profit=None,
            take_profit_order=None,
            liquidation_price=None,
            exit_reason=None,
            opened_at=at,
            updated_at=at,
            marked_at=at,
            closed_at=None,
        )

    def _with_liquidation(self, pos: Position) -> Position:
        if self._liq is None or pos.status != PositionStatus.OPEN:
            return pos
        return replace(pos, liquidation_price=self._liq(pos))

    def _track_orders(self, r: ExecutionReport, book: SymbolBook) -> SymbolBook:
        """Remember the order's progress; a protective order's trigger is the position's
        stop / take-profit while that order is open."""
        prev = book.order(r.client_order_id)
        final = r.status in FINAL_STATUSES or (prev is not None and prev.final)
        qty = r.filled_quantity if prev is None else max(prev.quantity, r.filled_quantity)
        if prev is not None and r.filled_quantity < prev.quantity:
            notional = prev.notional
        elif r.average_price is not None:
            notional = r.filled_quantity * r.average_price
        else:
            notional = ZERO if prev is None else prev.notional
        rec = OrderFill(r.client_order_id, qty, notional, final)
        if prev is None:
            orders = (*book.orders, rec)
        else:
            orders = tuple(
                rec if o.client_order_id == rec.client_order_id else o for o in book.orders
            )
        book = replace(book, orders=orders)
        pos = book.position
        if pos is None or pos.status != PositionStatus.OPEN:
            return book
        coid = r.client_order_id
        if r.role == OrderRole.STOP_LOSS:
            if final and pos.stop_order == coid:
                pos = replace(pos, stop_loss=None, stop_order=None)
            elif not final and r.trigger_price is not None:
                pos = replace(pos, stop_loss=r.trigger_price, stop_order=coid)
        elif r.role == OrderRole.TAKE_PROFIT:
            if final and pos.take_profit_order == coid:
                pos = replace(pos, take_profit=None, take_profit_order=None)
            elif not final and r.trigger_price is not None:
                pos = replace(pos, take_profit=r.trigger_price, take_profit_order=coid)
        return replace(book, position=pos)

    def _replay(self, book: SymbolBook, seen: SeenFill) -> PositionStep:
        """A fill applied before: nothing changes; its outputs go out again (same ids)."""
        trade = None if seen.closed_trade_id is None else book.trade(seen.closed_trade_id)
        return PositionStep(
            book=book,
            position=book.position,
            trade=trade,
            commands=() if trade is None else (_release(trade),),
            notes=(f"{book.symbol}: fill {seen.key!r} seen before",),
        )

    def _prune(self, book: SymbolBook, now: int) -> SymbolBook:
        horizon = now - self._cfg.dedup_horizon_ms
        seen = tuple(s for s in book.seen if s.event_time_ms >= horizon)
        trades = tuple(t for t in book.trades if t.exit_time_ms >= horizon)
        if len(seen) == len(book.seen) and len(trades) == len(book.trades):
            return book
        return replace(book, seen=seen, trades=trades)


# ---- helpers -------------------------------------------------------------------------------------


def _is_open(pos: Position | None) -> bool:
    return pos is not None and pos.status == PositionStatus.OPEN


def _fill_of(r: ExecutionReport, book: SymbolBook) -> tuple[str, Decimal, Decimal] | None:
    """(fill key, quantity, price) of the fill this report carries, or None."""
    coid = r.client_order_id
    if r.last_filled_quantity is not None:
        if r.last_filled_quantity <= 0:
            return None
        if r.last_filled_price is None or r.last_filled_price <= 0:
            raise invalid(f"fill of {coid!r} without a last_filled_price")
        key = r.trade_id or f"{coid}:{r.filled_quantity}"
        return key, r.last_filled_quantity, r.last_filled_price
    prev = book.order(coid)
    prev_q = ZERO if prev is None else prev.quantity
    if r.filled_quantity <= prev_q:
        return None
    if r.average_price is None or r.average_price <= 0:
        raise invalid(f"report of {coid!r}: filled {r.filled_quantity} without an average price")
    prev_n = ZERO if prev is None else prev.notional
    dq = r.filled_quantity - prev_q
    price = (r.filled_quantity * r.average_price - prev_n) / dq
    if price <= 0:
        raise invalid(f"report of {coid!r}: the cumulative fills imply a price of {price}")
    return r.trade_id or f"{coid}:{r.filled_quantity}", dq, price


def _inferred_side(r: ExecutionReport, book: SymbolBook) -> OrderSide:
    """A report without order_side: only a reducing fill on an open position is readable."""
    pos = book.position
    reducing = r.role not in (None, OrderRole.ENTRY)
    if reducing and pos is not None and pos.status == PositionStatus.OPEN:
        return OrderSide.SELL if pos.side == Side.LONG else OrderSide.BUY
    raise invalid(f"fill of {r.client_order_id!r} without an order side")


def _reason_of(r: ExecutionReport) -> ExitReason | None:
    if r.exit_reason is not None:
        return r.exit_reason
    return None if r.role is None else _ROLE_REASON.get(r.role)


def _record_fill(
    book: SymbolBook,
    orders: tuple[OrderFill, ...],
    seen: SeenFill,
    trade: ClosedTrade | None,
) -> SymbolBook:
    trades = book.trades if trade is None else (*book.trades, trade)
    return replace(book, orders=orders, seen=(*book.seen, seen), trades=trades)


def _trade(pos: Position) -> ClosedTrade:
    realized = pos.realized_pnl
    assert pos.closed_at is not None and pos.exit_price is not None
    return ClosedTrade(
        trade_id=trade_id(pos),
        intent_id=pos.intent_id,
        symbol=pos.symbol,
        side=pos.side,
        quantity=pos.entry_quantity,
        entry_price=pos.entry_price,
        exit_price=pos.exit_price,
        entry_time_ms=pos.opened_at,
        exit_time_ms=pos.closed_at,
        realized_pnl=realized,
        fees=pos.fees,
        net_pnl=realized - pos.fees,
        exit_reason=pos.exit_reason,
        leverage=pos.leverage,
    )


def _release(trade: ClosedTrade) -> SlotRelease:
    reason = (
        ReleaseReason.ROTATED_OUT
        if trade.exit_reason == ExitReason.ROTATE_OUT
        else ReleaseReason.POSITION_CLOSED
    )
    return SlotRelease(
        command_id=release_command_id(trade.intent_id, reason),
        symbol=trade.symbol,
        intent_id=trade.intent_id,
        reason=reason,
        event_time_ms=trade.exit_time_ms,
    )


__all__ = ["PositionsCore", "ReportStatus", "release_command_id", "trade_id"]
