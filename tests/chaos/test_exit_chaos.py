"""Chaos on the real broker: the worker running harvest and exit_guard is SIGKILLed in the
middle of writing exits, five times, and restarted each time, while positions and bars walk
six symbols (two positions each) up the ladder, through the trailing stop or down to the stop.
The same worker is also SIGSTOPped (its supervisor replaces it).

What "fired twice" means for an at-least-once agent: every exit has an id derived from the
position and the step (`<position>:tp2`). A step fired twice would be a second *different*
exit for it: another id, or the same id with another quantity, reason or event time (the
state was lost and the step re-derived from a changed position). The same record again is a
redelivery: the worker died after sending it and before its input offset was committed, and
execution ignores an exit id it has already seen (docs/execution.md, rule 9). So the test
reads exit.intents (read_committed) and asserts:

- the distinct exit ids are exactly those of an uninterrupted pure run (none skipped, none
  extra), and every copy of an id is that run's very record (copies are redeliveries only);
- per position, the ladder steps appear in order in the log (tp1 before tp2 before tp3
  before the stop), so a restart never reorders a position's exits;
- the two stop-loss warnings (one position never gets a stop) are there once by id.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quantum.app.backtest.run import WorkerProcess
from quantum.app.settings import Settings
from quantum.kafka_util import end_offsets, read_range
from quantum.polling import wait_until
from quantum.serde import AvroSerde
from tests.exit_world import (
    FAST_GROUP_ENV,
    SUPERVISOR_ENV,
    WORKER_ENV,
    Feeder,
    ladder_scenario,
    supervisor_restarts,
    worker_readers,
)
from topologies.apply import apply_topology
from topologies.declaration import EXIT_INTENTS, RISK_WARNINGS, TOPOLOGY

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

GROUP = "exits-chaos"
KILLS = 5
STEP_ORDER = {"tp1": 0, "tp2": 1, "tp3": 2, "stop": 3}


def _supervised_worker(
    settings: Settings, tmp_path: Path, **supervisor: str
) -> tuple[WorkerProcess, Callable[[], None]]:
    """The harvest/exit_guard worker under `quantum worker --supervise` (`supervisor`
    overrides SUPERVISOR_ENV), and a check that raises once its supervisor has died."""
    worker = WorkerProcess(
        ("harvest", "exit_guard"),
        GROUP,
        settings.child_env(**FAST_GROUP_ENV, **WORKER_ENV, **{**SUPERVISOR_ENV, **supervisor}),
        tmp_path / "worker.log",
        supervise=True,
    )

    def alive() -> None:
        if not worker.alive():
            raise AssertionError(f"the supervisor died:\n{worker.log_path.read_text()[-3000:]}")

    return worker, alive


def _exits_written(settings: Settings) -> int:
    return sum(end_offsets(settings.kafka.bootstrap, settings.topic(EXIT_INTENTS), 30).values())


def _read(settings: Settings, logical: str) -> list[tuple[int, int, dict]]:
    """(partition, offset, value) of every committed record of a run topic."""
    serde = AvroSerde.from_settings(settings)
    topic = settings.topic(logical)
    schema = TOPOLOGY.topic(logical).schema or ""
    return [
        (m.partition(), m.offset(), serde.decode(topic, m.value() or b"", schema_file=schema))
        for m in read_range(settings.kafka.bootstrap, topic, timeout_s=120)
    ]


def test_no_ladder_step_fires_twice_or_is_skipped_across_sigkills(
    settings: Settings, tmp_path: Path
) -> None:
    assert apply_topology(settings).ok
    scenario = ladder_scenario()
    rng = random.Random(20261126)
    with_exits = [i for i, n in enumerate(scenario.phase_exits) if n]
    kill_at = set(rng.sample(with_exits[1:-1], KILLS))
    # Under `quantum worker --supervise`, as in production: a kill below SIGKILLs the
    # worker and the supervisor restarts it; it also restarts a worker that exits 71 (a
    # hole in market.ticks) or stops committing (docs/exits.md, "Restart").
    worker, alive = _supervised_worker(settings, tmp_path)

    t0 = time.monotonic()
    worker.start()
    feeder = Feeder(settings, worker_readers(settings, GROUP), check=alive, timeout_s=240)
    kills = 0
    try:
        for i, phase in enumerate(scenario.phases):
            if i not in kill_at:
                feeder.phase(phase)
                continue
            before = _exits_written(settings)
            for logical, value in phase:
                feeder.send(logical, value, value["symbol"].encode())
            feeder.producer.flush(30)
            # the worker is writing this phase's exits: kill it right after the first one,
            # before it can have written its state and committed the input offset
            wait_until(lambda b=before: _exits_written(settings) > b, 120, "an exit", poll_s=0.001)
            worker.kill()
            kills += 1
            worker.start()
            feeder.settle()
        feeder.settle()
    except TimeoutError as exc:  # say who was behind, and what the worker said
        lag = feeder.quiescence.lag()
        tail = worker.log_path.read_text()[-4000:]
        raise AssertionError(f"{exc}; kills={kills}; behind: {lag}\n{tail}") from exc
    finally:
        worker.stop()
    elapsed = time.monotonic() - t0

    written = _read(settings, EXIT_INTENTS)
    expected = {x["exit_id"]: x for x in scenario.exits}
    copies = Counter(v["exit_id"] for _, _, v in written)
    restarts = supervisor_restarts(worker.log_path.read_text(errors="replace"))
    print(
        f"kills={kills} worker_starts={worker.worker_starts()} other_restarts={restarts} "
        f"records={scenario.records} "
        f"phases={len(scenario.phases)} exits: expected={len(expected)} "
        f"written={len(written)} distinct={len(copies)} "
        f"redelivered={sum(n - 1 for n in copies.values())} "
        f"ids_with_copies={sum(1 for n in copies.values() if n > 1)} "
        f"wall={elapsed:.1f}s log={worker.log_path}"
    )
    assert kills == KILLS and worker.starts == 1
    assert worker.worker_starts() == 1 + KILLS + restarts
    _check_exits(settings, scenario, written)


def _check_exits(settings: Settings, scenario: Any, written: list[tuple[int, int, dict]]) -> None:
    """Exactly the exits of an uninterrupted pure run, copies only as exact redeliveries,
    each position's steps in ladder order, every warning once by id."""
    expected = {x["exit_id"]: x for x in scenario.exits}
    copies = Counter(v["exit_id"] for _, _, v in written)
    skipped, extra = set(expected) - set(copies), set(copies) - set(expected)
    assert not skipped and not extra, f"skipped: {sorted(skipped)}, extra: {sorted(extra)}"
    for _, _, value in written:
        assert value == expected[value["exit_id"]], "a copy differs from the first firing"
    first: dict[str, tuple[int, int]] = {}
    for part, offset, value in written:
        first.setdefault(value["exit_id"], (part, offset))
    steps: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for exit_id, (part, offset) in first.items():
        position, _, step = exit_id.rpartition(":")
        if step in STEP_ORDER:
            steps[position].append((part, offset, step))
    for position, seen in steps.items():
        assert len({p for p, _, _ in seen}) == 1, f"{position}'s exits on several partitions"
        in_log = [s for _, _, s in sorted(seen)]
        assert in_log == sorted(in_log, key=STEP_ORDER.__getitem__), (position, in_log)
    warnings = Counter(v["warning_id"] for _, _, v in _read(settings, RISK_WARNINGS))
    assert set(warnings) == {w["warning_id"] for w in scenario.warnings}


def test_a_sigstopped_worker_is_replaced_by_its_supervisor_not_resumed(
    settings: Settings, tmp_path: Path
) -> None:
    """SIGSTOP the worker under its supervisor in the middle of the ladder: it holds its
    partitions and commits nothing while bars arrive, so the supervisor sees a stall,
    SIGKILLs it (a stopped process dies of SIGKILL) and starts another from the committed
    offsets. The stopped one is never resumed to write stale state beside its successor,
    and the exits are exactly those of an uninterrupted run."""
    assert apply_topology(settings).ok
    scenario = ladder_scenario(second_round=False)
    with_exits = [i for i, n in enumerate(scenario.phase_exits) if n]
    stop_at = with_exits[len(with_exits) // 2]
    worker, _ = _supervised_worker(settings, tmp_path, QT_SUPERVISOR__STALL_TIMEOUT_S="20")
    worker.start()
    feeder = Feeder(settings, worker_readers(settings, GROUP), timeout_s=240)
    stopped: list[int] = []
    try:
        for i, phase in enumerate(scenario.phases):
            if i == stop_at:
                stopped = worker.children()
                assert len(stopped) == 1
                os.kill(stopped[0], signal.SIGSTOP)
            feeder.phase(phase)
        feeder.settle()
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert "stalled with lag" in log and f"killing pid {stopped[0]}" in log, log[-3000:]
    assert supervisor_restarts(log) >= 1
    assert worker.worker_starts() == 1 + supervisor_restarts(log)
    _check_exits(settings, scenario, _read(settings, EXIT_INTENTS))
