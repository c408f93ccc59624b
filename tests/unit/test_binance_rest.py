"""The REST adapter against replayed Binance answers: python-binance's real code path runs,
only the HTTP layer is the `responses` library (fixtures: tests/fixtures/binance/rest)."""

from __future__ import annotations

import json
import logging
import os
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests
import responses

from exchange.binance.credentials import Credentials, CredentialsError, Secret
from exchange.binance.errors import Halt, Rejected, RetryAfter, Unknown
from exchange.binance.rest import (
    BinanceFutures,
    MarginType,
    ProtectiveKind,
    VenueError,
)
from exchange.rules import BUNDLED_RULES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "rest"
TESTNET = "https://testnet.binancefuture.com/fapi"
MAINNET = "https://fapi.binance.com/fapi"
KEY = "qtTESTkeyAAAAbbbbCCCCddddEEEEffff0123456789"
SECRET = "qtTESTsecretZZZZyyyyXXXXwwwwVVVVuuuu98765"


class Clock:
    def __init__(self, now: int = 1_767_225_600_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def creds() -> Credentials:
    return Credentials.load({"QT_BINANCE__API_KEY": KEY, "QT_BINANCE__API_SECRET": SECRET})


def add(rsps: responses.RequestsMock, method: str, path: str, fixture: str, base=TESTNET):
    doc = json.loads((FIXTURES / fixture).read_text())
    rsps.add(
        method,
        f"{base}{path}",
        json=doc["body"],
        status=doc["status"],
        headers={k: v for k, v in doc["headers"].items() if k != "Content-Type"},
    )


def sent(call) -> dict[str, str]:
    """The parameters of a replayed request (query string or form body)."""
    raw = call.request.body or call.request.url.partition("?")[2]
    if isinstance(raw, bytes):
        raw = raw.decode()
    return {k: v[0] for k, v in parse_qs(raw).items()}


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def venue() -> BinanceFutures:
    return BinanceFutures(creds(), clock_ms=Clock())


def test_leverage_and_margin_type(rsps, venue) -> None:
    add(rsps, "POST", "/v1/leverage", "leverage_ok.json")
    add(rsps, "POST", "/v1/marginType", "margin_type_ok.json")
    add(rsps, "POST", "/v1/marginType", "margin_type_4046.json")
    assert venue.set_leverage("BTCUSDT", 10) == (10, Decimal("40000000"))
    assert venue.set_margin_type("BTCUSDT", MarginType.ISOLATED) is True
    assert venue.set_margin_type("BTCUSDT", MarginType.ISOLATED) is False  # already isolated
    assert sent(rsps.calls[0]).items() >= {"symbol": "BTCUSDT", "leverage": "10"}.items()
    assert sent(rsps.calls[1])["marginType"] == "ISOLATED"
    assert "signature" in sent(rsps.calls[1])


def test_market_entry_carries_our_client_id_and_feeds_the_governor(rsps, venue) -> None:
    add(rsps, "POST", "/v1/order", "order_market_filled.json")
    order = venue.place_market("BTCUSDT", "BUY", Decimal("0.010"), "qt-e-7f3a9c2d41b8-0")
    params = sent(rsps.calls[0])
    assert params["newClientOrderId"] == "qt-e-7f3a9c2d41b8-0"
    assert params["type"] == "MARKET" and params["quantity"] == "0.010"
    assert params["newOrderRespType"] == "RESULT"
    assert order.status == "FILLED" and order.executed_quantity == Decimal("0.010")
    assert order.average_price == Decimal("95000.16")
    used = venue.governor.used(Clock()())
    assert used["x-mbx-used-weight-1m"] == 4 and used["x-mbx-order-count-10s"] == 1


@pytest.mark.parametrize("bad", ["", "x" * 37, "has space", "émoji", "semi;colon"])
def test_bad_client_ids_are_refused_before_sending(rsps, venue, bad: str) -> None:
    with pytest.raises(ValueError):
        venue.place_market("BTCUSDT", "BUY", Decimal("0.010"), bad)
    assert len(rsps.calls) == 0


@pytest.mark.parametrize(
    ("fixture", "code"),
    [
        ("order_1111.json", -1111),
        ("order_4014.json", -4014),
        ("order_4023.json", -4023),
        ("order_4164.json", -4164),
        ("order_2019.json", -2019),
        ("order_2022.json", -2022),
        ("order_4116.json", -4116),
        ("order_4120.json", -4120),
    ],
)
def test_rejections(rsps, venue, fixture: str, code: int) -> None:
    add(rsps, "POST", "/v1/order", fixture)
    with pytest.raises(VenueError) as caught:
        venue.place_market("BTCUSDT", "BUY", Decimal("0.010"), "qt-e-1")
    assert isinstance(caught.value.outcome, Rejected) and caught.value.outcome.code == code
    assert venue.halted is None
    # the slot is free: the governor lets the next order go at once
    assert venue.governor.may_send(Clock()(), weight=0, orders=1)


def test_429_backs_off(rsps, venue) -> None:
    add(rsps, "POST", "/v1/order", "http_429.json")
    with pytest.raises(VenueError) as caught:
        venue.place_market("BTCUSDT", "BUY", Decimal("0.010"), "qt-e-1")
    assert caught.value.outcome == RetryAfter(12_000, -1003, caught.value.outcome.message)
    # nothing is sent until the Retry-After has passed
    with pytest.raises(VenueError) as held:
        venue.positions()
    assert isinstance(held.value.outcome, RetryAfter) and len(rsps.calls) == 1


def test_418_halts_trading(rsps, venue) -> None:
    add(rsps, "POST", "/v1/order", "http_418.json")
    with pytest.raises(VenueError) as caught:
        venue.place_market("BTCUSDT", "BUY", Decimal("0.010"), "qt-e-1")
    assert isinstance(caught.value.outcome, Halt) and venue.halted is not None
    with pytest.raises(VenueError) as again:
        venue.open_orders("BTCUSDT")
    assert isinstance(again.value.outcome, Halt) and len(rsps.calls) == 1


def test_clock_skew_is_retry_after(rsps, venue) -> None:
    add(rsps, "GET", "/v1/openOrders", "timestamp_1021.json")
    with pytest.raises(VenueError) as caught:
        venue.open_orders("BTCUSDT")
    assert isinstance(caught.value.outcome, RetryAfter)


def test_5xx_is_unknown_and_resolved_by_lookup(rsps, venue) -> None:
    add(rsps, "POST", "/v1/order", "http_503.json")
    add(rsps, "GET", "/v1/order", "query_order_filled.json")
    with pytest.raises(VenueError) as caught:
        venue.place_market("BTCUSDT", "BUY", Decimal("0.010"), "qt-e-7f3a9c2d41b8-0")
    assert isinstance(caught.value.outcome, Unknown)
    found = venue.query_order("BTCUSDT", "qt-e-7f3a9c2d41b8-0")
    assert found is not None and found.status == "FILLED"  # it did execute: do not resend
    assert sent(rsps.calls[1])["origClientOrderId"] == "qt-e-7f3a9c2d41b8-0"


def test_timeout_is_unknown_and_a_missing_order_may_be_resent(rsps, venue) -> None:
    rsps.add("POST", f"{TESTNET}/v1/order", body=requests.exceptions.ReadTimeout("read timed out"))
    add(rsps, "GET", "/v1/order", "query_order_2013.json")
    with pytest.raises(VenueError) as caught:
        venue.place_market("BTCUSDT", "BUY", Decimal("0.010"), "qt-e-2")
    assert isinstance(caught.value.outcome, Unknown)
    assert venue.query_order("BTCUSDT", "qt-e-2") is None  # never reached the engine


def test_connect_timeout_was_never_sent(rsps, venue) -> None:
    rsps.add("GET", f"{TESTNET}/v3/positionRisk", body=requests.exceptions.ConnectTimeout())
    with pytest.raises(VenueError) as caught:
        venue.positions()
    assert isinstance(caught.value.outcome, RetryAfter)


def test_unknown_stop_is_resolved_by_its_client_algo_id(rsps, venue) -> None:
    rsps.add("POST", f"{TESTNET}/v1/algoOrder", body=requests.exceptions.ReadTimeout())
    add(rsps, "GET", "/v1/algoOrder", "algo_order_new.json")
    with pytest.raises(VenueError) as caught:
        venue.place_protective(
            "BTCUSDT",
            "SELL",
            ProtectiveKind.STOP_MARKET,
            Decimal("93100.00"),
            Decimal("0.010"),
            "qt-s-7f3a9c2d41b8-0",
        )
    assert isinstance(caught.value.outcome, Unknown)
    found = venue.query_algo("qt-s-7f3a9c2d41b8-0")
    assert found is not None and found.status == "NEW"  # it is in place: do not resend
    assert sent(rsps.calls[1])["clientAlgoId"] == "qt-s-7f3a9c2d41b8-0"


def test_protective_stop_goes_through_the_algo_api_with_our_id(rsps, venue) -> None:
    add(rsps, "POST", "/v1/algoOrder", "algo_order_new.json")
    stop = venue.place_protective(
        "BTCUSDT",
        "SELL",
        ProtectiveKind.STOP_MARKET,
        Decimal("93100.00"),
        Decimal("0.010"),
        "qt-s-7f3a9c2d41b8-0",
    )
    params = sent(rsps.calls[0])
    assert params["clientAlgoId"] == "qt-s-7f3a9c2d41b8-0"
    assert params["algoType"] == "CONDITIONAL" and params["type"] == "STOP_MARKET"
    assert params["triggerPrice"] == "93100.00" and params["reduceOnly"] == "true"
    assert "newClientOrderId" not in params and "stopPrice" not in params
    assert stop.algo_id == 2148719 and stop.status == "NEW"


def test_moving_a_stop_places_the_new_one_before_canceling_the_old(rsps, venue) -> None:
    add(rsps, "POST", "/v1/algoOrder", "algo_order_moved.json")
    add(rsps, "DELETE", "/v1/algoOrder", "algo_cancel_ok.json")
    new, canceled = venue.replace_protective(
        "qt-s-7f3a9c2d41b8-0",
        "BTCUSDT",
        "SELL",
        ProtectiveKind.STOP_MARKET,
        Decimal("95000.20"),
        Decimal("0.010"),
        "qt-s-7f3a9c2d41b8-1",
    )
    assert canceled and new.trigger_price == Decimal("95000.20")
    assert [c.request.method for c in rsps.calls] == ["POST", "DELETE"]
    assert sent(rsps.calls[1])["clientAlgoId"] == "qt-s-7f3a9c2d41b8-0"


def test_moving_a_stop_that_already_fired(rsps, venue) -> None:
    add(rsps, "POST", "/v1/algoOrder", "algo_order_moved.json")
    add(rsps, "DELETE", "/v1/algoOrder", "algo_cancel_2011.json")
    _, canceled = venue.replace_protective(
        "qt-s-7f3a9c2d41b8-0",
        "BTCUSDT",
        "SELL",
        ProtectiveKind.STOP_MARKET,
        Decimal("95000.20"),
        Decimal("0.010"),
        "qt-s-7f3a9c2d41b8-1",
    )
    assert canceled is False


def test_open_orders_algo_orders_and_positions(rsps, venue) -> None:
    add(rsps, "GET", "/v1/openOrders", "open_orders_empty.json")
    add(rsps, "GET", "/v1/openAlgoOrders", "open_algo_orders.json")
    add(rsps, "GET", "/v3/positionRisk", "position_risk_v3.json")
    assert venue.open_orders("BTCUSDT") == []
    (algo,) = venue.open_algo_orders("BTCUSDT")
    assert algo.client_algo_id == "qt-s-7f3a9c2d41b8-0"
    (position,) = venue.positions()
    assert position.amount == Decimal("0.010") and position.entry_price == Decimal("95000.16")
    assert position.liquidation_price == Decimal("86020.54519006")


def test_exchange_rules_and_rate_limits(rsps, venue) -> None:
    recorded = json.loads(BUNDLED_RULES.read_text())
    limits = json.loads((FIXTURES / "rate_limits.json").read_text())["body"]
    rsps.add("GET", f"{TESTNET}/v1/exchangeInfo", json=recorded["exchangeInfo"] | limits)
    rsps.add("GET", f"{TESTNET}/v1/leverageBracket", json=recorded["leverageBracket"])
    rules, info = venue.exchange_rules(["BTCUSDT", "ETHUSDT"])
    assert set(rules) == {"BTCUSDT", "ETHUSDT"}
    assert rules["BTCUSDT"].market_lot_size.step > 0 and info["rateLimits"]


def test_mainnet_only_when_asked(rsps) -> None:
    add(rsps, "GET", "/v1/openOrders", "open_orders_empty.json", base=MAINNET)
    live = BinanceFutures(creds(), mainnet=True, clock_ms=Clock())
    assert live.open_orders("BTCUSDT") == [] and "mainnet" in repr(live)
    assert "testnet" in repr(BinanceFutures(creds(), clock_ms=Clock()))


# --- secrets ----------------------------------------------------------------------------------


def test_keys_never_leak(rsps, venue, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    add(rsps, "POST", "/v1/order", "order_2019.json")
    add(rsps, "POST", "/v1/order", "http_503.json")
    rsps.add("POST", f"{TESTNET}/v1/order", body=requests.exceptions.ReadTimeout(KEY))
    failures = []
    for _ in range(3):
        try:
            venue.place_market("BTCUSDT", "BUY", Decimal("0.010"), "qt-e-1")
        except VenueError as exc:
            failures.append(exc)
    assert len(failures) == 3
    texts = [repr(venue), repr(creds()), str(creds().api_key), caplog.text]
    for exc in failures:
        assert exc.__cause__ is None and exc.__context__ is None  # no chained request
        texts += [str(exc), repr(exc), repr(exc.outcome)]
    for text in texts:
        assert KEY not in text and SECRET not in text
    # the key did go where it must: the request header
    assert rsps.calls[0].request.headers["X-MBX-APIKEY"] == KEY


def test_credentials_from_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "binance.env"
    path.write_text(
        f"# testnet\nQT_BINANCE__API_KEY={KEY}\nexport QT_BINANCE__API_SECRET='{SECRET}'\n"
    )
    os.chmod(path, 0o644)
    with pytest.raises(CredentialsError) as caught:
        Credentials.load({}, path)
    assert KEY not in str(caught.value)
    os.chmod(path, 0o600)
    loaded = Credentials.load({"QT_BINANCE__SECRETS_FILE": str(path)})
    assert loaded.api_key.reveal() == KEY and loaded.api_secret.reveal() == SECRET
    assert KEY not in repr(loaded)


def test_missing_or_half_credentials() -> None:
    with pytest.raises(CredentialsError):
        Credentials.load({})
    with pytest.raises(CredentialsError) as caught:
        Credentials.load({"QT_BINANCE__API_KEY": KEY})
    assert KEY not in str(caught.value)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(Secret(KEY))


# --- user stream support ----------------------------------------------------------------------


def test_listen_key_create_keepalive_expired(rsps, venue) -> None:
    add(rsps, "POST", "/v1/listenKey", "listen_key_created.json")
    add(rsps, "PUT", "/v1/listenKey", "listen_key_keepalive_ok.json")
    add(rsps, "PUT", "/v1/listenKey", "listen_key_1125.json")
    key = venue.create_listen_key()
    assert key.startswith("pqia91")
    assert venue.keepalive_listen_key(key) is True
    assert venue.keepalive_listen_key(key) is False  # expired: make a new one


def test_reconnect_mid_fill_resyncs_from_rest_without_doubling(rsps, venue) -> None:
    """The socket died after the partial fill; userTrades brings both fills, one is new."""
    from exchange.binance.userstream import FillDeduplicator, parse_event

    stream = json.loads((FIXTURES.parent / "userstream" / "fill_sequence.json").read_text())
    dedup = FillDeduplicator()
    before = [dedup.accept(parse_event(e)) for e in stream[:2]]
    assert [f.quantity for f in before if f] == [Decimal("0.004")]
    add(rsps, "GET", "/v1/userTrades", "user_trades.json")
    oid = 4611875134427365377
    trades = venue.user_trades("BTCUSDT", 1767225600000, client_ids={oid: "qt-e-7f3a9c2d41b8-0"})
    new = [f for f in (dedup.accept_fill(t) for t in trades) if f is not None]
    assert [(f.trade_id, f.quantity, f.price) for f in new] == [
        (6251138923, Decimal("0.006"), Decimal("95000.20"))
    ]
    assert new[0].client_order_id == "qt-e-7f3a9c2d41b8-0"
    # and when the stream's own copy arrives late, it is dropped too
    assert dedup.accept(parse_event(stream[3])) is None
