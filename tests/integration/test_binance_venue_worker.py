"""The binance_exchange agent in a real worker on the real broker, its python-binance
talking HTTP to a local replay of Binance (tests/integration/binance_fake.py, 127.0.0.1,
`binance_exchange.rest_url`): orders in, execution.results out, one placement per client
id across a resend and a SIGKILL restart, fills from binance.user-events once each."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from agents.binance_exchange.model import EventSource, UserEventRecord
from agents.paper_exchange.codec import order_to_avro
from agents.paper_exchange.model import OrderAction, VenueOrder
from exchange.model import OrderSide, OrderType
from quantum.app.backtest.run import WorkerProcess
from quantum.app.settings import Settings
from quantum.quiescence import Quiescence, Reader
from quantum.records import to_avro
from quantum.serde import AvroSerde
from tests.integration.binance_fake import FakeBinance
from tests.integration.venue_io import Feed, read_all
from tests.integration.venue_io import settle as wait_settled
from topologies.apply import apply_topology
from topologies.declaration import (
    BINANCE_USER_EVENTS,
    EXECUTION_RESULTS,
    ORDERS,
    PORTFOLIO,
    RISK_WARNINGS,
)

pytestmark = pytest.mark.broker

GROUP = "binance-venue-test"
T0 = 1_767_225_600_000


def order(coid: str, kind: OrderType = OrderType.MARKET, **kw) -> VenueOrder:
    base = VenueOrder(
        client_order_id=coid,
        intent_id=coid.split("-", 1)[1],
        symbol="BTCUSDT",
        side=OrderSide.BUY,
        order_type=kind,
        quantity=Decimal("0.010"),
        price=None,
        trigger_price=None,
        reduce_only=False,
        event_time_ms=T0,
        role="ENTRY",
        leverage=10,
    )
    return replace(base, **kw)


@pytest.mark.parametrize("restart", [False, pytest.param(True, marks=pytest.mark.chaos)])
def test_orders_to_binance_and_back_one_placement_per_client_id(
    settings: Settings, tmp_path: Path, restart: bool
) -> None:
    assert apply_topology(settings).ok
    fake = FakeBinance()
    server, rest_url = fake.serve()
    env = settings.child_env(
        QT_KAFKA__COMMIT_INTERVAL_S="0.01",
        QT_VENUE__KIND="binance",
        QT_BINANCE__API_KEY="qtTESTkey" + "A" * 24,
        QT_BINANCE__API_SECRET="qtTESTsecret" + "B" * 24,
        QT_BINANCE_EXCHANGE__REST_URL=rest_url,
        QT_BINANCE_EXCHANGE__LOOKUP_BACKOFF_MS="10",
        # supervised as in production: a SIGKILLed worker is restarted, and one that
        # stalls with records to read (faust-streaming can lose records fetched while a
        # restarted worker starts, docs/exits.md "Restart") is restarted too
        QT_SUPERVISOR__STALL_TIMEOUT_S="60",  # > start-up + rejoining after a SIGKILL
        QT_SUPERVISOR__CHECK_EVERY_S="1",
        QT_SUPERVISOR__BACKOFF_S="0.2",
        QT_SUPERVISOR__BACKOFF_MAX_S="2",
        QT_SUPERVISOR__HEALTHY_AFTER_S="5",
    )
    log = tmp_path / "worker.log"
    worker = WorkerProcess(("binance_exchange",), GROUP, env, log, supervise=True)
    serde = AvroSerde.from_settings(settings)
    feed = Feed(settings, serde)
    group = f"{settings.kafka.topic_prefix}{GROUP}"
    topics = (settings.topic(ORDERS), settings.topic(BINANCE_USER_EVENTS))
    quiet = Quiescence(settings.kafka.bootstrap, [Reader(group, topics)])

    def settle() -> None:
        feed.flush()
        # after a SIGKILL the group waits out the dead member's session; the supervisor
        # restarts a stalled worker meanwhile: allow for a few rounds of that
        wait_settled(quiet, worker.alive, log, timeout_s=300 if restart else 120)

    def send(o: VenueOrder) -> None:
        feed.send(ORDERS, order_to_avro(o), o.symbol.encode())

    entry = order("E-i1")
    stop = order(
        "S-i1",
        OrderType.STOP_MARKET,
        side=OrderSide.SELL,
        trigger_price=Decimal("93100"),
        reduce_only=True,
        role="STOP_LOSS",
        leverage=None,
    )
    worker.start()
    try:
        send(entry)
        send(replace(entry, event_time_ms=T0 + 1_000))  # execution's resend
        settle()
        fake.fail_next("POST", "/v1/order", "order_4164.json")
        send(order("E-i2", quantity=Decimal("0.001")))
        settle()
        send(stop)
        msg = fake_fill(fake, "E-i1", 901, T0 + 2_000)
        for _ in range(2):  # the stream and a replay of it
            event = UserEventRecord("ORDER_TRADE_UPDATE:x", EventSource.STREAM, msg, T0 + 2_005)
            feed.send(BINANCE_USER_EVENTS, to_avro(event), b"BTCUSDT")
        settle()

        if restart:
            worker.kill()  # SIGKILL; the supervisor restarts it, the table comes back
        send(replace(entry, event_time_ms=T0 + 5_000))  # resent (after the restart)
        send(replace(stop, action=OrderAction.CANCEL, event_time_ms=T0 + 6_000))
        settle()
    finally:
        worker.stop()
        server.shutdown()

    results = read_all(settings, serde, EXECUTION_RESULTS)
    seen = [(r["client_order_id"], r["status"], r["trade_id"]) for r in results]
    assert seen[:3] == [("E-i1", "NEW", None), ("E-i1", "FILLED", None), ("E-i2", "REJECTED", None)]
    assert results[2]["reason"].startswith("BELOW_MIN_NOTIONAL: -4164")
    assert seen.count(("E-i1", "FILLED", "901")) == 1  # the fill once, from the stream
    assert ("S-i1", "NEW", None) in seen and seen[-1] == ("S-i1", "CANCELED", None)
    placed = [p["newClientOrderId"] for p in fake.calls("POST", "/v1/order")]
    assert placed == ["E-i1", "E-i2"]  # one placement per client id, restart or not
    assert [p["clientAlgoId"] for p in fake.calls("POST", "/v1/algoOrder")] == ["S-i1"]
    assert (
        read_all(settings, serde, PORTFOLIO) == []
        and read_all(settings, serde, RISK_WARNINGS) == []
    )


def fake_fill(fake: FakeBinance, coid: str, trade_id: int, at: int) -> str:
    return json.dumps(fake.fill_event(coid, trade_id, at))
