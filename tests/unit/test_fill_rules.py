"""The fill rules docs/backtest.md writes down, one test per rule, on the pure paper exchange.

Each test drives a small hand-made BTCUSDT bar sequence (tick 0.10) and checks the fill
price worked out by hand in its comment. Orders are placed the way a backtest places them:
an entry at the close of the bar its signal saw; the protective stop and take-profit after
the entry's fill was reported (execution reacts to the fill), i.e. after the fill's bar.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from exchange.config import IntrabarPath, PaperExchangeConfig
from exchange.model import (
    Kline,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    PlaceOrder,
)
from exchange.paper import PaperExchange
from exchange.rules import ExchangeRules, RejectReason

D = Decimal
RULES = ExchangeRules.bundled()
MIN = 60_000
BUY, SELL = OrderSide.BUY, OrderSide.SELL
FREE = PaperExchangeConfig(taker_fee_rate=D(0), maker_fee_rate=D(0), market_slippage_bps=D(0))


def bar(i: int, o, h, l, c) -> Kline:  # noqa: E741
    """Bar i of BTCUSDT: open time i minutes, close time one ms before the next."""
    return Kline(
        symbol="BTCUSDT",
        interval="1m",
        open_time=i * MIN,
        close_time=(i + 1) * MIN - 1,
        open=D(o),
        high=D(h),
        low=D(l),
        close=D(c),
        volume=D(1),
    )


def place(ex: PaperExchange, cid: str, side, otype, qty, at: int, *, trigger=None, reduce=False):
    events = ex.place_order(
        PlaceOrder(
            cid,
            "BTCUSDT",
            side,
            otype,
            D(qty),
            at,
            trigger_price=None if trigger is None else D(trigger),
            reduce_only=reduce,
        )
    )
    assert not any(isinstance(e, OrderRejected) for e in events), events
    return events


def fills(events) -> list[tuple[str, Decimal, int]]:
    return [
        (e.client_order_id, e.price, e.event_time_ms) for e in events if isinstance(e, OrderFilled)
    ]


def entered(config: PaperExchangeConfig = FREE, side=BUY, entry_open="60000.0") -> PaperExchange:
    """Bar 0 seen, a market entry sent at its close, filled at bar 1's open."""
    ex = PaperExchange(RULES, config)
    ex.on_bar(bar(0, 60000, 60010, 59990, 60000))
    place(ex, "entry", side, OrderType.MARKET, "0.010", MIN - 1)
    events = ex.on_bar(bar(1, entry_open, 60100, 59900, 60000))
    assert [f[0] for f in fills(events)] == ["entry"]
    return ex


def protect(ex: PaperExchange, *, long=True, sl=None, tp=None, at=2 * MIN - 1) -> None:
    """Protective orders as execution places them: reduce-only, after the fill's bar."""
    close_side = SELL if long else BUY
    if sl is not None:
        place(ex, "sl", close_side, OrderType.STOP_MARKET, "0.010", at, trigger=sl, reduce=True)
    if tp is not None:
        place(
            ex, "tp", close_side, OrderType.TAKE_PROFIT_MARKET, "0.010", at, trigger=tp, reduce=True
        )


# 1. Market orders fill at the next bar's open -------------------------------------------------


def test_market_order_fills_at_the_next_bars_open_not_the_signal_bars_close() -> None:
    ex = PaperExchange(RULES, FREE)
    ex.on_bar(bar(0, 60000, 60010, 59990, "60005.0"))  # the signal's bar closes at 60,005
    place(ex, "entry", BUY, OrderType.MARKET, "0.010", MIN - 1)
    assert ex.position("BTCUSDT") is None  # nothing fills on the bar it was sent after
    events = ex.on_bar(bar(1, "60020.0", 60100, 59900, 60000))
    assert fills(events) == [("entry", D("60020.0"), MIN)]  # bar 1's open, at its open time


def test_market_slippage_moves_the_open_against_the_trader_and_rounds_to_the_tick() -> None:
    config = FREE.model_copy(update={"market_slippage_bps": D(1)})
    ex = PaperExchange(RULES, config)
    ex.on_bar(bar(0, 60000, 60010, 59990, 60000))
    place(ex, "entry", BUY, OrderType.MARKET, "0.010", MIN - 1)
    # the entry: 60,000 x 1.0001 = 60,006.0 (on the tick already)
    assert fills(ex.on_bar(bar(1, 60000, 60100, 59900, 60000))) == [("entry", D("60006.0"), MIN)]
    # the exit: a market sell at bar 2's open 60,123.4: x 0.9999 = 60,117.3876 -> 60,117.3
    place(ex, "exit", SELL, OrderType.MARKET, "0.010", 2 * MIN - 1, reduce=True)
    events = ex.on_bar(bar(2, "60123.4", 60200, 60100, 60150))
    assert fills(events) == [("exit", D("60117.3"), 2 * MIN)]


def test_slipped_entry_price_by_hand() -> None:
    config = FREE.model_copy(update={"market_slippage_bps": D(1)})
    ex = PaperExchange(RULES, config)
    ex.on_bar(bar(0, 60000, 60010, 59990, 60000))
    place(ex, "entry", BUY, OrderType.MARKET, "0.010", MIN - 1)
    # 60,012.3 x 1.0001 = 60,018.30123 -> up to the tick against the buyer: 60,018.4
    events = ex.on_bar(bar(1, "60012.3", 60100, 59900, 60000))
    assert fills(events) == [("entry", D("60018.4"), MIN)]


# 2. Stops and take-profits inside a bar fill at their price ------------------------------------


def test_stop_touched_inside_a_bar_fills_at_its_trigger() -> None:
    ex = entered()
    assert ex.position("BTCUSDT").entry_price == D(60000)
    protect(ex, sl="59100.0", tp="61500.0")
    # bar 2 opens above the stop and trades down through it: filled at 59,100.0
    events = ex.on_bar(bar(2, 59800, 59900, 59000, 59500))
    assert fills(events) == [("sl", D("59100.0"), 3 * MIN - 1)]  # inside the bar: its close time


def test_take_profit_touched_inside_a_bar_fills_at_its_trigger() -> None:
    ex = entered()
    protect(ex, sl="59100.0", tp="61500.0")
    events = ex.on_bar(bar(2, 60200, 61800, 60100, 61000))
    assert fills(events) == [("tp", D("61500.0"), 3 * MIN - 1)]


def test_short_stop_and_take_profit_mirror() -> None:
    ex = entered(side=SELL)  # short 0.010 at 60,000
    protect(ex, long=False, sl="60900.0", tp="58500.0")
    events = ex.on_bar(bar(2, 60100, 61000, 60050, 60800))
    assert fills(events) == [("sl", D("60900.0"), 3 * MIN - 1)]  # a buy stop, from below


# 3. ... or at the open when the bar gaps through ---------------------------------------------


def test_stop_gapped_through_fills_at_the_open() -> None:
    ex = entered()
    protect(ex, sl="59100.0", tp="61500.0")
    # the last close was 60,000; bar 2 opens at 58,700, below the stop: filled at 58,700
    events = ex.on_bar(bar(2, 58700, 58900, 58500, 58800))
    assert fills(events) == [("sl", D("58700"), 2 * MIN)]  # at the open, at its open time


def test_take_profit_gapped_through_fills_at_the_better_open() -> None:
    ex = entered()
    protect(ex, sl="59100.0", tp="61500.0")
    events = ex.on_bar(bar(2, 62000, 62100, 61900, 62050))
    assert fills(events) == [("tp", D("62000"), 2 * MIN)]


# 4. Both touched in one bar: intrabar_path decides -------------------------------------------

BOTH = (59800, 61800, 59000, 60500)  # open, high above the TP, low below the stop, close


@pytest.mark.parametrize(
    ("path", "winner", "price"),
    [
        (IntrabarPath.ADVERSE_FIRST, "sl", D("59100.0")),  # the default: the stop
        (IntrabarPath.FAVORABLE_FIRST, "tp", D("61500.0")),
        # 59,800 is 800 above the low and 2,000 below the high: the low comes first
        (IntrabarPath.NEAREST_FIRST, "sl", D("59100.0")),
    ],
)
def test_both_touched_in_one_bar(path: IntrabarPath, winner: str, price: Decimal) -> None:
    ex = entered(FREE.model_copy(update={"intrabar_path": path}))
    protect(ex, sl="59100.0", tp="61500.0")
    events = ex.on_bar(bar(2, *BOTH))
    assert fills(events) == [(winner, price, 3 * MIN - 1)]
    assert ex.position("BTCUSDT") is None
    assert ex.open_orders() == []  # the other bracket is canceled with the position


def test_nearest_first_takes_the_high_when_it_is_nearer() -> None:
    ex = entered(FREE.model_copy(update={"intrabar_path": IntrabarPath.NEAREST_FIRST}))
    protect(ex, sl="59100.0", tp="61500.0")
    events = ex.on_bar(bar(2, 61200, 61800, 59000, 60500))  # 600 to the high, 2,200 to the low
    assert fills(events) == [("tp", D("61500.0"), 3 * MIN - 1)]


def test_adverse_first_for_a_short_is_the_high() -> None:
    ex = entered(side=SELL)
    protect(ex, long=False, sl="60900.0", tp="58500.0")
    events = ex.on_bar(bar(2, 60200, 61000, 58000, 59000))  # the open is nearer the high
    assert fills(events) == [("sl", D("60900.0"), 3 * MIN - 1)]


# 5. The entry's own bar is not protected in a backtest ----------------------------------------


def test_protection_starts_on_the_bar_after_the_entry_fill() -> None:
    """Execution places the stop after it hears of the fill, so the fill's bar (bar 1 here,
    low 59,000 below the 59,100 stop) cannot trigger it; from bar 2 on it works."""
    ex = PaperExchange(RULES, FREE)
    ex.on_bar(bar(0, 60000, 60010, 59990, 60000))
    place(ex, "entry", BUY, OrderType.MARKET, "0.010", MIN - 1)
    events = ex.on_bar(bar(1, 60000, 60100, 59000, 59950))
    assert fills(events) == [("entry", D("60000"), MIN)]
    protect(ex, sl="59100.0")
    assert ex.position("BTCUSDT") is not None  # the dip to 59,000 did not stop it out
    events = ex.on_bar(bar(2, 59950, 59960, 59050, 59500))
    assert fills(events) == [("sl", D("59100.0"), 3 * MIN - 1)]


def test_a_stop_already_through_when_placed_is_refused() -> None:
    """The price closed below where the stop would go: the exchange refuses it (Binance
    -2021) and execution closes the position at market (close_when_unprotected)."""
    ex = PaperExchange(RULES, FREE)
    ex.on_bar(bar(0, 60000, 60010, 59990, 60000))
    place(ex, "entry", BUY, OrderType.MARKET, "0.010", MIN - 1)
    ex.on_bar(bar(1, 60000, 60000, 58900, 59000))  # closes at 59,000
    events = ex.place_order(
        PlaceOrder(
            "sl",
            "BTCUSDT",
            SELL,
            OrderType.STOP_MARKET,
            D("0.010"),
            2 * MIN - 1,
            trigger_price=D("59100.0"),
            reduce_only=True,
        )
    )
    assert [e.reason for e in events if isinstance(e, OrderRejected)] == [
        RejectReason.WOULD_IMMEDIATELY_TRIGGER
    ]


# 6. Fees and stop slippage -------------------------------------------------------------------


def test_taker_fee_on_market_and_triggered_fills() -> None:
    config = PaperExchangeConfig(
        taker_fee_rate=D("0.0005"), maker_fee_rate=D("0.0002"), market_slippage_bps=D(0)
    )
    ex = PaperExchange(RULES, config)
    ex.on_bar(bar(0, 60000, 60010, 59990, 60000))
    place(ex, "entry", BUY, OrderType.MARKET, "0.010", MIN - 1)
    entry = [e for e in ex.on_bar(bar(1, 60000, 60100, 59900, 60000)) if isinstance(e, OrderFilled)]
    assert entry[0].fee == D("0.300")  # 0.010 x 60,000 = 600 notional x 0.05 %
    assert not entry[0].maker
    protect(ex, sl="59100.0")
    stop = [e for e in ex.on_bar(bar(2, 59800, 59900, 59000, 59500)) if isinstance(e, OrderFilled)]
    assert stop[0].price == D("59100.0")
    assert stop[0].fee == D("0.29550")  # 591 notional x 0.05 %
    assert stop[0].realized_pnl == D("-9.000")  # 0.010 x (59,100 - 60,000), before the fee
    assert ex.cash == D(10000) - D("0.300") - D("9.000") - D("0.29550")


def test_stop_slippage_moves_an_inside_bar_stop_but_not_a_gap_fill() -> None:
    config = FREE.model_copy(update={"stop_slippage_bps": D(10)})
    ex = entered(config)
    protect(ex, sl="59100.0")
    # 59,100 x 0.999 = 59,040.9 (a sell: rounded down to the tick)
    events = ex.on_bar(bar(2, 59800, 59900, 59000, 59500))
    assert fills(events) == [("sl", D("59040.9"), 3 * MIN - 1)]

    ex = entered(config)
    protect(ex, sl="59100.0")
    events = ex.on_bar(bar(2, 58700, 58900, 58500, 58800))
    assert fills(events) == [("sl", D("58700"), 2 * MIN)]  # the open, not slipped further
