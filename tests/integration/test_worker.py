"""One worker process hosting a Faust agent and the governor: `--agents passthrough,governor`."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Producer

from agents.governor.io import CommandSender, read_decisions
from agents.governor.model import DecisionKind, Side, SlotRequest
from quantum.app.settings import Settings
from quantum.kafka_util import end_offsets
from quantum.marketdata import sample_klines
from quantum.serde import AvroSerde
from topologies.apply import apply_topology
from topologies.declaration import MARKET_TICKS, PASSTHROUGH_OUT

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[2]


def test_worker_runs_a_faust_agent_and_the_governor_together(
    settings: Settings, tmp_path: Path
) -> None:
    assert apply_topology(settings).ok
    env = settings.child_env(
        QT_GOVERNOR_SHELL__TRANSACTIONAL_ID=f"{settings.kafka.topic_prefix}gov"
    )
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantum", "worker", "--agents", "passthrough,governor"],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        serde = AvroSerde.from_settings(settings)
        sender = CommandSender(settings, serde=serde)
        sender.send(SlotRequest("w1", "BTCUSDT", Side.LONG, Decimal(50), 0.7, 1_767_225_600_000))
        sender.flush()
        topic = settings.topic(MARKET_TICKS)
        tick = next(iter(sample_klines()))
        producer = Producer({"bootstrap.servers": settings.kafka.bootstrap})
        producer.produce(
            topic, key=b"BTCUSDT", value=serde.encode(topic, tick, schema_file="market.ticks.avsc")
        )
        producer.flush(30)

        out = settings.topic(PASSTHROUGH_OUT)
        deadline = time.monotonic() + 120
        decisions: list = []
        relayed = 0
        while time.monotonic() < deadline and (not decisions or not relayed):
            decisions = read_decisions(settings, serde=serde, timeout_s=10)
            relayed = sum(end_offsets(settings.kafka.bootstrap, out, 10).values())
            time.sleep(0.2)  # polling a condition with a deadline
        assert [(d.decision.kind, d.decision.intent_id) for d in decisions] == [
            (DecisionKind.GRANTED, "w1")
        ], log.read_text()[-2000:]
        assert relayed == 1, log.read_text()[-2000:]
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
