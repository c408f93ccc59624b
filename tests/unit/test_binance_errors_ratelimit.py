"""Binance answers -> typed outcomes; the rate-limit governor never exceeds a window."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.binance.errors import (
    Accepted,
    Halt,
    Rejected,
    RetryAfter,
    TransportFailure,
    Unknown,
    classify_response,
    classify_transport,
)
from exchange.binance.ratelimit import (
    DEFAULT_LIMITS,
    LimitKind,
    RateGovernor,
    RateLimit,
    limits_from_exchange_info,
    rate_limit,
)
from exchange.rules import RejectReason


def body(code: int, msg: str) -> str:
    return json.dumps({"code": code, "msg": msg})


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (-1111, "PRECISION_EXCEEDED"),
        (-4014, RejectReason.PRICE_NOT_TICK_MULTIPLE),
        (-4023, RejectReason.QTY_NOT_STEP_MULTIPLE),
        (-4164, RejectReason.BELOW_MIN_NOTIONAL),
        (-2019, RejectReason.INSUFFICIENT_MARGIN),
        (-2022, RejectReason.REDUCE_ONLY_REJECTED),
        (-4116, RejectReason.DUPLICATE_CLIENT_ORDER_ID),
        (-4120, "STOP_ORDER_SWITCH_ALGO"),
        (-2011, RejectReason.UNKNOWN_ORDER),
        (-9999, "BINANCE_9999"),
    ],
)
def test_4xx_codes_are_rejections(code: int, reason: str) -> None:
    outcome = classify_response(400, body(code, "some message"), {})
    assert outcome == Rejected(code, str(reason), "some message")


def test_429_waits_for_retry_after_seconds() -> None:
    outcome = classify_response(429, body(-1003, "Too many requests"), {"Retry-After": "7"})
    assert outcome == RetryAfter(7_000, -1003, "Too many requests")
    assert isinstance(classify_response(429, "", {}), RetryAfter)


def test_418_halts() -> None:
    outcome = classify_response(418, body(-1003, "IP banned until 1700000000000"), {})
    assert isinstance(outcome, Halt) and outcome.status == 418
    assert outcome.retry_after_ms is not None and outcome.retry_after_ms > 0


def test_waf_block_halts() -> None:
    assert isinstance(classify_response(403, "<html>Forbidden</html>", {}), Halt)


def test_bad_key_halts() -> None:
    assert isinstance(classify_response(401, body(-2015, "Invalid API-key"), {}), Halt)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_unknown(status: int) -> None:
    assert isinstance(classify_response(status, "<html>gateway</html>", {}), Unknown)


@pytest.mark.parametrize("code", [-1006, -1007, -1008])
def test_execution_status_unknown_codes(code: int) -> None:
    assert isinstance(classify_response(400, body(code, "Timeout waiting"), {}), Unknown)


def test_clock_skew_retries() -> None:
    outcome = classify_response(400, body(-1021, "Timestamp outside recvWindow"), {})
    assert isinstance(outcome, RetryAfter)


def test_transport_failures() -> None:
    assert isinstance(classify_transport(TransportFailure.TIMEOUT), Unknown)
    assert isinstance(classify_transport(TransportFailure.CONNECTION_RESET), Unknown)
    # never connected: the request was not sent, so it is safe to send again later
    assert isinstance(classify_transport(TransportFailure.CONNECT_FAILED), RetryAfter)


def test_2xx_is_accepted() -> None:
    assert classify_response(200, '{"orderId": 1}', {}) == Accepted({"orderId": 1})


# --- governor ------------------------------------------------------------------------------


def test_limits_from_exchange_info() -> None:
    info = {
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": 2400},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ]
    }  # fmt: skip
    limits = limits_from_exchange_info(info)
    assert {(lim.header, lim.window_ms, lim.limit) for lim in limits} == {
        ("x-mbx-used-weight-1m", 60_000, 2400),
        ("x-mbx-order-count-1m", 60_000, 1200),
        ("x-mbx-order-count-10s", 10_000, 300),
    }
    assert set(limits) == set(DEFAULT_LIMITS)


def test_orders_wait_for_the_ten_second_window() -> None:
    gov = RateGovernor()
    for i in range(300):
        assert gov.may_send(1_000 + i, weight=0, orders=1)
        gov.record(1_000 + i, weight=0, orders=1)
    wait = gov.wait_ms(1_300, weight=0, orders=1)
    assert wait == 1_000 + 10_000 - 1_300  # the first order leaves the window
    assert gov.may_send(1_300 + wait, weight=0, orders=1)


def test_headers_make_the_governor_more_careful() -> None:
    gov = RateGovernor()
    gov.observe(5_000, {"X-MBX-USED-WEIGHT-1M": "2399", "X-MBX-ORDER-COUNT-10S": "3"})
    assert gov.may_send(5_000, weight=1)
    assert not gov.may_send(5_000, weight=2)
    assert gov.used(5_000)["x-mbx-order-count-10s"] == 3
    # a lower report never frees budget the log holds
    gov.observe(5_001, {"X-MBX-USED-WEIGHT-1M": "1"})
    assert not gov.may_send(5_001, weight=2)


def test_block_until() -> None:
    gov = RateGovernor()
    gov.block_until(9_000)
    assert gov.wait_ms(1_000, weight=1) == 8_000
    assert gov.may_send(9_000, weight=1)


SMALL = (
    RateLimit(LimitKind.REQUEST_WEIGHT, 1_000, 20, "x-mbx-used-weight-1s"),
    rate_limit(LimitKind.ORDERS, "SECOND", 1, 5),
    RateLimit(LimitKind.ORDERS, 3_000, 9, "x-mbx-order-count-3s"),
)

steps = st.lists(
    st.tuples(
        st.integers(0, 400),  # ms since the previous attempt
        st.integers(0, 6),  # weight
        st.integers(0, 3),  # orders
        st.one_of(st.none(), st.integers(0, 25)),  # a reported weight count, sometimes
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_never_exceeds_any_window(attempts: list[tuple[int, int, int, int | None]]) -> None:
    gov = RateGovernor(SMALL)
    now = 0
    sent: list[tuple[int, int, int]] = []
    for gap, weight, orders, report in attempts:
        now += gap
        wait = gov.wait_ms(now, weight=weight, orders=orders)
        if wait == 0:
            gov.record(now, weight=weight, orders=orders)
            sent.append((now, weight, orders))
        else:
            # liveness: waiting what it says is enough (nothing else sent meanwhile)
            assert gov.may_send(now + wait, weight=weight, orders=orders)
            now += wait
            gov.record(now, weight=weight, orders=orders)
            sent.append((now, weight, orders))
        if report is not None:
            gov.observe(now, {"X-MBX-USED-WEIGHT-1S": str(report)})
            # right after a report of n, at most limit - n more weight may go
            if 0 < report < SMALL[0].limit:
                assert not gov.may_send(now, weight=SMALL[0].limit - report + 1)
    for limit in SMALL:
        index = 1 if limit.kind is LimitKind.REQUEST_WEIGHT else 2
        for start, *_ in sent:
            # every window (start - W, start]: the sends in it stay within the limit
            units = sum(s[index] for s in sent if start - limit.window_ms < s[0] <= start)
            assert units <= limit.limit, (limit, start, units)


def test_time_must_not_go_backwards() -> None:
    gov = RateGovernor()
    gov.record(10, weight=1)
    with pytest.raises(ValueError):
        gov.wait_ms(5, weight=1)
