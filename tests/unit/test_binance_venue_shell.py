"""The live venue's shell end to end without a broker: execution -> binance_exchange ->
python-binance's real `Client` -> HTTP answered by `responses` from the reconstructed
fixtures (tests/integration/binance_fake.py) -> execution.results -> execution and
positions, and user-stream events -> fills. Every output is checked against its topic's
schema and the kit's validation (tests/unit/test_venue_shells.py's bus)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import responses

from agents.binance_exchange.agent import VenueCalls, make_processor
from agents.binance_exchange.config import BinanceVenueConfig, VenueKindError, check_venue_kind
from agents.binance_exchange.model import EventSource, UserEventRecord
from agents.execution.agent import ExecutionProcessor
from agents.execution.config import ExecutionConfig
from agents.execution.core import ExecutionCore
from agents.execution.ledger import Ledger
from agents.governor.model import DecisionKind, Halt, Side
from agents.positions.agent import PositionsProcessor
from agents.positions.core import PositionsCore
from agents.positions.liquidation import liquidation_from_rules
from agents.stateful import Out, Record
from exchange.binance.credentials import Credentials
from exchange.binance.rest import BinanceFutures
from quantum.app.settings import Settings
from quantum.records import to_avro
from tests.integration.binance_fake import FakeBinance, fixture
from tests.integration.venue_io import T0, bar, decision, sized_plan
from tests.unit.test_venue_shells import RULES, TICKS, Bus, commands
from topologies.declaration import (
    BINANCE_USER_EVENTS,
    EXECUTION_RESULTS,
    MARKET_TICKS,
    ORDERS,
    PORTFOLIO,
    PORTFOLIO_DECISIONS,
    RISK_WARNINGS,
    SIZED_INTENTS,
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += int(seconds * 1000)

    slept: list[float]


@dataclass
class LiveBus(Bus):
    """The venue side with the Binance agent in the paper exchange's place."""

    def readers(self, topic: str) -> list[Any]:
        return {
            ORDERS: [self.venue],
            BINANCE_USER_EVENTS: [self.venue],
            MARKET_TICKS: [self.positions],
            EXECUTION_RESULTS: [self.execution, self.positions],
            PORTFOLIO_DECISIONS: [self.execution],
            SIZED_INTENTS: [self.execution],
        }.get(topic, [])


def live(config: BinanceVenueConfig | None = None) -> tuple[LiveBus, Clock]:
    clock = Clock()
    clock.slept = []
    creds = Credentials.load({"QT_BINANCE__API_KEY": "k" * 24, "QT_BINANCE__API_SECRET": "s" * 24})
    cfg = config or BinanceVenueConfig()
    calls = VenueCalls(BinanceFutures(creds, clock_ms=clock), cfg, sleep=clock.sleep)
    bus = LiveBus(
        ExecutionProcessor(ExecutionCore(ExecutionConfig(), TICKS), Ledger(), None),
        make_processor(cfg, calls, None),  # type: ignore[arg-type]
        PositionsProcessor(PositionsCore(None, liquidation_from_rules(RULES)), {}, None),
    )
    return bus, clock


def user_event(msg: dict[str, Any]) -> dict[str, Any]:
    record = UserEventRecord(
        f"{msg['e']}:{msg['E']}", EventSource.STREAM, json.dumps(msg), msg["E"]
    )
    return to_avro(record)


def results(outs: list[Out]) -> list[dict[str, Any]]:
    return [o.value for o in outs if o.topic == EXECUTION_RESULTS and o.value]


@pytest.fixture
def binance():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeBinance(rsps)


def grant(bus: LiveBus, intent: str = "i1", n: int = 1, symbol: str = "BTCUSDT") -> list[Out]:
    p, qty = ("95000", "0.010") if symbol == "BTCUSDT" else ("3300", "0.300")
    b0 = bar(symbol, 0, p, p, p, p)
    bus.put(MARKET_TICKS, b0.to_record())
    bus.put(SIZED_INTENTS, sized_plan(intent, symbol, Side.LONG, qty, p, b0.close_time))
    return bus.put(
        PORTFOLIO_DECISIONS, decision(DecisionKind.GRANTED, intent, symbol, b0.close_time, n)
    )


def test_a_grant_is_one_order_its_fill_comes_from_the_stream_and_protection_goes_algo(
    binance: FakeBinance,
) -> None:
    bus, _ = live()
    outs = grant(bus)
    (ack,) = results(outs)
    assert (ack["client_order_id"], ack["status"]) == ("E-i1", "NEW")
    assert [c["newClientOrderId"] for c in binance.calls("POST", "/v1/order")] == ["E-i1"]
    assert binance.calls("POST", "/v1/marginType")[0]["marginType"] == "ISOLATED"
    assert binance.calls("POST", "/v1/leverage")[0]["leverage"] == "10"

    # the fill arrives on the user stream: execution places stop and take-profit (algo API)
    outs = bus.put(BINANCE_USER_EVENTS, user_event(binance.fill_event("E-i1", 901, T0 + 61_000)))
    fills = [r for r in results(outs) if r["trade_id"]]
    assert [(f["client_order_id"], f["status"], f["trade_id"]) for f in fills] == [
        ("E-i1", "FILLED", "901")
    ]
    algos = binance.calls("POST", "/v1/algoOrder")
    assert sorted(a["type"] for a in algos) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
    assert all(a["clientAlgoId"] and a["reduceOnly"] == "true" for a in algos)
    assert all(a["workingType"] == "MARK_PRICE" for a in algos)
    assert binance.calls("POST", "/v1/order") == binance.calls("POST", "/v1/order")[:1]
    position = [o.value for o in bus.log if o.topic == "positions"][-1]
    assert position["status"] == "OPEN" and Decimal(position["quantity"]) == Decimal("0.010")
    assert position["stop_loss"] is not None and position["take_profit"] is not None

    # the same fill again (a reconnect's replay): nothing new reaches positions
    again = bus.put(BINANCE_USER_EVENTS, user_event(binance.fill_event("E-i1", 901, T0 + 61_000)))
    assert [r for r in results(again) if r["trade_id"]] == []
    # the grant redelivered: execution and the venue's table keep it at one order
    grant(bus)
    assert len(binance.calls("POST", "/v1/order")) == 1


def test_a_restart_answers_the_resent_order_by_lookup_not_by_placing_it(
    binance: FakeBinance,
) -> None:
    bus, _ = live()
    grant(bus)
    # the venue's table is lost (a crash before it was written): the resend is looked up
    bus.venue = make_processor(BinanceVenueConfig(), bus.venue.calls, None)
    order = next(o.value for o in bus.log if o.topic == ORDERS)
    outs = bus.venue.on_record(Record(ORDERS, 0, 9, b"BTCUSDT", order, None))
    assert [(r["client_order_id"], r["status"]) for r in results(outs)] == [("E-i1", "FILLED")]
    assert len(binance.calls("POST", "/v1/order")) == 1
    assert binance.calls("GET", "/v1/order")[-1]["origClientOrderId"] == "E-i1"


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("order_4164.json", "BELOW_MIN_NOTIONAL: -4164"),
        ("order_1111.json", "PRECISION_EXCEEDED: -1111"),
        ("order_4014.json", "PRICE_NOT_TICK_MULTIPLE: -4014"),
        ("order_4023.json", "QTY_NOT_STEP_MULTIPLE: -4023"),
        ("order_2019.json", "INSUFFICIENT_MARGIN: -2019"),
        ("order_2022.json", "REDUCE_ONLY_REJECTED: -2022"),
        ("order_4120.json", "STOP_ORDER_SWITCH_ALGO: -4120"),
        ("order_4116.json", "DUPLICATE_CLIENT_ORDER_ID: -4116"),
    ],
)
def test_a_refusal_is_a_rejected_report_and_execution_releases_the_slot(
    binance: FakeBinance, fixture: str, reason: str
) -> None:
    bus, _ = live()
    binance.fail_next("POST", "/v1/order", fixture)
    outs = grant(bus)
    (report,) = results(outs)
    assert report["status"] == "REJECTED" and report["reason"].startswith(reason)
    if not reason.startswith("DUPLICATE"):  # a duplicate is a resend's answer: ignored
        releases = [c for c in commands(outs) if type(c).__name__ == "SlotRelease"]
        assert [(r.intent_id, r.reason.value) for r in releases] == [("i1", "ORDER_REJECTED")]
    assert len(binance.calls("POST", "/v1/order")) == 1  # never resent unchanged


def test_429_waits_the_retry_after_then_sends_once(binance: FakeBinance) -> None:
    bus, clock = live()
    binance.fail_next("POST", "/v1/order", "http_429.json")
    outs = grant(bus)
    assert [r["status"] for r in results(outs)] == ["NEW"]
    assert clock.slept == [12.0]  # Retry-After: 12 s, and the governor held it back that long
    assert len(binance.calls("POST", "/v1/order")) == 2


def test_418_halts_the_governor_alerts_and_refuses_every_later_order(binance: FakeBinance) -> None:
    bus, _ = live()
    binance.fail_next("POST", "/v1/order", "http_418.json")
    outs = grant(bus)
    (report,) = results(outs)
    assert report["status"] == "REJECTED" and report["reason"].startswith("VENUE_HALTED")
    halts = [c for c in commands(outs) if isinstance(c, Halt)]
    assert len(halts) == 1 and "418" in halts[0].reason
    alerts = [o.value for o in outs if o.topic == RISK_WARNINGS]
    assert [a["kind"] for a in alerts] == ["VENUE_HALT"]
    before = len(binance.sent)
    outs = grant(bus, "i2", 2, "ETHUSDT")
    assert results(outs)[0]["reason"].startswith("VENUE_HALTED") and len(binance.sent) == before


def test_503_is_looked_up_by_client_id_before_any_resend(binance: FakeBinance) -> None:
    bus, _ = live()

    # the 503 came after Binance took the order: the lookup before sending finds nothing,
    # the placement answers 503, the lookup after it finds the order
    binance.fail_next("POST", "/v1/order", "http_503.json")
    taken = {**fixture("query_order_filled.json")["body"], "clientOrderId": "E-i1"}

    def take(method: str, path: str) -> None:
        if (method, path) == ("POST", "/v1/order"):
            binance.orders.setdefault("E-i1", taken)

    binance.on_request = take
    outs = grant(bus)
    # the lookup's FILLED (a status, no fill in it) lets execution place the protection
    first = results(outs)[0]
    assert (first["client_order_id"], first["status"]) == ("E-i1", "FILLED")
    assert first["last_filled_quantity"] == "0"
    assert len(binance.calls("POST", "/v1/order")) == 1
    assert [c["origClientOrderId"] for c in binance.calls("GET", "/v1/order")] == ["E-i1"] * 2


def test_the_venue_kind_chooses_one_venue_and_paper_is_the_default() -> None:
    settings = Settings()
    assert settings.venue.kind == "paper"
    check_venue_kind(settings, "paper")
    with pytest.raises(VenueKindError, match="QT_VENUE__KIND=binance"):
        check_venue_kind(settings, "binance")
    live_settings = Settings(venue={"kind": "binance"})
    check_venue_kind(live_settings, "binance")
    with pytest.raises(VenueKindError):
        check_venue_kind(live_settings, "paper")
    assert Settings().binance_exchange.mainnet is False  # the testnet unless asked


def test_halt_records_are_governor_commands_on_the_portfolio_topic(binance: FakeBinance) -> None:
    bus, _ = live()
    binance.fail_next("POST", "/v1/order", "http_418.json")
    outs = grant(bus)
    portfolio = [o for o in outs if o.topic == PORTFOLIO]
    assert any(o.key == b"portfolio" for o in portfolio)


def test_no_key_or_secret_in_any_record_or_log_line(binance: FakeBinance, caplog) -> None:
    key, secret = "qtLEAKkeyZZZZ0123456789abcdef", "qtLEAKsecretYYYY9876543210fedc"
    creds = Credentials.load({"QT_BINANCE__API_KEY": key, "QT_BINANCE__API_SECRET": secret})
    cfg = BinanceVenueConfig()
    clock = Clock()
    clock.slept = []
    calls = VenueCalls(BinanceFutures(creds, clock_ms=clock), cfg, sleep=clock.sleep)
    bus = LiveBus(
        ExecutionProcessor(ExecutionCore(ExecutionConfig(), TICKS), Ledger(), None),
        make_processor(cfg, calls, None),  # type: ignore[arg-type]
        PositionsProcessor(PositionsCore(None, liquidation_from_rules(RULES)), {}, None),
    )
    caplog.set_level("DEBUG")
    for fixture_name in ("http_503.json", "order_4164.json", "http_429.json", "http_418.json"):
        binance.fail_next("POST", "/v1/order", fixture_name)
    outs = grant(bus) + grant(bus, "i2", 2, "ETHUSDT")
    text = json.dumps([o.value for o in bus.log + outs], default=str) + caplog.text
    text += repr(bus.venue.calls.venue) + json.dumps(bus.tables, default=str)
    assert key not in text and secret not in text
    assert any(sent for sent in binance.sent)  # the calls did happen
