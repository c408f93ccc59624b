"""A deterministic paper exchange for Binance USD-M futures, stepped on closed bars.

Pure: commands and bars in, events out, no clock, no I/O, no randomness. The same inputs in
the same order always give the same events (a property test checks it), and `snapshot()`
/ `PaperExchange.restore()` carry the whole state through a JSON-safe dict so a shell can
persist it. The rules are written out in docs/paper-exchange.md; in short:

- one-way mode, isolated margin, one position per symbol; an entry on a symbol that is held
  or already being entered is refused (POSITION_OPEN) — exits must be reduce-only;
- orders are checked against the symbol's exchange rules and refused, never rounded;
- MARKET orders fill at the open of the next bar of their symbol (open_time >= the order's
  event time), with adverse slippage rounded to the tick against the trader;
- STOP_MARKET / TAKE_PROFIT_MARKET trigger when the bar's path reaches the trigger and fill
  at the trigger; LIMIT orders fill at their price (maker) when the path reaches it; when a
  bar opens beyond the level (a gap) they fill at the open (LIMIT then as taker);
- the path of a bar is open -> one extreme -> the other -> close, the order of the extremes
  chosen by `IntrabarPath` (default: the extreme adverse to the open position first, so when a
  bar touches both the stop and the take-profit, the stop fills);
- a position is liquidated when the path reaches its liquidation price (brackets, isolated
  margin): at that price, or at the open when the bar gaps through it; the whole isolated
  margin is lost, never more. No fill of a position's own order happens beyond its
  liquidation price: the liquidation comes first;
- reduce-only orders are dormant while their symbol has no position, fill at most the
  position's size, and are canceled when the position closes;
- optional funding every 8 h, settled on the isolated margin at the open of the bar that
  contains the funding time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import IntEnum
from typing import Any, NamedTuple

from exchange.config import IntrabarPath, PaperExchangeConfig
from exchange.margin import initial_margin, isolated_liquidation_price, unrealized_pnl
from exchange.model import (
    Bar,
    CancelOrder,
    CancelReason,
    Command,
    Event,
    FundingPaid,
    LeverageChanged,
    LeverageRejected,
    Liquidated,
    OpenOrder,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    PlaceOrder,
    PositionSide,
    PositionView,
    SetLeverage,
    check_bar,
)
from exchange.rules import ExchangeRules, RejectReason, SymbolRules
from quantum.errors import InvalidRecord

SNAPSHOT_VERSION = 1
CLIENT_ORDER_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
ZERO = Decimal(0)
BPS = Decimal(10000)


@dataclass(slots=True)
class _Position:
    symbol: str
    side: PositionSide
    quantity: Decimal
    entry_price: Decimal
    leverage: int
    isolated_margin: Decimal
    opened_ms: int


class _Kind(IntEnum):
    """Tie-break at the same price: the trader's exits, then liquidation, then entries."""

    EXIT = 0
    LIQUIDATION = 1
    ENTRY = 2


class _Trigger(NamedTuple):  # a NamedTuple: built several times per bar, so kept cheap
    level: Decimal
    down: bool  # fires when price <= level (else when price >= level)
    kind: _Kind
    order_id: int  # 0 for the liquidation

    def fires_at(self, price: Decimal) -> bool:
        return price <= self.level if self.down else price >= self.level


def _fires_down(order_type: OrderType, side: OrderSide) -> bool:
    """Direction of a resting order: True when it fires at prices <= its level."""
    if order_type is OrderType.STOP_MARKET:
        return side is OrderSide.SELL
    # TAKE_PROFIT_MARKET and LIMIT: a BUY waits for a lower price, a SELL for a higher one
    return side is OrderSide.BUY


def _level(order: OpenOrder) -> Decimal:
    level = order.price if order.order_type is OrderType.LIMIT else order.trigger_price
    assert level is not None
    return level


class PaperExchange:
    """Deterministic, bar-driven exchange simulator (isolated margin, one-way mode)."""

    def __init__(self, rules: ExchangeRules, config: PaperExchangeConfig | None = None) -> None:
        self._rules = rules
        self._cfg = config or PaperExchangeConfig()
        self._cash = self._cfg.initial_balance
        self._positions: dict[str, _Position] = {}
        self._orders: dict[int, OpenOrder] = {}
        self._leverage: dict[str, int] = {}
        self._last_price: dict[str, Decimal] = {}
        self._last_bar_open: dict[str, int] = {}
        self._next_order_id = 1
        self._next_trade_id = 1
        # derived, not state: the last liquidation price computed per symbol and its inputs
        self._lp_cache: dict[str, tuple[tuple[Any, ...], Decimal | None]] = {}

    # --- queries --------------------------------------------------------------------------

    @property
    def config(self) -> PaperExchangeConfig:
        return self._cfg

    @property
    def cash(self) -> Decimal:
        """Wallet balance outside the positions' isolated margins."""
        return self._cash

    def equity(self) -> Decimal:
        """Cash + every position's isolated margin and unrealized PnL at the last price."""
        total = self._cash
        for pos in self._positions.values():
            mark = self._last_price[pos.symbol]
            total += pos.isolated_margin + unrealized_pnl(
                pos.side, pos.quantity, pos.entry_price, mark
            )
        return total

    def leverage(self, symbol: str) -> int:
        return self._leverage.get(symbol, self._cfg.default_leverage)

    def last_price(self, symbol: str) -> Decimal | None:
        return self._last_price.get(symbol)

    def position(self, symbol: str) -> PositionView | None:
        pos = self._positions.get(symbol)
        if pos is None:
            return None
        mark = self._last_price[symbol]
        return PositionView(
            symbol=symbol,
            side=pos.side,
            quantity=pos.quantity,
            entry_price=pos.entry_price,
            leverage=pos.leverage,
            isolated_margin=pos.isolated_margin,
            liquidation_price=self._liquidation_price(pos),
            mark_price=mark,
            unrealized_pnl=unrealized_pnl(pos.side, pos.quantity, pos.entry_price, mark),
        )

    def positions(self) -> list[PositionView]:
        views = (self.position(symbol) for symbol in sorted(self._positions))
        return [v for v in views if v is not None]

    def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        return [o for o in self._orders.values() if symbol is None or o.symbol == symbol]

    # --- commands -------------------------------------------------------------------------

    def handle(self, command: Command) -> list[Event]:
        if isinstance(command, PlaceOrder):
            return self.place_order(command)
        if isinstance(command, CancelOrder):
            return self.cancel_order(command)
        if isinstance(command, SetLeverage):
            return self.set_leverage(command)
        raise TypeError(f"not a paper exchange command: {command!r}")

    def place_order(self, cmd: PlaceOrder) -> list[Event]:
        violation = self._check_new_order(cmd)
        if violation is not None:
            reason, detail = violation
            return [
                OrderRejected(cmd.client_order_id, cmd.symbol, reason, detail, cmd.event_time_ms)
            ]
        order = OpenOrder(
            client_order_id=cmd.client_order_id,
            order_id=self._next_order_id,
            symbol=cmd.symbol,
            side=cmd.side,
            order_type=cmd.order_type,
            quantity=cmd.quantity,
            price=cmd.price,
            trigger_price=cmd.trigger_price,
            reduce_only=cmd.reduce_only,
            leverage=self.leverage(cmd.symbol),
            submitted_ms=cmd.event_time_ms,
        )
        self._next_order_id += 1
        self._orders[order.order_id] = order
        return [
            OrderAccepted(
                client_order_id=order.client_order_id,
                order_id=order.order_id,
                symbol=order.symbol,
                side=order.side,
                order_type=order.order_type,
                quantity=order.quantity,
                price=order.price,
                trigger_price=order.trigger_price,
                reduce_only=order.reduce_only,
                event_time_ms=cmd.event_time_ms,
            )
        ]

    def cancel_order(self, cmd: CancelOrder) -> list[Event]:
        for order in self._orders.values():
            if order.client_order_id == cmd.client_order_id and order.symbol == cmd.symbol:
                del self._orders[order.order_id]
                events: list[Event] = [
                    OrderCanceled(
                        order.client_order_id,
                        order.order_id,
                        order.symbol,
                        CancelReason.CANCELED_BY_CLIENT,
                        cmd.event_time_ms,
                    )
                ]
                self._sweep_reduce_only(
                    cmd.symbol, cmd.event_time_ms, events, CancelReason.ENTRY_NOT_FILLED
                )
                return events
        return [
            OrderRejected(
                cmd.client_order_id,
                cmd.symbol,
                RejectReason.UNKNOWN_ORDER,
                f"no open order {cmd.client_order_id} on {cmd.symbol}",
                cmd.event_time_ms,
            )
        ]

    def set_leverage(self, cmd: SetLeverage) -> list[Event]:
        rules = self._rules.get(cmd.symbol)

        def reject(reason: RejectReason, detail: str) -> list[Event]:
            return [LeverageRejected(cmd.symbol, cmd.leverage, reason, detail, cmd.event_time_ms)]

        if rules is None:
            return reject(RejectReason.UNKNOWN_SYMBOL, f"no rules for {cmd.symbol}")
        top = rules.brackets.brackets[0].initial_leverage
        if not 1 <= cmd.leverage <= top:
            return reject(RejectReason.LEVERAGE_NOT_ALLOWED, f"leverage must be 1..{top}")
        if cmd.symbol in self._positions or self._pending_entry(cmd.symbol) is not None:
            return reject(RejectReason.POSITION_OPEN, f"{cmd.symbol} has a position or entry")
        self._leverage[cmd.symbol] = cmd.leverage
        return [
            LeverageChanged(
                cmd.symbol, cmd.leverage, rules.max_notional(cmd.leverage), cmd.event_time_ms
            )
        ]

    # --- bars -----------------------------------------------------------------------------

    def on_bar(self, bar: Bar) -> list[Event]:
        """Step the bar's symbol through one closed bar; returns what happened, in order.

        `bar` is the kit's `Kline` (or any `Bar`). A bar with the same open time as the last
        one of its symbol is a redelivery and changes nothing; an older one cannot be applied,
        and one whose prices make no sense is invalid: both raise `InvalidRecord`.
        """
        check_bar(bar)
        symbol = bar.symbol
        if symbol not in self._rules:
            raise InvalidRecord("UNKNOWN_SYMBOL", f"no exchange rules for {symbol}")
        last_open = self._last_bar_open.get(symbol)
        if last_open is not None and bar.open_time <= last_open:
            if bar.open_time == last_open:
                return []
            raise InvalidRecord(
                "INVALID_VALUE", f"{symbol} bar {bar.open_time} is older than {last_open}"
            )
        events: list[Event] = []
        previous = self._last_price.get(symbol)
        self._settle_funding(bar, events)
        if previous is not None and previous != bar.open:
            self._gap(symbol, previous, bar.open, bar.open_time, events)
        self._fill_market_orders(bar, events)
        self._walk(symbol, bar.open, bar.open, bar.open_time, events, gap_fill=None)
        for start, end in self._path(bar):
            self._walk(symbol, start, end, bar.close_time, events, gap_fill=None)
        self._last_price[symbol] = bar.close
        self._last_bar_open[symbol] = bar.open_time
        return events

    def _path(self, bar: Bar) -> list[tuple[Decimal, Decimal]]:
        """open -> first extreme -> second extreme -> close, per the intrabar rule."""
        pos = self._positions.get(bar.symbol)
        low_first_nearest = bar.open - bar.low <= bar.high - bar.open
        rule = self._cfg.intrabar_path
        if pos is None or rule is IntrabarPath.NEAREST_FIRST:
            low_first = low_first_nearest
        else:
            adverse_low = pos.side is PositionSide.LONG
            low_first = adverse_low if rule is IntrabarPath.ADVERSE_FIRST else not adverse_low
        first, second = (bar.low, bar.high) if low_first else (bar.high, bar.low)
        return [(bar.open, first), (first, second), (second, bar.close)]

    # --- validation -----------------------------------------------------------------------

    def _check_new_order(self, cmd: PlaceOrder) -> tuple[RejectReason, str] | None:
        rules = self._rules.get(cmd.symbol)
        if rules is None:
            return RejectReason.UNKNOWN_SYMBOL, f"no rules for {cmd.symbol}"
        if not CLIENT_ORDER_ID.match(cmd.client_order_id):
            return RejectReason.INVALID_CLIENT_ORDER_ID, f"{cmd.client_order_id!r}"
        if any(o.client_order_id == cmd.client_order_id for o in self._orders.values()):
            return RejectReason.DUPLICATE_CLIENT_ORDER_ID, f"{cmd.client_order_id} is open"
        mark = self._last_price.get(cmd.symbol)
        if mark is None:
            return RejectReason.NO_MARK_PRICE, f"no bar of {cmd.symbol} yet"
        symbol_orders = [o for o in self._orders.values() if o.symbol == cmd.symbol]
        violation = rules.check_order(
            side=cmd.side,
            order_type=cmd.order_type,
            quantity=cmd.quantity,
            mark_price=mark,
            price=cmd.price,
            trigger_price=cmd.trigger_price,
            reduce_only=cmd.reduce_only,
            open_orders=len(symbol_orders),
            open_algo_orders=sum(o.order_type.is_conditional for o in symbol_orders),
        )
        if violation is not None:
            return violation.reason, violation.detail
        if cmd.order_type.is_conditional:
            assert cmd.trigger_price is not None
            down = _fires_down(cmd.order_type, cmd.side)
            if _Trigger(cmd.trigger_price, down, _Kind.EXIT, 0).fires_at(mark):
                return (
                    RejectReason.WOULD_IMMEDIATELY_TRIGGER,
                    f"trigger {cmd.trigger_price} already reached at mark {mark}",
                )
        pos = self._positions.get(cmd.symbol)
        entry = self._pending_entry(cmd.symbol)
        if cmd.reduce_only:
            held: PositionSide | None = None
            if pos is not None:
                held = pos.side
            elif entry is not None:
                held = PositionSide.LONG if entry.side is OrderSide.BUY else PositionSide.SHORT
            if held is None:
                return RejectReason.REDUCE_ONLY_REJECTED, f"no position or entry on {cmd.symbol}"
            if cmd.side is not held.closing_order_side:
                return RejectReason.REDUCE_ONLY_REJECTED, f"{cmd.side} would not reduce a {held}"
            return None
        if pos is not None:
            return RejectReason.POSITION_OPEN, f"{cmd.symbol} already holds a {pos.side}"
        if entry is not None:
            return RejectReason.POSITION_OPEN, f"entry {entry.client_order_id} is pending"
        leverage = self.leverage(cmd.symbol)
        price = cmd.price or cmd.trigger_price or mark
        notional = cmd.quantity * price
        cap = rules.max_notional(leverage)
        if notional > cap:
            return (
                RejectReason.ABOVE_MAX_NOTIONAL_AT_LEVERAGE,
                f"notional {notional} > {cap} allowed at {leverage}x",
            )
        need = self._entry_cost(cmd.quantity, price, leverage)
        available = self._cash - self._reserved()
        if need > available:
            return (
                RejectReason.INSUFFICIENT_MARGIN,
                f"margin + fee {need} > available {available}",
            )
        return None

    def _entry_cost(self, quantity: Decimal, price: Decimal, leverage: int) -> Decimal:
        notional = quantity * price
        return initial_margin(notional, leverage) + notional * self._cfg.taker_fee_rate

    def _reserved(self, excluding: int | None = None) -> Decimal:
        """Margin + fee the pending entries will need (Binance's open-order margin)."""
        total = ZERO
        for o in self._orders.values():
            if o.reduce_only or o.order_id == excluding:
                continue
            price = o.price or o.trigger_price or self._last_price[o.symbol]
            total += self._entry_cost(o.quantity, price, o.leverage)
        return total

    def _pending_entry(self, symbol: str) -> OpenOrder | None:
        for o in self._orders.values():
            if o.symbol == symbol and not o.reduce_only:
                return o
        return None

    # --- execution ------------------------------------------------------------------------

    def _liquidation_price(self, pos: _Position) -> Decimal | None:
        """The position's isolated liquidation price, recomputed only when it changed."""
        key = (pos.side, pos.quantity, pos.entry_price, pos.isolated_margin)
        cached = self._lp_cache.get(pos.symbol)
        if cached is not None and cached[0] == key:
            return cached[1]
        table = self._rules[pos.symbol].brackets
        lp = isolated_liquidation_price(
            pos.side, pos.quantity, pos.entry_price, pos.isolated_margin, table
        )
        self._lp_cache[pos.symbol] = (key, lp)
        return lp

    def _triggers(self, symbol: str) -> list[tuple[_Trigger, OpenOrder | None]]:
        pos = self._positions.get(symbol)
        out: list[tuple[_Trigger, OpenOrder | None]] = []
        for order in self._orders.values():
            if order.symbol != symbol or order.order_type is OrderType.MARKET:
                continue
            if order.reduce_only and pos is None:
                continue  # dormant until its position exists
            kind = _Kind.EXIT if order.reduce_only else _Kind.ENTRY
            down = _fires_down(order.order_type, order.side)
            out.append((_Trigger(_level(order), down, kind, order.order_id), order))
        if pos is not None:
            lp = self._liquidation_price(pos)
            if lp is not None:
                out.append(
                    (_Trigger(lp, pos.side is PositionSide.LONG, _Kind.LIQUIDATION, 0), None)
                )
        return out

    def _walk(
        self,
        symbol: str,
        start: Decimal,
        end: Decimal,
        time_ms: int,
        events: list[Event],
        *,
        gap_fill: Decimal | None,
    ) -> None:
        """Move the price from `start` to `end`, executing every level reached, in order.

        Inside a bar (`gap_fill` None) an order fills at its level; across a gap every
        execution happens at `gap_fill`, the open.
        """
        current = start
        while True:
            best: tuple[tuple[Decimal, int, int], _Trigger, OpenOrder | None] | None = None
            for trigger, order in self._triggers(symbol):
                if trigger.fires_at(current):
                    distance = ZERO
                elif end < current and trigger.down and trigger.level >= end:
                    distance = current - trigger.level
                elif end > current and not trigger.down and trigger.level <= end:
                    distance = trigger.level - current
                else:
                    continue
                key = (distance, int(trigger.kind), trigger.order_id)
                if best is None or key < best[0]:
                    best = (key, trigger, order)
            if best is None:
                return
            _, trigger, order = best
            if not trigger.fires_at(current):
                current = trigger.level
            if order is None:
                # at its price when reached inside the bar; at the current price when the price
                # already stands beyond it (funding moved it, a fill reached it)
                self._liquidate(
                    symbol, gap_fill if gap_fill is not None else current, time_ms, events
                )
            else:
                self._execute(order, current, time_ms, events, gap_fill=gap_fill)

    def _gap(
        self, symbol: str, previous: Decimal, open_: Decimal, time_ms: int, events: list[Event]
    ) -> None:
        """The jump from the last close to this open: a liquidation price inside it wins."""
        pos = self._positions.get(symbol)
        if pos is not None:
            lp = self._liquidation_price(pos)
            if lp is not None and (open_ == lp or self._beyond(pos, open_, lp)):
                self._liquidate(symbol, open_, time_ms, events)
        self._walk(symbol, previous, open_, time_ms, events, gap_fill=open_)

    def _fill_market_orders(self, bar: Bar, events: list[Event]) -> None:
        due = [
            o
            for o in self._orders.values()
            if o.symbol == bar.symbol
            and o.order_type is OrderType.MARKET
            and o.submitted_ms <= bar.open_time
        ]
        slip = self._cfg.market_slippage_bps / BPS
        tick = self._rules[bar.symbol].price_filter.tick
        for order in due:
            if order.order_id not in self._orders:
                continue  # canceled by an earlier fill of this loop
            if order.side is OrderSide.BUY:
                price = _to_tick(bar.open * (1 + slip), tick, ROUND_CEILING)
            else:
                price = _to_tick(bar.open * (1 - slip), tick, ROUND_FLOOR)
            self._execute(order, price, bar.open_time, events, gap_fill=None, at_market=True)

    def _execute(
        self,
        order: OpenOrder,
        level: Decimal,
        time_ms: int,
        events: list[Event],
        *,
        gap_fill: Decimal | None,
        at_market: bool = False,
    ) -> None:
        """Fill `order` (already triggered) at `level`, or at `gap_fill` across a gap."""
        symbol = order.symbol
        rules = self._rules[symbol]
        maker = False
        if at_market:
            price = level
        elif gap_fill is not None:
            price = gap_fill  # the bar opened beyond the level: fill at the open, as taker
        elif order.order_type is OrderType.LIMIT:
            # reached inside the bar: its own price, resting, as maker; already through it at
            # the open (`level` is then the open): a marketable limit, filled there as taker
            price = level
            maker = level == _level(order)
        else:
            price = self._slipped(order.side, level, rules)
        pos = self._positions.get(symbol)
        if order.reduce_only:
            if pos is None or order.side is not pos.side.closing_order_side:
                del self._orders[order.order_id]
                events.append(
                    OrderExpired(
                        order.client_order_id,
                        order.order_id,
                        symbol,
                        RejectReason.REDUCE_ONLY_REJECTED,
                        "no position to reduce",
                        time_ms,
                    )
                )
                return
            lp = self._liquidation_price(pos)
            if lp is not None and self._beyond(pos, price, lp):
                # the fill would lie beyond the liquidation price: the liquidation comes first,
                # at that price (or where the price already is, if beyond it)
                if gap_fill is not None:
                    at = gap_fill
                elif self._beyond(pos, level, lp):
                    at = level
                else:
                    at = lp
                self._liquidate(symbol, at, time_ms, events)
                return
            self._close(order, pos, price, maker, time_ms, events)
            return
        self._open(order, rules, price, maker, time_ms, events)

    @staticmethod
    def _beyond(pos: _Position, price: Decimal, liquidation: Decimal) -> bool:
        """`price` is past the liquidation price, on the position's losing side."""
        return price < liquidation if pos.side is PositionSide.LONG else price > liquidation

    def _slipped(self, side: OrderSide, level: Decimal, rules: SymbolRules) -> Decimal:
        slip = self._cfg.stop_slippage_bps / BPS
        if slip == ZERO:
            return level
        tick = rules.price_filter.tick
        if side is OrderSide.BUY:
            return _to_tick(level * (1 + slip), tick, ROUND_CEILING)
        return _to_tick(level * (1 - slip), tick, ROUND_FLOOR)

    def _fee(self, notional: Decimal, maker: bool) -> Decimal:
        rate = self._cfg.maker_fee_rate if maker else self._cfg.taker_fee_rate
        return notional * rate

    def _open(
        self,
        order: OpenOrder,
        rules: SymbolRules,
        price: Decimal,
        maker: bool,
        time_ms: int,
        events: list[Event],
    ) -> None:
        symbol = order.symbol

        def expire(reason: RejectReason, detail: str) -> None:
            del self._orders[order.order_id]
            events.append(
                OrderExpired(order.client_order_id, order.order_id, symbol, reason, detail, time_ms)
            )
            self._sweep_reduce_only(symbol, time_ms, events, CancelReason.ENTRY_NOT_FILLED)

        if symbol in self._positions:
            expire(RejectReason.POSITION_OPEN, f"{symbol} already holds a position")
            return
        notional = order.quantity * price
        cap = rules.max_notional(order.leverage)
        if notional > cap:
            expire(
                RejectReason.ABOVE_MAX_NOTIONAL_AT_LEVERAGE,
                f"notional {notional} > {cap} allowed at {order.leverage}x",
            )
            return
        margin = initial_margin(notional, order.leverage)
        fee = self._fee(notional, maker)
        available = self._cash - self._reserved(excluding=order.order_id)
        if margin + fee > available:
            expire(RejectReason.INSUFFICIENT_MARGIN, f"margin + fee {margin + fee} > {available}")
            return
        del self._orders[order.order_id]
        side = PositionSide.LONG if order.side is OrderSide.BUY else PositionSide.SHORT
        self._cash -= margin + fee
        self._positions[symbol] = _Position(
            symbol, side, order.quantity, price, order.leverage, margin, time_ms
        )
        events.append(self._filled(order, order.quantity, price, fee, ZERO, maker, time_ms))

    def _close(
        self,
        order: OpenOrder,
        pos: _Position,
        price: Decimal,
        maker: bool,
        time_ms: int,
        events: list[Event],
    ) -> None:
        quantity = min(order.quantity, pos.quantity)
        pnl = unrealized_pnl(pos.side, quantity, pos.entry_price, price)
        fee = self._fee(quantity * price, maker)
        released = (
            pos.isolated_margin
            if quantity == pos.quantity
            else pos.isolated_margin * quantity / pos.quantity
        )
        del self._orders[order.order_id]
        self._cash += released + pnl - fee
        pos.quantity -= quantity
        pos.isolated_margin -= released
        closed = pos.quantity == ZERO
        if closed:
            del self._positions[pos.symbol]
        events.append(self._filled(order, quantity, price, fee, pnl, maker, time_ms))
        if closed:
            self._sweep_reduce_only(pos.symbol, time_ms, events, CancelReason.POSITION_CLOSED)

    def _filled(
        self,
        order: OpenOrder,
        quantity: Decimal,
        price: Decimal,
        fee: Decimal,
        pnl: Decimal,
        maker: bool,
        time_ms: int,
    ) -> OrderFilled:
        pos = self._positions.get(order.symbol)
        trade_id = self._next_trade_id
        self._next_trade_id += 1
        return OrderFilled(
            client_order_id=order.client_order_id,
            order_id=order.order_id,
            trade_id=trade_id,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            quantity=quantity,
            price=price,
            fee=fee,
            fee_asset=self._cfg.quote_asset,
            realized_pnl=pnl,
            maker=maker,
            reduce_only=order.reduce_only,
            position_quantity=ZERO if pos is None else pos.side.sign * pos.quantity,
            position_entry_price=None if pos is None else pos.entry_price,
            event_time_ms=time_ms,
        )

    def _liquidate(self, symbol: str, price: Decimal, time_ms: int, events: list[Event]) -> None:
        pos = self._positions.pop(symbol)
        lp = self._liquidation_price(pos) or price
        pnl = unrealized_pnl(pos.side, pos.quantity, pos.entry_price, price)
        trade_id = self._next_trade_id
        self._next_trade_id += 1
        events.append(
            Liquidated(
                symbol=symbol,
                side=pos.side,
                quantity=pos.quantity,
                price=price,
                liquidation_price=lp,
                realized_pnl=pnl,
                insurance_fee=pos.isolated_margin + pnl,
                margin_lost=pos.isolated_margin,
                trade_id=trade_id,
                event_time_ms=time_ms,
            )
        )
        self._sweep_reduce_only(symbol, time_ms, events, CancelReason.POSITION_CLOSED)

    def _sweep_reduce_only(
        self, symbol: str, time_ms: int, events: list[Event], reason: CancelReason
    ) -> None:
        """Cancel reduce-only orders that can no longer reduce anything."""
        if symbol in self._positions or self._pending_entry(symbol) is not None:
            return
        for order in [o for o in self._orders.values() if o.symbol == symbol and o.reduce_only]:
            del self._orders[order.order_id]
            events.append(
                OrderCanceled(order.client_order_id, order.order_id, symbol, reason, time_ms)
            )

    def _settle_funding(self, bar: Bar, events: list[Event]) -> None:
        rate = self._cfg.funding_rate_8h
        pos = self._positions.get(bar.symbol)
        if rate is None or pos is None:
            return
        interval = self._cfg.funding_interval_ms
        first = -(-bar.open_time // interval) * interval  # first funding time >= open
        for funding_time in range(first, bar.close_time + 1, interval):
            pos = self._positions.get(bar.symbol)
            if pos is None:
                return
            amount = -pos.side.sign * pos.quantity * bar.open * rate
            pos.isolated_margin += amount
            events.append(
                FundingPaid(bar.symbol, rate, bar.open, amount, funding_time, bar.open_time)
            )
            if pos.isolated_margin <= ZERO:
                self._liquidate(bar.symbol, bar.open, bar.open_time, events)

    # --- persistence ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state as a JSON-safe dict (decimals as strings)."""
        return {
            "v": SNAPSHOT_VERSION,
            "cash": str(self._cash),
            "next_order_id": self._next_order_id,
            "next_trade_id": self._next_trade_id,
            "leverage": dict(sorted(self._leverage.items())),
            "last_price": {k: str(v) for k, v in sorted(self._last_price.items())},
            "last_bar_open": dict(sorted(self._last_bar_open.items())),
            "positions": [
                {
                    "symbol": p.symbol,
                    "side": p.side.value,
                    "quantity": str(p.quantity),
                    "entry_price": str(p.entry_price),
                    "leverage": p.leverage,
                    "isolated_margin": str(p.isolated_margin),
                    "opened_ms": p.opened_ms,
                }
                for p in (self._positions[s] for s in sorted(self._positions))
            ],
            "orders": [
                {
                    "client_order_id": o.client_order_id,
                    "order_id": o.order_id,
                    "symbol": o.symbol,
                    "side": o.side.value,
                    "order_type": o.order_type.value,
                    "quantity": str(o.quantity),
                    "price": None if o.price is None else str(o.price),
                    "trigger_price": None if o.trigger_price is None else str(o.trigger_price),
                    "reduce_only": o.reduce_only,
                    "leverage": o.leverage,
                    "submitted_ms": o.submitted_ms,
                }
                for o in self._orders.values()
            ],
        }

    @classmethod
    def restore(
        cls,
        rules: ExchangeRules,
        snapshot: dict[str, Any],
        config: PaperExchangeConfig | None = None,
    ) -> PaperExchange:
        if snapshot.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported paper exchange snapshot version {snapshot.get('v')!r}")
        ex = cls(rules, config)
        ex._cash = Decimal(snapshot["cash"])
        ex._next_order_id = int(snapshot["next_order_id"])
        ex._next_trade_id = int(snapshot["next_trade_id"])
        ex._leverage = {k: int(v) for k, v in snapshot["leverage"].items()}
        ex._last_price = {k: Decimal(v) for k, v in snapshot["last_price"].items()}
        ex._last_bar_open = {k: int(v) for k, v in snapshot["last_bar_open"].items()}
        for p in snapshot["positions"]:
            ex._positions[p["symbol"]] = _Position(
                symbol=p["symbol"],
                side=PositionSide(p["side"]),
                quantity=Decimal(p["quantity"]),
                entry_price=Decimal(p["entry_price"]),
                leverage=int(p["leverage"]),
                isolated_margin=Decimal(p["isolated_margin"]),
                opened_ms=int(p["opened_ms"]),
            )
        for o in snapshot["orders"]:
            order = OpenOrder(
                client_order_id=o["client_order_id"],
                order_id=int(o["order_id"]),
                symbol=o["symbol"],
                side=OrderSide(o["side"]),
                order_type=OrderType(o["order_type"]),
                quantity=Decimal(o["quantity"]),
                price=None if o["price"] is None else Decimal(o["price"]),
                trigger_price=None if o["trigger_price"] is None else Decimal(o["trigger_price"]),
                reduce_only=bool(o["reduce_only"]),
                leverage=int(o["leverage"]),
                submitted_ms=int(o["submitted_ms"]),
            )
            ex._orders[order.order_id] = order
        return ex

    def replay(self, items: Iterable[Command | Bar]) -> list[Event]:
        """Apply commands and bars in order (backtests, tests): the concatenated events."""
        events: list[Event] = []
        for item in items:
            if isinstance(item, PlaceOrder | CancelOrder | SetLeverage):
                events.extend(self.handle(item))
            else:
                events.extend(self.on_bar(item))
        return events


def _to_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    steps = (price / tick).to_integral_value(rounding=rounding)
    return (steps * tick).quantize(tick)
