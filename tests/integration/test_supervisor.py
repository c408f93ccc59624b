"""`quantum worker --supervise` on the real broker: a SIGKILLed worker is restarted and
goes on from its committed offsets; a hole in a gapless input (here made on purpose by
deleting records the worker had not read) stops the worker with status 71 before it
applies anything out of order, and a hole that a restart cannot mend makes the supervisor
give up rather than loop. A registry outage stops the worker too (status 75), and
dead-letters no good record."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from agents.registry import REGISTRY
from agents.stateful import EXIT_RECORDS_SKIPPED
from quantum.app.backtest.run import WorkerProcess
from quantum.app.lag_probe import LagProbe
from quantum.app.settings import Settings
from quantum.app.supervisor import readers_of
from quantum.dlq import read_dead_letters
from quantum.exit_status import EXIT_ENVIRONMENT
from quantum.polling import wait_until
from quantum.quiescence import Quiescence
from quantum.serde import AvroSerde
from tests.exit_world import (
    FAST_GROUP_ENV,
    REFUSED_A_HOLE,
    SUPERVISOR_ENV,
    kline_record,
    supervisor_verdicts,
)
from tests.tcp_switch import TcpSwitch
from topologies.apply import apply_topology
from topologies.declaration import MARKET_TICKS, TOPOLOGY, dlq_topic

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


def _verdicts(worker: WorkerProcess) -> list[str]:
    return supervisor_verdicts(worker.log_path.read_text(errors="replace"))


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
        # the kill, then maybe runs that met Faust's restart anomaly (faust-streaming #596:
        # a record not handed to the agent), each refused with 71 and restarted
        ends = _verdicts(worker)
        assert ends[0] == "the worker exited with status -9", ends
        assert set(ends[1:]) <= {REFUSED_A_HOLE}, ends
        assert worker.alive() and worker.worker_starts() == 1 + len(ends)
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
    # a run may also end otherwise before it reaches the hole (a Faust start-up error, or
    # the restart anomaly of faust-streaming #596 seen as a stall): the supervisor restarts
    # those too, so the budget covers three stall timeouts
    wait_until(lambda: not worker.alive(), 400, "the supervisor to give up", poll_s=0.1)
    log = worker.log_path.read_text(errors="replace")
    runs = _verdicts(worker)
    refused = log.count("market.ticks/0@5 came after @2")
    # the first start, then two restarts; every run that read the hole refused it with 71
    assert worker.worker_starts() == 4 and len(runs) == 3, log[-3000:]
    assert refused >= 1 and runs.count(REFUSED_A_HOLE) == refused, runs
    if runs[-1] == REFUSED_A_HOLE:
        assert worker.proc.returncode == EXIT_RECORDS_SKIPPED, log[-3000:]
    group = f"{settings.kafka.topic_prefix}{GROUP}"
    assert _quiescence(settings).committed()[(group, ticks.topic, 0)] == 3  # nothing past it


def test_a_registry_outage_stops_the_worker_and_dead_letters_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    """The worker reaches the registry through a switch that is off: the first record's
    writer schema cannot be fetched, which is no fault of the record. The worker exits 75
    with the record uncommitted, the supervisor restarts it, and once the registry answers
    again every record is processed and none was dead-lettered."""
    assert apply_topology(settings).ok
    ticks = Ticks(settings)  # registers the schema through the real registry
    registry = urlsplit(settings.registry.url)
    switch = TcpSwitch(registry.port or 80)
    url = registry._replace(netloc=f"127.0.0.1:{switch.port}").geturl()
    worker = _worker(settings, tmp_path, SCHEMA_REGISTRY_URL=url)
    quiescence = _quiescence(settings)
    group = f"{settings.kafka.topic_prefix}{GROUP}"
    try:
        worker.start()
        end = ticks.send(3)
        outage = f"exited with status {EXIT_ENVIRONMENT}"
        wait_until(lambda: outage in worker.log_path.read_text(), 180, "an exit for the outage")
        assert quiescence.committed().get((group, ticks.topic, 0), 0) == 0  # not past record 0
        switch.up()
        _settled(worker, quiescence)
        assert quiescence.committed()[(group, ticks.topic, 0)] == end
        ends = _verdicts(worker)
        assert f"the worker {outage}" in ends and set(ends) <= {
            f"the worker {outage}",
            REFUSED_A_HOLE,
        }
        assert "RegistryUnavailable" in worker.log_path.read_text()
    finally:
        worker.stop()
        switch.down()
    dlq = settings.topic(dlq_topic(MARKET_TICKS))
    assert list(read_dead_letters(settings, dlq)) == []


def test_the_lag_probe_answers_and_a_dead_probe_is_replaced(settings: Settings) -> None:
    """The supervisor asks the broker through a probe process (quantum/app/lag_probe.py),
    so that a librdkafka crash there cannot take the supervisor and its worker down. The
    probe answers what the broker says, and one that died is started again at the next
    question, with the same answer."""
    assert apply_topology(settings).ok
    readers, transactional = readers_of(settings, REGISTRY.select(",".join(AGENTS)), GROUP)
    Ticks(settings).send(3)
    probe = LagProbe(settings.kafka.bootstrap, readers, transactional)
    try:
        committed, lag = probe.ask()
        group = f"{settings.kafka.topic_prefix}{GROUP}"
        ticks = settings.topic(MARKET_TICKS)
        assert committed[(group, ticks, 0)] == 0  # nothing consumed yet
        assert lag == {f"{group}/{ticks}": 3}
        first = probe._proc
        assert first is not None
        first.kill()  # as a crash would end it
        first.wait()
        assert probe.ask() == (committed, lag)
        assert probe._proc is not None and probe._proc.pid != first.pid
    finally:
        probe.close()
