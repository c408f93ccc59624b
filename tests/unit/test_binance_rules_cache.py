"""Rules cache: refresh interval and maximum age; brackets usable by the liquidation maths."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from exchange.binance.rules_cache import HOUR_MS, RulesCache, StaleRules
from exchange.margin import liquidation_price, maintenance_margin
from exchange.model import OrderSide, OrderType, PositionSide
from exchange.rules import BUNDLED_RULES, ExchangeRulesError, RejectReason, parse_leverage_brackets

RECORDED = json.loads(BUNDLED_RULES.read_text())
LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]


def test_refresh_and_max_age() -> None:
    cache = RulesCache(refresh_ms=HOUR_MS, max_age_ms=3 * HOUR_MS)
    assert cache.due(0)
    with pytest.raises(StaleRules):
        cache.get(0)
    info = RECORDED["exchangeInfo"] | {"rateLimits": LIMITS}
    snap = cache.update(info, RECORDED["leverageBracket"], 1_000)
    assert {lim.limit for lim in snap.rate_limits} == {2400, 300}
    assert not cache.due(1_000 + HOUR_MS - 1) and cache.due(1_000 + HOUR_MS)
    cache.failed(1_000 + HOUR_MS)  # the refresh failed: keep the rules, retry in an hour
    assert cache.get(1_000 + 3 * HOUR_MS) is snap
    with pytest.raises(StaleRules):
        cache.get(1_000 + 3 * HOUR_MS + 1)


def test_a_bad_payload_keeps_the_old_snapshot() -> None:
    cache = RulesCache()
    snap = cache.update(RECORDED["exchangeInfo"], RECORDED["leverageBracket"], 0)
    with pytest.raises(ExchangeRulesError):
        cache.update(RECORDED["exchangeInfo"], [], 10, symbols=["BTCUSDT"])
    assert cache.get(10) is snap


def test_brackets_feed_the_liquidation_maths() -> None:
    tables = parse_leverage_brackets(RECORDED["leverageBracket"])
    btc = tables["BTCUSDT"]
    # Binance's definition: MM = notional * MMR - cum, continuous across a bracket edge
    edge = btc.brackets[1].notional_floor
    below = maintenance_margin(edge, btc)
    above = maintenance_margin(edge + Decimal("0.01"), btc)
    assert abs(above - below) < Decimal("0.01")
    lp = liquidation_price(
        PositionSide.LONG, Decimal("0.010"), Decimal("95000"), Decimal("95"), btc
    )
    assert lp is not None and Decimal("80000") < lp < Decimal("95000")


def test_filters_named_in_the_issue() -> None:
    rules = RulesCache().update(RECORDED["exchangeInfo"], RECORDED["leverageBracket"], 0).rules
    eth = rules["ETHUSDT"]
    mark = Decimal("3000")
    # MIN_NOTIONAL at the mark price, reduce-only exempt
    small = eth.market_lot_size.min_qty
    v = eth.check_order(
        side=OrderSide.BUY, order_type=OrderType.MARKET, quantity=small, mark_price=mark
    )
    assert v is not None and v.reason is RejectReason.BELOW_MIN_NOTIONAL
    assert (
        eth.check_order(
            side=OrderSide.SELL,
            order_type=OrderType.MARKET,
            quantity=small,
            mark_price=mark,
            reduce_only=True,
        )
        is None
    )
    # PERCENT_PRICE: a LIMIT buy far above the mark
    assert eth.percent_price is not None
    high = eth.round_price(mark * eth.percent_price.multiplier_up * 2)
    v = eth.check_order(
        side=OrderSide.BUY,
        order_type=OrderType.LIMIT,
        quantity=Decimal(1),
        mark_price=mark,
        price=high,
    )
    assert v is not None and v.reason is RejectReason.PRICE_OUT_OF_BAND
