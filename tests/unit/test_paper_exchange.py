"""The paper exchange's fill rules, on the recorded BTCUSDT/ETHUSDT rules."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from exchange.config import IntrabarPath, PaperExchangeConfig
from exchange.margin import initial_margin, isolated_liquidation_price
from exchange.model import (
    CancelOrder,
    CancelReason,
    FundingPaid,
    Kline,
    LeverageChanged,
    LeverageRejected,
    Liquidated,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    PlaceOrder,
    PositionSide,
    SetLeverage,
)
from exchange.paper import PaperExchange
from exchange.rules import ExchangeRules, RejectReason
from quantum.errors import InvalidRecord

D = Decimal
RULES = ExchangeRules.bundled()
MINUTE = 60_000
BUY, SELL = OrderSide.BUY, OrderSide.SELL
MARKET, STOP, TP, LIMIT = (
    OrderType.MARKET,
    OrderType.STOP_MARKET,
    OrderType.TAKE_PROFIT_MARKET,
    OrderType.LIMIT,
)
NO_COSTS = PaperExchangeConfig(
    taker_fee_rate=D(0), maker_fee_rate=D(0), market_slippage_bps=D(0), initial_balance=D(10000)
)


def kline(symbol: str, open_time: int, close_time: int, o, h, l, c) -> Kline:  # noqa: E741
    """The kit's market.ticks bar, as the feed produces it."""
    return Kline(
        symbol=symbol,
        interval="1m",
        open_time=open_time,
        close_time=close_time,
        open=D(o),
        high=D(h),
        low=D(l),
        close=D(c),
        volume=D(1),
    )


def bar(i: int, o, h, l, c, symbol: str = "BTCUSDT") -> Kline:  # noqa: E741
    return kline(symbol, i * MINUTE, i * MINUTE + MINUTE - 1, o, h, l, c)


def order(cid, side, type_, qty, t, *, trigger=None, price=None, reduce=False, symbol="BTCUSDT"):
    return PlaceOrder(
        cid,
        symbol,
        side,
        type_,
        D(qty),
        t,
        price=None if price is None else D(price),
        trigger_price=None if trigger is None else D(trigger),
        reduce_only=reduce,
    )


def only(events, kind):
    found = [e for e in events if isinstance(e, kind)]
    assert len(found) == 1, events
    return found[0]


def long_with_brackets(config=NO_COSTS, leverage=10, qty="0.100", sl=None, tp=None):
    """A BTCUSDT exchange at 60,000 with a market long filled at bar 1's open."""
    ex = PaperExchange(RULES, config)
    ex.on_bar(bar(0, 60000, 60000, 60000, 60000))
    ex.set_leverage(SetLeverage("BTCUSDT", leverage, MINUTE - 1))
    assert isinstance(
        ex.place_order(order("entry", BUY, MARKET, qty, MINUTE - 1))[0], OrderAccepted
    )
    if sl is not None:
        ex.place_order(order("sl", SELL, STOP, qty, MINUTE - 1, trigger=sl, reduce=True))
    if tp is not None:
        ex.place_order(order("tp", SELL, TP, qty, MINUTE - 1, trigger=tp, reduce=True))
    return ex


def test_market_orders_fill_at_the_next_bar_open_with_adverse_slippage_and_taker_fee():
    config = PaperExchangeConfig(market_slippage_bps=D(2), taker_fee_rate=D("0.0005"))
    ex = PaperExchange(RULES, config)
    ex.on_bar(bar(0, 60000, 60050, 59950, 60000))
    accepted = ex.place_order(order("e1", BUY, MARKET, "0.010", MINUTE - 1))
    assert isinstance(accepted[0], OrderAccepted)
    assert ex.position("BTCUSDT") is None  # nothing fills before the next bar
    fill = only(ex.on_bar(bar(1, "60012.3", 60100, 60000, 60050)), OrderFilled)
    # 60,012.3 * 1.0002 = 60,024.3024..., rounded up to the 0.10 tick against the buyer
    assert fill.price == D("60024.4")
    assert fill.fee == D("0.010") * D("60024.4") * D("0.0005")
    assert fill.event_time_ms == MINUTE
    assert fill.position_quantity == D("0.010")
    sell = ex.place_order(order("x1", SELL, MARKET, "0.010", 2 * MINUTE - 1, reduce=True))
    assert isinstance(sell[0], OrderAccepted)
    close = only(ex.on_bar(bar(2, "60100.0", 60200, 60000, 60100)), OrderFilled)
    assert close.price == D("60087.9")  # 60,100 * 0.9998 = 60,087.98 rounded down
    assert close.realized_pnl == D("0.010") * (D("60087.9") - D("60024.4"))
    assert close.position_quantity == 0 and close.position_entry_price is None


def test_a_market_order_waits_for_a_bar_that_opens_after_it():
    ex = PaperExchange(RULES, NO_COSTS)
    ex.on_bar(bar(0, 60000, 60000, 60000, 60000))
    ex.place_order(order("e1", BUY, MARKET, "0.010", MINUTE + 5))  # after bar 1 opened
    assert ex.on_bar(bar(1, 60000, 60000, 60000, 60000)) == []
    assert only(ex.on_bar(bar(2, 60100, 60100, 60100, 60100)), OrderFilled).price == D(60100)


def test_stop_triggers_inside_the_bar_and_fills_at_its_trigger():
    ex = long_with_brackets(sl="59100.0", tp="61500.0")
    ex.on_bar(bar(1, 60000, 60000, 60000, 60000))  # entry fills at 60,000
    events = ex.on_bar(bar(2, 59800, 59900, 59000, 59500))
    fill = only(events, OrderFilled)
    assert (fill.client_order_id, fill.price, fill.event_time_ms) == (
        "sl",
        D("59100.0"),
        3 * MINUTE - 1,
    )
    assert fill.realized_pnl == D("0.100") * D(-900)
    assert only(events, OrderCanceled).reason is CancelReason.POSITION_CLOSED  # the TP


def test_take_profit_fills_at_its_trigger():
    ex = long_with_brackets(sl="59100.0", tp="61500.0")
    ex.on_bar(bar(1, 60000, 60000, 60000, 60000))
    fill = only(ex.on_bar(bar(2, 60500, 61600, 60400, 61000)), OrderFilled)
    assert (fill.client_order_id, fill.price) == ("tp", D("61500.0"))


def test_a_bar_that_gaps_through_the_stop_fills_it_at_the_open():
    ex = long_with_brackets(sl="59100.0")
    ex.on_bar(bar(1, 60000, 60000, 60000, 60000))
    fill = only(ex.on_bar(bar(2, 58800, 59200, 58500, 59000)), OrderFilled)
    assert (fill.client_order_id, fill.price, fill.event_time_ms) == ("sl", D(58800), 2 * MINUTE)


@pytest.mark.parametrize(
    ("path", "winner"),
    [
        (IntrabarPath.ADVERSE_FIRST, "sl"),
        (IntrabarPath.FAVORABLE_FIRST, "tp"),
        (IntrabarPath.NEAREST_FIRST, "tp"),  # open 61,000 is nearer the high
    ],
)
def test_when_one_bar_touches_both_stop_and_take_profit_the_rule_decides(path, winner):
    config = NO_COSTS.model_copy(update={"intrabar_path": path})
    ex = long_with_brackets(config, sl="59100.0", tp="61500.0")
    ex.on_bar(bar(1, 60000, 60000, 60000, 60000))
    events = ex.on_bar(bar(2, 61000, 61600, 59000, 60000))
    assert only(events, OrderFilled).client_order_id == winner
    assert ex.position("BTCUSDT") is None


def test_fees_and_cash_add_up_over_a_round_trip():
    config = PaperExchangeConfig(taker_fee_rate=D("0.0005"), market_slippage_bps=D(0))
    ex = long_with_brackets(config, tp="61500.0")
    entry = only(ex.on_bar(bar(1, 60000, 60000, 60000, 60000)), OrderFilled)
    assert ex.cash == D(10000) - initial_margin(D(6000), 10) - entry.fee
    exit_ = only(ex.on_bar(bar(2, 61000, 61600, 60900, 61000)), OrderFilled)
    assert entry.fee == D("3.0000") and exit_.fee == D("3.07500")
    assert ex.cash == D(10000) + exit_.realized_pnl - entry.fee - exit_.fee
    assert exit_.realized_pnl == D(150)


def _thirty_x_long(stop: str | None) -> PaperExchange:
    ex = long_with_brackets(NO_COSTS, leverage=30, qty="0.100", sl=stop)
    ex.on_bar(bar(1, 60000, 60000, 60000, 60000))
    return ex


def test_a_minus_three_percent_gap_at_30x_liquidates_at_the_open_and_loses_the_margin():
    for stop in (None, "59100.0"):  # a stop at -1.5 % does not help across a gap
        ex = _thirty_x_long(stop)
        margin = ex.position("BTCUSDT").isolated_margin
        lp = ex.position("BTCUSDT").liquidation_price
        assert margin == D(200) and D(58200) < lp < D(60000)
        events = ex.on_bar(bar(2, 58200, 58400, 58000, 58300))  # opens -3 %
        liquidation = only(events, Liquidated)
        assert liquidation.price == D(58200) and liquidation.margin_lost == margin
        assert liquidation.realized_pnl == D("0.100") * D(-1800)
        assert liquidation.insurance_fee == margin + liquidation.realized_pnl  # -> -20
        assert not [e for e in events if isinstance(e, OrderFilled)]
        assert ex.cash == D(10000) - margin  # exactly the margin, never more
        assert ex.position("BTCUSDT") is None and ex.open_orders() == []


def test_inside_a_bar_the_stop_comes_before_the_liquidation_price():
    ex = _thirty_x_long("59100.0")
    fill = only(ex.on_bar(bar(2, 60000, 60000, 58200, 58300)), OrderFilled)  # -3 % wick
    assert fill.price == D("59100.0") and fill.realized_pnl == D(-90)  # -45 % of the margin


def test_without_a_stop_a_wick_through_the_liquidation_price_liquidates_there():
    ex = _thirty_x_long(None)
    lp = ex.position("BTCUSDT").liquidation_price
    liquidation = only(ex.on_bar(bar(2, 60000, 60000, 58200, 58300)), Liquidated)
    assert liquidation.price == lp and liquidation.event_time_ms == 3 * MINUTE - 1
    assert ex.cash == D(10000) - D(200)


def test_short_liquidation_and_its_price():
    ex = PaperExchange(RULES, NO_COSTS)
    ex.on_bar(bar(0, 60000, 60000, 60000, 60000))
    ex.set_leverage(SetLeverage("BTCUSDT", 50, MINUTE - 1))
    ex.place_order(order("s", SELL, MARKET, "0.100", MINUTE - 1))
    ex.on_bar(bar(1, 60000, 60000, 60000, 60000))
    view = ex.position("BTCUSDT")
    assert view.side is PositionSide.SHORT
    expected = isolated_liquidation_price(
        PositionSide.SHORT, D("0.100"), D(60000), D(120), RULES["BTCUSDT"].brackets
    )
    assert view.liquidation_price == expected
    assert only(ex.on_bar(bar(2, 60000, 61500, 59900, 61000)), Liquidated).price == expected


def test_reduce_only_orders_wait_for_their_position_and_go_when_it_closes():
    ex = long_with_brackets(sl="59100.0")
    assert ex.on_bar(bar(1, 60000, 60000, 60000, 60000))  # entry
    ex.place_order(order("tp", SELL, TP, "0.100", 2 * MINUTE - 1, trigger="60500.0", reduce=True))
    events = ex.on_bar(bar(2, 60100, 60600, 60000, 60200))
    assert only(events, OrderFilled).client_order_id == "tp"
    canceled = only(events, OrderCanceled)
    assert (canceled.client_order_id, canceled.reason) == ("sl", CancelReason.POSITION_CLOSED)


def test_canceling_the_entry_cancels_its_pending_protection():
    ex = PaperExchange(RULES, NO_COSTS)
    ex.on_bar(bar(0, 60000, 60000, 60000, 60000))
    ex.place_order(order("e", BUY, STOP, "0.100", 1, trigger="61000.0"))  # breakout entry
    ex.place_order(order("sl", SELL, STOP, "0.100", 2, trigger="59000.0", reduce=True))
    events = ex.cancel_order(CancelOrder("e", "BTCUSDT", 3))
    assert [type(e) for e in events] == [OrderCanceled, OrderCanceled]
    assert events[1].reason is CancelReason.ENTRY_NOT_FILLED
    assert ex.cancel_order(CancelOrder("e", "BTCUSDT", 4))[0].reason is RejectReason.UNKNOWN_ORDER


def test_a_stop_entry_and_its_stop_in_one_bar_follow_the_path():
    ex = PaperExchange(RULES, NO_COSTS)
    ex.on_bar(bar(0, 60000, 60000, 60000, 60000))
    ex.place_order(order("e", BUY, STOP, "0.100", 1, trigger="60500.0"))
    ex.place_order(order("sl", SELL, STOP, "0.100", 2, trigger="59800.0", reduce=True))
    # flat at the open: nearest extreme first (the high), entry at 60,500, then down to the stop
    events = ex.on_bar(bar(1, 60400, 60600, 59700, 59900))
    fills = [(e.client_order_id, e.price) for e in events if isinstance(e, OrderFilled)]
    assert fills == [("e", D("60500.0")), ("sl", D("59800.0"))]


def test_limit_orders_fill_at_their_price_as_maker_or_at_the_open_as_taker():
    config = PaperExchangeConfig(
        maker_fee_rate=D("0.0002"), taker_fee_rate=D("0.0005"), market_slippage_bps=D(0)
    )
    ex = PaperExchange(RULES, config)
    ex.on_bar(bar(0, 3000, 3000, 3000, 3000, "ETHUSDT"))
    ex.place_order(order("l1", BUY, LIMIT, "1.000", 1, price="2950.00", symbol="ETHUSDT"))
    fill = only(ex.on_bar(bar(1, 2990, 2995, 2940, 2960, "ETHUSDT")), OrderFilled)
    assert (fill.price, fill.maker, fill.fee) == (D("2950.00"), True, D("0.590000"))
    ex.place_order(order("l2", SELL, LIMIT, "1.000", 2 * MINUTE - 1, price="2970.00",
                         reduce=True, symbol="ETHUSDT"))  # fmt: skip
    fill = only(ex.on_bar(bar(2, 2980, 2990, 2975, 2985, "ETHUSDT")), OrderFilled)
    assert (fill.price, fill.maker) == (D(2980), False)  # opened above the limit: taker


def test_orders_that_break_the_rules_are_rejected_never_rounded():
    ex = PaperExchange(RULES, NO_COSTS)
    no_bar = ex.place_order(order("a", BUY, MARKET, "0.010", 0))[0]
    assert no_bar.reason is RejectReason.NO_MARK_PRICE
    ex.on_bar(bar(0, 60000, 60000, 60000, 60000))

    def reason(cmd):
        event = ex.place_order(cmd)[0]
        assert isinstance(event, OrderRejected), event
        return event.reason

    assert reason(order("a", BUY, MARKET, "0.001", 1)) is RejectReason.BELOW_MIN_NOTIONAL
    assert reason(order("a", BUY, MARKET, "0.0101", 1)) is RejectReason.QTY_PRECISION_EXCEEDED
    assert reason(order("a b", BUY, MARKET, "0.010", 1)) is RejectReason.INVALID_CLIENT_ORDER_ID
    assert reason(order("x" * 37, BUY, MARKET, "0.010", 1)) is RejectReason.INVALID_CLIENT_ORDER_ID
    assert reason(order("a", BUY, MARKET, "0.010", 1, symbol="FOOUSDT")) is (
        RejectReason.UNKNOWN_SYMBOL
    )
    assert reason(order("a", SELL, STOP, "0.010", 1, trigger="59000.0", reduce=True)) is (
        RejectReason.REDUCE_ONLY_REJECTED  # nothing to reduce yet
    )
    assert reason(order("a", BUY, MARKET, "100.000", 1)) is RejectReason.INSUFFICIENT_MARGIN
    assert isinstance(ex.place_order(order("e", BUY, MARKET, "0.010", 1))[0], OrderAccepted)
    assert reason(order("e", SELL, MARKET, "0.010", 1, reduce=True)) is (
        RejectReason.DUPLICATE_CLIENT_ORDER_ID
    )
    assert reason(order("e2", BUY, MARKET, "0.010", 1)) is RejectReason.POSITION_OPEN
    assert reason(order("sl", SELL, STOP, "0.010", 1, trigger="60100.0", reduce=True)) is (
        RejectReason.WOULD_IMMEDIATELY_TRIGGER
    )
    assert reason(order("sl", BUY, STOP, "0.010", 1, trigger="59000.0", reduce=True)) is (
        RejectReason.WOULD_IMMEDIATELY_TRIGGER  # and a BUY would not reduce a long anyway
    )
    ex.on_bar(bar(1, 60000, 60000, 60000, 60000))
    assert reason(order("e3", SELL, MARKET, "0.010", MINUTE + 1)) is RejectReason.POSITION_OPEN


def test_leverage_is_set_per_symbol_within_the_brackets():
    ex = PaperExchange(RULES, NO_COSTS)
    ex.on_bar(bar(0, 60000, 60000, 60000, 60000))
    assert ex.leverage("BTCUSDT") == 20
    rejected = ex.set_leverage(SetLeverage("BTCUSDT", 126, 1))[0]
    assert isinstance(rejected, LeverageRejected)
    assert rejected.reason is RejectReason.LEVERAGE_NOT_ALLOWED
    changed = ex.set_leverage(SetLeverage("BTCUSDT", 125, 1))[0]
    assert isinstance(changed, LeverageChanged) and changed.max_notional == D(50000)
    too_big = ex.place_order(order("e", BUY, MARKET, "1.000", 2))[0]  # 60,000 > 50,000 at 125x
    assert too_big.reason is RejectReason.ABOVE_MAX_NOTIONAL_AT_LEVERAGE
    ex.place_order(order("e", BUY, MARKET, "0.100", 2))
    blocked = ex.set_leverage(SetLeverage("BTCUSDT", 10, 3))[0]
    assert blocked.reason is RejectReason.POSITION_OPEN


def test_entry_without_margin_at_the_fill_price_expires():
    ex = PaperExchange(RULES, NO_COSTS.model_copy(update={"initial_balance": D(300)}))
    ex.on_bar(bar(0, 60000, 60000, 60000, 60000))
    ex.place_order(order("e", BUY, MARKET, "0.100", 1))  # 6,000 / 20x = 300: just fits
    expired = only(ex.on_bar(bar(1, 60100, 60100, 60100, 60100)), OrderExpired)
    assert expired.reason is RejectReason.INSUFFICIENT_MARGIN


def test_funding_is_off_by_default_and_settles_on_the_isolated_margin_when_on():
    hour = 60 * MINUTE
    for rate, expected in ((None, None), (D("0.0001"), D("-0.6000"))):
        ex = PaperExchange(RULES, NO_COSTS.model_copy(update={"funding_rate_8h": rate}))
        ex.on_bar(kline("BTCUSDT", 7 * hour, 8 * hour - 1, *[60000] * 4))
        ex.place_order(order("e", BUY, MARKET, "0.100", 8 * hour - 1))
        first = ex.on_bar(kline("BTCUSDT", 8 * hour, 9 * hour - 1, *[60000] * 4))
        funding = [e for e in first if isinstance(e, FundingPaid)]
        # the position opens at 08:00's open, after that funding time; the next is 16:00
        assert funding == []
        later = ex.on_bar(kline("BTCUSDT", 16 * hour, 17 * hour - 1, *[60000] * 4))
        paid = [e for e in later if isinstance(e, FundingPaid)]
        if expected is None:
            assert paid == []
        else:
            assert [p.amount for p in paid] == [expected]  # a long pays 0.01 % of 6,000
            assert ex.position("BTCUSDT").isolated_margin == D(300) + expected


def test_bars_are_idempotent_and_in_order():
    ex = PaperExchange(RULES, NO_COSTS)
    first = bar(0, 60000, 60000, 60000, 60000)
    ex.on_bar(first)
    ex.on_bar(bar(2, 60000, 60000, 60000, 60000))
    assert ex.on_bar(bar(2, 61000, 61000, 61000, 61000)) == []  # redelivery: no change
    assert ex.last_price("BTCUSDT") == D(60000)
    with pytest.raises(InvalidRecord):
        ex.on_bar(bar(1, 60000, 60000, 60000, 60000))
    with pytest.raises(InvalidRecord):
        ex.on_bar(bar(3, 100, 99, 98, 100))  # high below the open


def test_snapshot_restore_carries_the_whole_state():
    ex = long_with_brackets(PaperExchangeConfig(), sl="59100.0", tp="61500.0")
    ex.on_bar(bar(1, 60000, 60100, 59950, 60050))
    snap = json.loads(json.dumps(ex.snapshot()))
    twin = PaperExchange.restore(RULES, snap, PaperExchangeConfig())
    assert twin.snapshot() == ex.snapshot()
    tail = [bar(2, 60050, 60300, 59000, 59200), bar(3, 59200, 59300, 59100, 59250)]
    assert [ex.on_bar(b) for b in tail] == [twin.on_bar(b) for b in tail]
    assert ex.cash == twin.cash


def test_events_serialise_to_json_safe_dicts():
    ex = long_with_brackets()
    events = ex.on_bar(bar(1, 60000, 60000, 60000, 60000))
    record = only(events, OrderFilled).to_dict()
    assert record["type"] == "OrderFilled" and record["price"] == "60000.00"
    assert record["side"] == "BUY"
    json.dumps(record)


def test_no_fill_beyond_the_liquidation_price_even_with_stop_slippage():
    for slippage, expected in ((D(0), OrderFilled), (D(50), Liquidated)):
        config = NO_COSTS.model_copy(update={"stop_slippage_bps": slippage})
        ex = long_with_brackets(config, leverage=30, qty="0.100")
        ex.on_bar(bar(1, 60000, 60000, 60000, 60000))
        lp = ex.position("BTCUSDT").liquidation_price
        stop = RULES["BTCUSDT"].round_trigger(lp, PositionSide.LONG, STOP)  # just above the LP
        ex.place_order(order("sl", SELL, STOP, "0.100", 2 * MINUTE - 1, trigger=str(stop),
                             reduce=True))  # fmt: skip
        events = ex.on_bar(bar(2, 60000, 60000, 58000, 58100))
        outcome = [e for e in events if isinstance(e, OrderFilled | Liquidated)]
        assert [type(e) for e in outcome] == [expected]
        if expected is OrderFilled:
            assert outcome[0].price == stop >= lp
        else:
            assert outcome[0].price == lp  # a 50 bp slipped stop fill would lie beyond it


def _sample_run() -> tuple[list, PaperExchange]:
    """The first 3,000 bars of the bundled sample (ten symbols, 5 hours) with a fixed toy
    strategy: enter every 7th bar when flat, alternating sides, 0.5 % stop, 0.8 % target."""
    from itertools import islice

    from quantum.marketdata import sample_klines

    ex = PaperExchange(RULES, PaperExchangeConfig(funding_rate_8h=D("0.0001")))
    events: list = []
    for i, record in enumerate(islice(sample_klines(), 3000)):
        k = Kline.from_record(record)
        events += ex.on_bar(k)
        if i % 7 or ex.position(k.symbol) or ex.open_orders(k.symbol):
            continue
        side = PositionSide.LONG if i % 2 else PositionSide.SHORT
        rules = RULES[k.symbol]
        stop = rules.round_trigger(k.close * (1 - side.sign * D("0.005")), side, STOP)
        target = rules.round_trigger(k.close * (1 + side.sign * D("0.008")), side, TP)
        q = rules.floor_quantity(D(300) / k.close)  # about 300 USDT, above every MIN_NOTIONAL
        t, close = k.close_time, side.closing_order_side
        events += ex.handle(PlaceOrder(f"e{i}", k.symbol, side.opening_order_side, MARKET, q, t))
        events += ex.handle(PlaceOrder(f"s{i}", k.symbol, close, STOP, q, t, trigger_price=stop,
                                       reduce_only=True))  # fmt: skip
        events += ex.handle(PlaceOrder(f"t{i}", k.symbol, close, TP, q, t, trigger_price=target,
                                       reduce_only=True))  # fmt: skip
    return events, ex


def test_the_bundled_sample_replays_to_the_same_trades():
    first, ex = _sample_run()
    second, _ = _sample_run()
    assert first == second
    fills = [e for e in first if isinstance(e, OrderFilled)]
    assert len(fills) > 20 and not [e for e in first if isinstance(e, OrderRejected)]
    pnl = sum((f.realized_pnl - f.fee for f in fills), D(0))
    pnl += sum((e.amount for e in first if isinstance(e, FundingPaid)), D(0))
    pnl -= sum((e.margin_lost for e in first if isinstance(e, Liquidated)), D(0))
    margins = sum((p.isolated_margin for p in ex.positions()), D(0))
    assert ex.cash + margins == D(10000) + pnl


def test_partial_and_oversized_reduce_only_closes():
    ex = long_with_brackets()  # 0.100 BTC at 60,000, 10x: margin 600
    ex.on_bar(bar(1, 60000, 60000, 60000, 60000))
    ex.place_order(order("p1", SELL, MARKET, "0.040", 2 * MINUTE - 1, reduce=True))
    part = only(ex.on_bar(bar(2, 60500, 60500, 60500, 60500)), OrderFilled)
    assert (part.quantity, part.position_quantity, part.realized_pnl) == (
        D("0.040"), D("0.060"), D(20)
    )  # fmt: skip
    assert ex.position("BTCUSDT").isolated_margin == D(360)
    ex.place_order(order("p2", SELL, MARKET, "1.000", 3 * MINUTE - 1, reduce=True))
    rest = only(ex.on_bar(bar(3, 59500, 59500, 59500, 59500)), OrderFilled)
    assert (rest.quantity, rest.position_quantity) == (D("0.060"), D(0))  # clamped to the size
    assert ex.cash == D(10000) + D(20) + D("0.060") * D(-500)
