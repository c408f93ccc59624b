"""`quantum worker --supervise` on the real broker: a SIGKILLed worker is restarted and
goes on from its committed offsets; a hole in a gapless input (here made on purpose by
deleting records the worker had not read) stops the worker with status 71 before it
applies anything out of order, and a hole that a restart cannot mend makes the supervisor
give up rather than loop."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from agents.registry import REGISTRY
from agents.stateful import EXIT_RECORDS_SKIPPED
from quantum.app.backtest.run import WorkerProcess
from quantum.app.settings import Settings
from quantum.app.supervisor import readers_of
from quantum.polling import wait_until
from quantum.quiescence import Quiescence
from quantum.serde import AvroSerde
from tests.exit_world import FAST_GROUP_ENV, SUPERVISOR_ENV, kline_record
from topologies.apply import apply_topology
from topologies.declaration import MARKET_TICKS, TOPOLOGY

pytestmark = [pytest.mark.broker]

AGENTS = ("harvest",)
GROUP = "supervised"


class Ticks:
    """Bars of one symbol into partition 0 of the run's market.ticks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(MARKET_TICKS)
        self.serde = AvroSerde.from_settings(settings)
        self.producer = Producer({"bootstrap.servers": settings.kafka.bootstrap})
        self.sent = 0

    def send(self, count: int) -> int:
        schema = TOPOLOGY.topic(MARKET_TICKS).schema or ""
        for _ in range(count):
            price = Decimal(60_000 + self.sent)
            value = kline_record("BTCUSDT", self.sent, price, price + 5, price - 5, price + 1)
            raw = self.serde.encode(self.topic, value, schema_file=schema)
            self.producer.produce(self.topic, raw, key=b"BTCUSDT", partition=0)
            self.sent += 1
        assert self.producer.flush(30) == 0
        return self.sent  # the end offset of partition 0


def _quiescence(settings: Settings) -> Quiescence:
    readers, transactional = readers_of(settings, REGISTRY.select(",".join(AGENTS)), GROUP)
    return Quiescence(settings.kafka.bootstrap, readers, transactional=transactional)


def _worker(settings: Settings, tmp_path: Path, **env: str) -> WorkerProcess:
    return WorkerProcess(
        AGENTS,
        GROUP,
        settings.child_env(**FAST_GROUP_ENV, **SUPERVISOR_ENV, **env),
        tmp_path / "worker.log",
        supervise=True,
    )


def _settled(worker: WorkerProcess, quiescence: Quiescence) -> None:
    def failed() -> str | None:
        return None if worker.alive() else worker.log_path.read_text()[-3000:]

    quiescence.wait(120, failed=failed)


def test_a_killed_worker_is_restarted_and_reads_on(settings: Settings, tmp_path: Path) -> None:
    assert apply_topology(settings).ok
    ticks = Ticks(settings)
    worker = _worker(settings, tmp_path)
    try:
        worker.start()
        ticks.send(5)
        quiescence = _quiescence(settings)
        _settled(worker, quiescence)
        worker.kill()  # the worker under the supervisor, not the supervisor
        ticks.send(5)
        _settled(worker, quiescence)
        assert worker.alive() and worker.worker_starts() == 2
        group = f"{settings.kafka.topic_prefix}{GROUP}"
        assert quiescence.committed()[(group, ticks.topic, 0)] == 10
    finally:
        worker.stop()


def test_a_hole_in_a_gapless_input_stops_the_worker_and_the_supervisor_gives_up(
    settings: Settings, tmp_path: Path
) -> None:
    assert apply_topology(settings).ok
    ticks = Ticks(settings)
    worker = _worker(settings, tmp_path, QT_SUPERVISOR__MAX_RESTARTS="2")
    worker.start()
    ticks.send(3)
    _settled(worker, _quiescence(settings))
    worker.stop()  # SIGTERM, passed on: the worker commits offset 3 and leaves
    assert worker.proc is not None and worker.proc.returncode == 0
    end = ticks.send(3)  # offsets 3, 4, 5
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    for future in admin.delete_records([TopicPartition(ticks.topic, 0, end - 1)]).values():
        future.result(30)  # 3 and 4 are gone: the log now starts at 5
    worker.start()
    wait_until(lambda: not worker.alive(), 180, "the supervisor to give up", poll_s=0.1)
    log = worker.log_path.read_text(errors="replace")
    assert worker.proc.returncode == EXIT_RECORDS_SKIPPED, log[-3000:]
    assert "market.ticks/0@5 came after @2" in log
    # the first start, then two restarts, each refusing the same hole
    assert log.count("exited with status 71") == 3 and worker.worker_starts() == 4
