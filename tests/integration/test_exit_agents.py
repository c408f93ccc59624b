"""The harvest and exit-guard shells in a real worker on the real broker: positions and bars
walking the ladder give the exits of an uninterrupted pure run, a position without a
stop-loss gives one warning per processor, and a poison record on each input lands in that
input's DLQ (once per agent that reads it) while both agents go on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest

from quantum.app.backtest.report import read_values
from quantum.app.backtest.run import WorkerProcess
from quantum.app.settings import Settings
from quantum.dlq import read_dead_letters
from quantum.serde import AvroSerde
from tests.exit_world import (
    FAST_GROUP_ENV,
    WORKER_ENV,
    Feeder,
    kline_record,
    ladder_scenario,
    position_record,
    worker_readers,
)
from topologies.apply import apply_topology
from topologies.declaration import (
    EXIT_INTENTS,
    MARKET_TICKS,
    PORTFOLIO,
    POSITIONS,
    RISK_WARNINGS,
    dlq_topic,
)

pytestmark = pytest.mark.broker
GROUP = "exits"


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    assert apply_topology(settings).ok
    proc = WorkerProcess(
        ("harvest", "exit_guard"),
        GROUP,
        settings.child_env(**FAST_GROUP_ENV, **WORKER_ENV),
        tmp_path / "worker.log",
    )
    proc.start()
    yield proc
    proc.stop()


def _poisons() -> list[tuple[str, dict | bytes, str]]:
    """(input, value, what) — each fails on its own way in."""
    good_pos = position_record(
        "POISON-1", "BTCUSDT", qty="1", entry="1", stop=None, opened=0, updated=0, mark="1"
    )
    k = kline_record("ETHUSDT", 999, D(10), D(9), D(11), D(10))  # high below low
    return [
        (POSITIONS, b"\x00\x00\x00\x00\x01garbage", "DecodeError"),
        (POSITIONS, {**good_pos, "entry_price": "NaN"}, "InvalidRecord"),
        (MARKET_TICKS, b"not avro at all", "DecodeError"),
        (MARKET_TICKS, k, "InvalidRecord"),
        (PORTFOLIO, b"\x00\x00\x00\x00\x02\x99", "DecodeError"),
    ]


def test_exits_warnings_and_dead_letters_on_the_broker(
    settings: Settings, worker: WorkerProcess
) -> None:
    scenario = ladder_scenario(("BTCUSDT", "ETHUSDT", "LTCUSDT"), second_round=False)
    feeder = Feeder(settings, worker_readers(settings, GROUP), check=_alive(worker))
    poisons = _poisons()
    middle = len(scenario.phases) // 2
    for i, phase in enumerate(scenario.phases):
        feeder.phase(phase)
        if i == middle:  # the poison, mid-run; the exits after it must still come
            for logical, value, _ in poisons:
                feeder.send(logical, value, b"BTCUSDT")
            feeder.settle()
    assert worker.alive(), worker.log_path.read_text()[-3000:]

    serde = AvroSerde.from_settings(settings)
    written = list(read_values(settings, EXIT_INTENTS, serde))
    expected = {x["exit_id"]: x for x in scenario.exits}
    assert {x["exit_id"] for x in written} == set(expected), worker.log_path.read_text()[-3000:]
    for x in written:  # the very record an uninterrupted pure run gives
        assert x == expected[x["exit_id"]]
    after = [x for x in scenario.exits if x["event_time"] > _time_of(scenario.phases[middle])]
    assert after, "exits fired after the poison"
    reasons = Counter(x["reason"] for x in written)
    assert {"HARVEST", "TRAILING_STOP", "STOP_LOSS"} <= set(reasons)
    warnings = list(read_values(settings, RISK_WARNINGS, serde))
    assert sorted(w["warning_id"] for w in warnings) == sorted(
        w["warning_id"] for w in scenario.warnings
    )
    assert len(warnings) == 2  # one position without a stop, one warning per processor

    letters = {
        logical: [d.value for d in read_dead_letters(settings, settings.topic(dlq_topic(logical)))]
        for logical in (POSITIONS, MARKET_TICKS, PORTFOLIO)
    }
    readers = {POSITIONS: {"harvest", "exit_guard"}, MARKET_TICKS: {"harvest", "exit_guard"}}
    readers[PORTFOLIO] = {"exit_guard"}
    for logical, values in letters.items():
        sent = [what for topic, _, what in poisons if topic == logical]
        got = Counter((v["agent"], v["error_class"]) for v in values)
        want = Counter((agent, what) for agent in readers[logical] for what in sent)
        assert got == want, (logical, got)
        assert all(v["source_topic"] == settings.topic(logical) for v in values)


def _alive(worker: WorkerProcess):
    def check() -> None:
        if not worker.alive():
            raise AssertionError(f"the worker died:\n{worker.log_path.read_text()[-3000:]}")

    return check


def _time_of(phase: list) -> int:
    value = phase[-1][1]
    return int(value.get("close_time") or value["updated_at"])
