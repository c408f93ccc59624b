"""The agent runtime end to end: a real worker process runs the pass-through agent;
poison records land in the DLQ with their envelope while the agent goes on, and
`quantum dlq replay` re-injects them."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from quantum.app.cli import main as cli_main
from quantum.app.settings import Settings
from quantum.dlq import REPLAY_HEADER, read_dead_letters
from quantum.marketdata import sample_klines
from quantum.serde import AvroSerde
from topologies.apply import apply_topology
from topologies.declaration import MARKET_TICKS, PASSTHROUGH_OUT, dlq_topic

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[2]
SCHEMA = "market.ticks.avsc"


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen]:
    assert apply_topology(settings).ok
    env = settings.child_env(QT_MARKET__UNIVERSE='["BTCUSDT", "ETHUSDT", "SOLUSDT"]')
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantum", "worker", "--agents", "passthrough"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield proc
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _relayed(settings: Settings, serde: AvroSerde, expect: int) -> list[dict]:
    """Poll the output topic until `expect` records arrived (deadline-bounded)."""
    topic = settings.topic(PASSTHROUGH_OUT)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": "t-reader",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[dict] = []
    deadline = time.monotonic() + 120
    try:
        while len(out) < expect and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or (msg.error() and msg.error().code() == KafkaError._PARTITION_EOF):
                continue
            assert not msg.error(), msg.error()
            out.append(serde.decode(topic, msg.value(), schema_file=SCHEMA))
    finally:
        consumer.close()
    return out


def _wait_letters(settings: Settings, serde: AvroSerde, count: int) -> list:
    name = settings.topic(dlq_topic(MARKET_TICKS))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        letters = list(read_dead_letters(settings, name, serde=serde, timeout_s=10))
        if len(letters) >= count:
            return letters
        time.sleep(0.2)  # polling a condition with a deadline
    raise AssertionError(f"fewer than {count} dead letters in {name}")


def test_poison_goes_to_dlq_and_the_agent_goes_on(
    settings: Settings, worker: subprocess.Popen, monkeypatch: pytest.MonkeyPatch
) -> None:
    serde = AvroSerde.from_settings(settings)
    topic = settings.topic(MARKET_TICKS)
    ticks = [t for t in sample_klines() if t["symbol"] in {"BTCUSDT", "ETHUSDT", "SOLUSDT"}][:20]
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap})
    for tick in ticks[:10]:
        producer.produce(topic, key=b"BTCUSDT", value=serde.encode(topic, tick, schema_file=SCHEMA))
    producer.produce(topic, key=b"BTCUSDT", value=b"\x00\x00garbage")
    nan = dict(ticks[10], close="NaN")
    producer.produce(topic, key=b"BTCUSDT", value=serde.encode(topic, nan, schema_file=SCHEMA))
    doge = dict(ticks[0], symbol="DOGEUSDT", event_id=ticks[0]["event_id"].replace("BTC", "DOGE"))
    producer.produce(topic, key=b"BTCUSDT", value=serde.encode(topic, doge, schema_file=SCHEMA))
    for tick in ticks[11:]:  # all after the poison, on the same partition
        producer.produce(topic, key=b"BTCUSDT", value=serde.encode(topic, tick, schema_file=SCHEMA))
    producer.flush(30)

    relayed = _relayed(settings, serde, expect=19)
    assert sorted(r["event_id"] for r in relayed) == sorted(
        t["event_id"] for t in ticks[:10] + ticks[11:]
    )
    letters = _wait_letters(settings, serde, 3)
    assert len(letters) == 3
    garbage, invalid, unknown = sorted(letters, key=lambda d: d.value["source_offset"])
    assert unknown.value["error_message"].startswith("UNKNOWN_SYMBOL")
    assert garbage.value["value"] == b"\x00\x00garbage"
    assert garbage.value["error_class"] == "DecodeError"
    assert garbage.value["source_topic"] == topic and garbage.value["agent"] == "passthrough"
    assert garbage.value["key"] == b"BTCUSDT"
    assert invalid.value["error_class"] == "InvalidRecord"
    assert "close" in invalid.value["error_message"]
    assert invalid.value["source_offset"] == garbage.value["source_offset"] + 1
    assert worker.poll() is None  # still running

    # Replay the NaN one: it comes back to market.ticks, fails again, and is marked replayed.
    monkeypatch.setenv("KAFKA_BOOTSTRAP", settings.kafka.bootstrap)
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", settings.registry.url)
    prefix = ["--topic-prefix", settings.kafka.topic_prefix]
    assert cli_main([*prefix, "dlq", "replay", MARKET_TICKS, "--offset", str(invalid.offset)]) == 0
    letters = _wait_letters(settings, serde, 4)
    replayed = letters[-1].value
    assert replayed["value"] == invalid.value["value"]
    assert replayed["replay_count"] == 1
    assert any(h["key"] == REPLAY_HEADER for h in replayed["headers"])
    assert cli_main([*prefix, "dlq", "list", MARKET_TICKS]) == 0


def test_replay_refuses_a_topic_that_is_not_a_dlq(settings: Settings) -> None:
    from quantum.dlq import replay

    with pytest.raises(ValueError, match="not a dead-letter topic"):
        replay(settings, settings.topic(MARKET_TICKS))


def test_unknown_agent_is_a_clear_cli_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["worker", "--agents", "passthrough,nonesuch"]) == 2
    assert "unknown agent(s) nonesuch" in capsys.readouterr().err
