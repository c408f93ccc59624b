"""A reconciliation mismatch halts new entries, on the real broker: the governor's
transactional shell runs for real, `reconcile_loop` compares our positions topic with a
venue replayed through python-binance (`responses`) whose book differs, confirms the
mismatch on its second look and sends `Halt`; a SlotRequest granted before the halt is
DENIED (HALTED) after it, and the RECONCILE_MISMATCH alert is on risk.warnings."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import responses

from agents.binance_exchange.reconcile_shell import reconcile_loop, reconcile_once
from agents.binance_exchange.sink import KafkaSink
from agents.governor.io import CommandSender, end_offset, read_decisions
from agents.governor.model import DecisionKind, DenyReason, Side, SlotRequest
from agents.governor.shell import GovernorShell
from exchange.binance.credentials import Credentials
from exchange.binance.rest import BinanceFutures
from quantum.app.settings import Settings
from quantum.kafka_util import read_range
from quantum.serde import AvroSerde
from tests.integration.binance_fake import TESTNET, fixture
from tests.integration.test_binance_reconcile_cli import position
from tests.integration.venue_io import Feed
from topologies.apply import apply_topology
from topologies.declaration import POSITIONS, RISK_WARNINGS, TOPOLOGY

pytestmark = pytest.mark.broker

T0 = 1_767_225_600_000


def _request(intent: str, symbol: str, t: int) -> SlotRequest:
    return SlotRequest(intent, symbol, Side.LONG, Decimal("250.5"), 0.5, t)


def _pump(shell: GovernorShell, settings: Settings, timeout_s: float = 60.0) -> None:
    """Run governor batches until every command in the portfolio topic is decided."""
    end = end_offset(settings)
    deadline = time.monotonic() + timeout_s
    while shell._next_offset < end:
        assert time.monotonic() < deadline, f"stuck at {shell._next_offset} of {end}"
        msgs = shell.consumer.consume(num_messages=50, timeout=0.5)
        if msgs:
            shell.process_batch(msgs)


class CountingSink(KafkaSink):
    """The production sink, counting the halts it delivered (the loop's stop condition)."""

    halts = 0

    def send(self, logical, value, key, *, schema=None) -> None:
        super().send(logical, value, key, schema=schema)
        if logical == RISK_WARNINGS:
            self.halts += 1


@pytest.fixture
def gov_settings(settings: Settings) -> Settings:
    assert apply_topology(settings).ok
    config = settings.governor.model_copy(
        update={"max_open_positions": 4, "active_slots_base": 4, "active_slots_trend_strong": 4}
    )
    shell = settings.governor_shell.model_copy(
        update={"transactional_id": f"{settings.kafka.topic_prefix}gov", "snapshot_every": 4}
    )
    return settings.model_copy(update={"governor": config, "governor_shell": shell})


def test_a_reconcile_mismatch_halts_new_entries(gov_settings: Settings, monkeypatch) -> None:
    s = gov_settings
    serde = AvroSerde.from_settings(s)
    # Ours: 0.020 BTC long; Binance (position_risk_v3.json): 0.010.
    feed = Feed(s, serde)
    feed.send(POSITIONS, position("BTCUSDT", "0.020", "93100"), b"BTCUSDT")
    feed.flush()

    governor = GovernorShell(s, serde=serde, instance="reconcile-halt")
    governor.start()
    sender = CommandSender(s, serde=serde)
    try:
        # Control: before the halt an entry is granted.
        sender.send(_request("before", "ETHUSDT", T0))
        sender.flush()
        _pump(governor, s)
        decided = [d.decision for d in read_decisions(s, serde=serde)]
        assert [(d.kind, d.intent_id) for d in decided] == [(DecisionKind.GRANTED, "before")]

        monkeypatch.setenv("QT_BINANCE__API_KEY", "k" * 24)
        monkeypatch.setenv("QT_BINANCE__API_SECRET", "s" * 24)
        venue = BinanceFutures(Credentials.load())
        sink = CountingSink(s, serde)
        looks = 0

        def read():
            nonlocal looks
            looks += 1
            return reconcile_once(s, serde, venue)

        with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
            for path, name in (
                ("/v3/positionRisk", "position_risk_v3.json"),
                ("/v1/openOrders", "open_orders_empty.json"),
                ("/v1/openAlgoOrders", "open_algo_orders.json"),
            ):
                doc = fixture(name)
                rsps.add("GET", f"{TESTNET}{path}", json=doc["body"], status=doc["status"])
            halts = reconcile_loop(
                read,
                sink,
                every_ms=10,
                stop=lambda: sink.halts >= 1 or looks >= 10,
                confirm_after=2,
                clock_ms=lambda: T0 + 1_000,
            )
        assert (halts, looks) == (1, 2)  # confirmed on the second look, not the first

        # Same request (another intent, same shape) after the halt: denied, HALTED.
        sender.send(_request("after", "SOLUSDT", T0 + 2_000))
        sender.flush()
        _pump(governor, s)
    finally:
        governor.close()

    decided = [d.decision for d in read_decisions(s, serde=serde, isolation="read_committed")]
    assert [(d.kind, d.intent_id) for d in decided] == [
        (DecisionKind.GRANTED, "before"),
        (DecisionKind.HALTED, None),
        (DecisionKind.DENIED, "after"),
    ]
    assert decided[1].command_id == f"reconcile:halt:{T0 + 1_000}" and decided[1].halted
    assert decided[2].deny_reason == DenyReason.HALTED

    topic = s.topic(RISK_WARNINGS)
    schema = TOPOLOGY.topic(RISK_WARNINGS).schema or ""
    alerts = [
        serde.decode(topic, m.value(), schema_file=schema)
        for m in read_range(s.kafka.bootstrap, topic, isolation="read_committed")
    ]
    assert [(a["kind"], a["symbol"], a["processor"]) for a in alerts] == [
        ("RECONCILE_MISMATCH", "BTCUSDT", "reconcile")
    ]
    assert "BTCUSDT" in alerts[0]["detail"]
