"""The clock agent in a real worker: ticks in, one Clock per bucket on the portfolio topic,
and the governor expires a reservation on it with no other traffic."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Producer

from agents.governor.core import GovernorCore
from agents.governor.io import CommandSender, read_commands
from agents.governor.model import Clock, DecisionKind, Side, SlotRequest
from quantum.app.settings import Settings
from quantum.marketdata import sample_klines
from quantum.serde import AvroSerde
from topologies.apply import apply_topology
from topologies.declaration import MARKET_TICKS

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[2]


def test_ticks_become_deduplicable_heartbeats(settings: Settings, tmp_path: Path) -> None:
    assert apply_topology(settings).ok
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantum", "worker", "--agents", "clock"],
        cwd=REPO,
        env=settings.child_env(QT_CLOCK__EVERY_MS="300000"),  # 5 minutes
        stdout=(tmp_path / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        serde = AvroSerde.from_settings(settings)
        reserve = SlotRequest("r1", "BTCUSDT", Side.LONG, Decimal(10), 0.5, 1_767_225_600_000)
        sender = CommandSender(settings, serde=serde)
        sender.send(reserve)
        sender.flush()
        ticks = list(sample_klines())[:300]  # 30 minutes of 10 symbols
        topic = settings.topic(MARKET_TICKS)
        producer = Producer({"bootstrap.servers": settings.kafka.bootstrap})
        for tick in ticks:
            value = serde.encode(topic, tick, schema_file="market.ticks.avsc")
            producer.produce(topic, key=tick["symbol"].encode(), value=value)
        producer.flush(30)

        first, last = ticks[0]["close_time"], ticks[-1]["close_time"]
        buckets = sorted({t["close_time"] // 300_000 * 300_000 for t in ticks})
        assert first // 300_000 < last // 300_000
        deadline = time.monotonic() + 120
        clocks: list[Clock] = []
        while time.monotonic() < deadline:
            commands, _ = read_commands(settings, serde=serde, timeout_s=10)
            clocks = [c for _, c in commands if isinstance(c, Clock)]
            if {c.event_time_ms for c in clocks} >= set(buckets):
                break
            time.sleep(0.2)  # polling a condition with a deadline
        assert {c.event_time_ms for c in clocks} == set(buckets), (
            tmp_path / "worker.log"
        ).read_text()[-2000:]
        assert all(c.command_id == f"clock:{c.event_time_ms}" for c in clocks)

        # The governor's view of that log: the reservation, never filled, expires on a clock.
        core = GovernorCore(settings.governor.model_copy(update={"reservation_ttl_ms": 600_000}))
        decided = [d for _, c in commands for d in core.handle(c)]
        expired = [d for d in decided if d.kind == DecisionKind.EXPIRED]
        assert [d.intent_id for d in expired] == ["r1"]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
