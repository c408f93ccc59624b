"""Property tests of the paper exchange over random bars and commands on two symbols.

- determinism: the same inputs give the same events, and so does a run interrupted by a
  snapshot (through JSON) and a restore;
- accounting: cash + isolated margins = initial balance - fees + realized PnL + funding
  - margins lost to liquidation, after every step; cash never goes negative.
"""

from __future__ import annotations

import json
from decimal import ROUND_FLOOR, Decimal

from hypothesis import given
from hypothesis import strategies as st

from exchange.config import IntrabarPath, PaperExchangeConfig
from exchange.model import (
    CancelOrder,
    FundingPaid,
    Kline,
    Liquidated,
    OrderFilled,
    OrderSide,
    OrderType,
    PlaceOrder,
    SetLeverage,
)
from exchange.paper import PaperExchange
from exchange.rules import ExchangeRules

D = Decimal
RULES = ExchangeRules.bundled()
BAR = 4 * 3_600_000  # funding (every 8 h) falls on every second bar
START = {"BTCUSDT": D(60000), "ETHUSDT": D(3000)}
QTY = {
    "BTCUSDT": ["0.002", "0.010", "0.050", "0.300"],
    "ETHUSDT": ["0.010", "0.100", "1.000", "5.000"],
}


def _tick(symbol: str, price: Decimal) -> Decimal:
    tick = RULES[symbol].price_filter.tick
    return max(tick, (price / tick).to_integral_value(rounding=ROUND_FLOOR) * tick)


bar_steps = st.tuples(
    st.just("bar"),
    st.sampled_from(sorted(START)),
    st.integers(-400, 400),  # open vs last close, bp
    st.integers(0, 300),  # high above max(open, close), bp
    st.integers(0, 300),  # low below min(open, close), bp
    st.integers(-300, 300),  # close vs open, bp
)
command_steps = st.tuples(
    st.just("cmd"),
    st.sampled_from(sorted(START)),
    st.sampled_from(
        ["market", "market", "market", "stop", "stop", "tp", "limit", "cancel", "leverage"]
    ),
    st.sampled_from([OrderSide.BUY, OrderSide.SELL]),
    st.integers(0, 3),  # quantity index
    st.integers(-500, 500),  # trigger / limit offset from the last price, bp
    st.booleans(),  # reduce-only
    st.sampled_from([1, 5, 10, 20, 30, 50, 75, 125]),
)
scenarios = st.lists(st.one_of(bar_steps, command_steps), min_size=4, max_size=60)
configs = st.builds(
    PaperExchangeConfig,
    intrabar_path=st.sampled_from(list(IntrabarPath)),
    funding_rate_8h=st.sampled_from([None, D("0.0001"), D("-0.0003")]),
    market_slippage_bps=st.sampled_from([D(0), D(2)]),
    stop_slippage_bps=st.sampled_from([D(0), D(5)]),
    initial_balance=st.sampled_from([D(1000), D(10000)]),
)


def _kline(symbol: str, start: int, o: Decimal, h: Decimal, l: Decimal, c: Decimal) -> Kline:  # noqa: E741
    return Kline(symbol, "4h", start, start + BAR - 1, o, h, l, c, volume=D(1))


def build(steps) -> list:
    """Turn drawn steps into an input sequence: bars advance each symbol by four hours.

    Each symbol starts with a flat bar, so commands have a mark price to be checked at.
    """
    last = dict(START)
    items: list = [_kline(s, 0, p, p, p, p) for s, p in sorted(START.items())]
    clock = {s: BAR for s in START}
    now = BAR - 1
    for n, step in enumerate(steps):
        if step[0] == "bar":
            _, sym, open_bp, up_bp, down_bp, close_bp = step
            open_ = _tick(sym, last[sym] * (1 + D(open_bp) / 10000))
            close = _tick(sym, open_ * (1 + D(close_bp) / 10000))
            high = _tick(sym, max(open_, close) * (1 + D(up_bp) / 10000))
            high = max(high, open_, close)
            low = _tick(sym, min(open_, close) * (1 - D(down_bp) / 10000))
            low = min(low, open_, close)
            start = clock[sym]
            items.append(_kline(sym, start, open_, high, low, close))
            clock[sym] += BAR
            now = max(now, start + BAR - 1)
            last[sym] = close
            continue
        _, sym, kind, side, qty_i, offset_bp, reduce, leverage = step
        cid = f"c{n}"
        if kind == "cancel":
            items.append(CancelOrder(f"c{max(0, n - 1 - offset_bp % 4)}", sym, now))
        elif kind == "leverage":
            items.append(SetLeverage(sym, leverage, now))
        else:
            order_type = {
                "market": OrderType.MARKET,
                "stop": OrderType.STOP_MARKET,
                "tp": OrderType.TAKE_PROFIT_MARKET,
                "limit": OrderType.LIMIT,
            }[kind]
            # mostly on the side where the order rests; sometimes the other (a rejection)
            waits_below = (order_type is OrderType.STOP_MARKET) == (side is OrderSide.SELL)
            direction = -1 if waits_below else 1
            if offset_bp % 7 == 0:
                direction = -direction
            level = _tick(sym, last[sym] * (1 + direction * D(abs(offset_bp)) / 10000))
            items.append(
                PlaceOrder(
                    cid,
                    sym,
                    side,
                    order_type,
                    D(QTY[sym][qty_i]),
                    now,
                    price=level if order_type is OrderType.LIMIT else None,
                    trigger_price=level if order_type.is_conditional else None,
                    reduce_only=reduce,
                )
            )
    return items


def run(exchange: PaperExchange, items) -> list:
    return [exchange.on_bar(i) if isinstance(i, Kline) else exchange.handle(i) for i in items]


@given(scenarios, configs)
def test_same_inputs_same_events(steps, config):
    items = build(steps)
    assert run(PaperExchange(RULES, config), items) == run(PaperExchange(RULES, config), items)


@given(scenarios, configs, st.data())
def test_a_snapshot_and_restore_in_the_middle_changes_nothing(steps, config, data):
    items = build(steps)
    split = data.draw(st.integers(0, len(items)))
    whole = run(PaperExchange(RULES, config), items)
    first = PaperExchange(RULES, config)
    head = run(first, items[:split])
    snapshot = json.loads(json.dumps(first.snapshot()))
    tail = run(PaperExchange.restore(RULES, snapshot, config), items[split:])
    assert head + tail == whole


@given(scenarios, configs)
def test_every_unit_of_cash_is_accounted_for(steps, config):
    exchange = PaperExchange(RULES, config)
    expected = config.initial_balance
    for item in build(steps):
        events = exchange.on_bar(item) if isinstance(item, Kline) else exchange.handle(item)
        for event in events:
            if isinstance(event, OrderFilled):
                expected += event.realized_pnl - event.fee
            elif isinstance(event, FundingPaid):
                expected += event.amount
            elif isinstance(event, Liquidated):
                expected -= event.margin_lost
        margins = sum((p.isolated_margin for p in exchange.positions()), D(0))
        assert exchange.cash + margins == expected
        assert exchange.cash >= 0
