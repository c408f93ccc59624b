"""Exchange rules on the recorded Binance values: parsing, rounding and filter checks."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.margin import derive_cums
from exchange.model import OrderSide, OrderType, PositionSide
from exchange.rules import (
    BUNDLED_RULES,
    ExchangeRules,
    ExchangeRulesError,
    RejectReason,
)

SAMPLE_SYMBOLS = {
    "BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT",
    "DOGEUSDT", "ADAUSDT", "AVAXUSDT", "LINKUSDT", "LTCUSDT",
}  # fmt: skip

D = Decimal
ETH_LOT = ExchangeRules.bundled()["ETHUSDT"].market_lot_size


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(BUNDLED_RULES.read_text(encoding="utf-8"), parse_float=Decimal)


@pytest.fixture(scope="module")
def rules() -> ExchangeRules:
    return ExchangeRules.bundled()


def test_bundled_file_covers_the_sample_symbols_and_cites_its_sources(document, rules):
    assert set(rules) == SAMPLE_SYMBOLS
    source = document["_source"]
    assert source["exchangeInfo"]["repository"] and source["exchangeInfo"]["commit"]
    assert source["leverageBracket"]["repository"] and source["leverageBracket"]["commit"]


def test_every_recorded_cum_follows_binances_derivation(document):
    """cum_n = floor_n * (MMR_n - MMR_{n-1}) + cum_{n-1}, on the raw recorded numbers."""
    for entry in document["leverageBracket"]:
        rows = entry["brackets"]
        derived = derive_cums((D(r["notionalFloor"]), D(r["maintMarginRatio"])) for r in rows)
        assert [D(r["cum"]) for r in rows] == derived, entry["symbol"]


def test_real_btcusdt_values(rules):
    btc = rules["BTCUSDT"]
    assert btc.market_lot_size.step == D("0.001")
    assert btc.market_lot_size.min_qty == D("0.001")
    assert btc.min_notional == D("100")
    assert btc.price_filter.tick == D("0.10")
    assert rules["ETHUSDT"].min_notional == D("20")
    assert rules["DOGEUSDT"].price_filter.tick == D("0.000010")
    assert btc.brackets.brackets[0].initial_leverage == 125
    assert btc.brackets.for_notional(D("600000")).maint_margin_ratio == D("0.005")
    assert btc.brackets.for_notional(D("600000.01")).maint_margin_ratio == D("0.0065")


def test_quantity_floors_to_the_market_or_limit_step(rules):
    btc = rules["BTCUSDT"]
    assert btc.floor_quantity(D("0.0019")) == D("0.001")
    assert btc.floor_quantity(D("0.0009")) == D("0")
    assert btc.floor_quantity(D("1.23456")) == D("1.234")
    bnb = rules["BNBUSDT"]  # LOT_SIZE maxQty 10000, MARKET_LOT_SIZE 100000: the lot is per type
    assert bnb.lot(OrderType.LIMIT).max_qty == D("10000")
    assert bnb.lot(OrderType.MARKET).max_qty == D("100000")
    assert bnb.lot(OrderType.STOP_MARKET) is bnb.market_lot_size


def test_trigger_rounding_is_toward_the_entry(rules):
    btc = rules["BTCUSDT"]
    raw = D("59123.456")
    assert btc.round_trigger(raw, PositionSide.LONG, OrderType.STOP_MARKET) == D("59123.5")
    assert btc.round_trigger(raw, PositionSide.SHORT, OrderType.TAKE_PROFIT_MARKET) == D("59123.5")
    assert btc.round_trigger(raw, PositionSide.SHORT, OrderType.STOP_MARKET) == D("59123.4")
    assert btc.round_trigger(raw, PositionSide.LONG, OrderType.TAKE_PROFIT_MARKET) == D("59123.4")
    assert btc.round_price(D("59123.45")) == D("59123.5")
    with pytest.raises(ValueError):
        btc.round_trigger(raw, PositionSide.LONG, OrderType.MARKET)


@given(st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=6))
def test_floored_quantity_is_a_step_multiple_not_above_the_input(raw):
    lot = ETH_LOT
    floored = lot.floor(raw)
    assert floored <= raw
    assert floored % lot.step == 0
    assert raw - floored < lot.step


def test_min_notional_at_the_mark_price_with_reduce_only_exempt(rules):
    btc = rules["BTCUSDT"]
    base = {"side": OrderSide.BUY, "order_type": OrderType.MARKET, "mark_price": D("60000")}
    too_small = btc.check_order(quantity=D("0.001"), **base)  # 60 USDT < 100
    assert too_small is not None and too_small.reason is RejectReason.BELOW_MIN_NOTIONAL
    assert btc.check_order(quantity=D("0.002"), **base) is None  # 120 USDT
    assert btc.check_order(quantity=D("0.001"), reduce_only=True, **base) is None


def test_the_exchange_never_rounds_quantities_or_prices(rules):
    btc = rules["BTCUSDT"]
    market = {"side": OrderSide.BUY, "order_type": OrderType.MARKET, "mark_price": D("60000")}
    assert btc.check_order(quantity=D("0.0025"), **market).reason is (
        RejectReason.QTY_PRECISION_EXCEEDED
    )
    assert btc.check_order(quantity=D("0"), **market).reason is RejectReason.NON_POSITIVE_QUANTITY
    assert btc.check_order(quantity=D("1000.001"), **market).reason is RejectReason.ABOVE_MAX_QTY
    stop = {
        "side": OrderSide.SELL,
        "order_type": OrderType.STOP_MARKET,
        "mark_price": D("60000"),
        "quantity": D("0.002"),
        "reduce_only": True,
    }
    # pricePrecision 2, tickSize 0.10: two decimals pass the precision check, not the tick
    assert btc.check_order(trigger_price=D("59000.15"), **stop).reason is (
        RejectReason.PRICE_NOT_TICK_MULTIPLE
    )
    assert btc.check_order(trigger_price=D("59000.123"), **stop).reason is (
        RejectReason.PRICE_PRECISION_EXCEEDED
    )
    assert btc.check_order(trigger_price=D("200"), **stop).reason is RejectReason.PRICE_BELOW_MIN
    assert btc.check_order(trigger_price=D("59000.1"), **stop) is None
    assert btc.check_order(**stop).reason is RejectReason.MISSING_PRICE


def test_limit_prices_must_lie_in_the_percent_price_band(rules):
    eth = rules["ETHUSDT"]  # multiplierUp 1.05, multiplierDown 0.95
    common = {"order_type": OrderType.LIMIT, "quantity": D("0.010"), "mark_price": D("3000")}
    assert eth.percent_price_band(D("3000")) == (D("2850.0000"), D("3150.0000"))
    high = eth.check_order(side=OrderSide.BUY, price=D("3150.01"), **common)
    assert high is not None and high.reason is RejectReason.PRICE_OUT_OF_BAND
    assert eth.check_order(side=OrderSide.BUY, price=D("3150.00"), **common) is None
    low = eth.check_order(side=OrderSide.SELL, price=D("2849.99"), **common)
    assert low is not None and low.reason is RejectReason.PRICE_OUT_OF_BAND
    # a SELL above the band or a BUY below it is a resting order, not out of band
    assert eth.check_order(side=OrderSide.SELL, price=D("3200.00"), **common) is None


def test_order_count_limits(rules):
    doge = rules["DOGEUSDT"]  # MAX_NUM_ORDERS 199 recorded, MAX_NUM_ALGO_ORDERS 10
    common = {"side": OrderSide.SELL, "quantity": D("100"), "mark_price": D("0.2")}
    full = doge.check_order(order_type=OrderType.MARKET, open_orders=199, **common)
    assert full is not None and full.reason is RejectReason.TOO_MANY_ORDERS
    algo = doge.check_order(
        order_type=OrderType.STOP_MARKET, trigger_price=D("0.15"), open_algo_orders=10, **common
    )
    assert algo is not None and algo.reason is RejectReason.TOO_MANY_ALGO_ORDERS


def _with(document: dict, symbol: str, mutate) -> tuple[dict, list]:
    info = copy.deepcopy(document["exchangeInfo"])
    brackets = copy.deepcopy(document["leverageBracket"])
    mutate(next(s for s in info["symbols"] if s["symbol"] == symbol),
           next(b for b in brackets if b["symbol"] == symbol))  # fmt: skip
    return info, brackets


def test_a_step_that_is_not_a_power_of_ten(document):
    def step_five(sym, _brackets):
        for f in sym["filters"]:
            if f["filterType"] == "MARKET_LOT_SIZE":
                f["stepSize"], f["minQty"] = "5", "5"

    info, brackets = _with(document, "SOLUSDT", step_five)
    sol = ExchangeRules.from_exchange_info(info, brackets)["SOLUSDT"]
    check = sol.check_order(
        side=OrderSide.BUY, order_type=OrderType.MARKET, quantity=D("12"), mark_price=D("150")
    )
    assert check is not None and check.reason is RejectReason.QTY_NOT_STEP_MULTIPLE
    assert sol.floor_quantity(D("12")) == D("10")


def test_strings_numbers_and_single_symbol_bracket_answers_parse_alike(document):
    as_strings = copy.deepcopy(document["leverageBracket"])
    for entry in as_strings:
        for row in entry["brackets"]:
            for key, value in row.items():
                row[key] = str(value)  # ccxt / freqtrade keep Binance's values as strings
    a = ExchangeRules.from_exchange_info(document["exchangeInfo"], document["leverageBracket"])
    b = ExchangeRules.from_exchange_info(document["exchangeInfo"], as_strings)
    assert a["XRPUSDT"].brackets == b["XRPUSDT"].brackets
    single = next(e for e in document["leverageBracket"] if e["symbol"] == "LTCUSDT")
    only = ExchangeRules.from_exchange_info(document["exchangeInfo"], single)
    assert list(only) == ["LTCUSDT"]


def test_bad_payloads_are_errors_not_gaps(document):
    with pytest.raises(ExchangeRulesError, match="not in leverageBracket"):
        ExchangeRules.from_exchange_info(document["exchangeInfo"], [], symbols=["BTCUSDT"])

    def wrong_cum(_sym, brackets):
        brackets["brackets"][2]["cum"] = D("951")

    with pytest.raises(ExchangeRulesError, match="cum"):
        ExchangeRules.from_exchange_info(*_with(document, "BTCUSDT", wrong_cum))

    def gap(_sym, brackets):
        brackets["brackets"][1]["notionalFloor"] = 60000

    with pytest.raises(ExchangeRulesError, match="floor"):
        ExchangeRules.from_exchange_info(*_with(document, "BTCUSDT", gap))

    def no_min_notional(sym, _brackets):
        sym["filters"] = [f for f in sym["filters"] if f["filterType"] != "MIN_NOTIONAL"]

    with pytest.raises(ExchangeRulesError, match="MIN_NOTIONAL"):
        ExchangeRules.from_exchange_info(*_with(document, "BTCUSDT", no_min_notional))


def test_max_notional_at_leverage_follows_the_brackets(rules):
    btc = rules["BTCUSDT"].brackets
    assert btc.max_notional(125) == D("50000")
    assert btc.max_notional(100) == D("600000")
    assert btc.max_notional(20) == D("100000000")
    assert btc.max_notional(126) == D("0")
    assert btc.max_leverage(D("40000")) == 125
    assert btc.max_leverage(D("5000000")) == 50
