"""The governor under the two faults the SIGKILL chaos test leaves out: an instance frozen
(SIGSTOP) while a successor takes over and then resumed, and the broker itself killed with
SIGKILL and restarted under a running governor.

Both end with the audit of the whole committed history (read_committed): the invariant at
every offset, exactly one final decision per request, no decision id twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agents.governor.io import CommandSender, committed_offset
from agents.governor.model import Side, SlotRequest
from agents.governor.shell import EXIT_FENCED
from infra import local
from quantum.app.backtest.run import WorkerProcess
from quantum.app.settings import Settings
from quantum.polling import wait_until
from tests.chaos.governor_world import audit_history, governor_env, spawn_governor, wait_caught_up
from topologies.apply import apply_topology

if TYPE_CHECKING:
    from tests.conftest import BrokerEndpoints

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

SYMBOLS = 40


def _send_requests(settings: Settings, tag: str, count: int) -> None:
    """`count` requests over SYMBOLS symbols, stamped now (within the governor's skew)."""
    sender = CommandSender(settings)
    t = int(time.time() * 1000)
    for i in range(count):
        symbol = f"S{i % SYMBOLS:03d}USDT"
        score = (i * 37 % 100) / 100
        sender.send(SlotRequest(f"{tag}-{i}", symbol, Side.LONG, Decimal(100), score, t + i))
    sender.flush()


def _assert_history_is_sound(settings: Settings, expected_requests: int) -> None:
    report, logged, requests, poison = audit_history(settings)
    print(report.render())
    assert not poison
    assert len({r.intent_id for r in requests}) == expected_requests
    assert report.ok, report.render()
    assert not report.missing_decisions and not report.duplicate_finals
    ids = Counter(d.decision.decision_id for d in logged)
    assert max(ids.values()) == 1, f"duplicated decisions: {ids.most_common(3)}"


def _stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


def test_a_sigstopped_governor_resumed_after_its_successor_took_over_commits_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    """Freeze the governor in the middle of a backlog, start a successor, let it decide
    everything, then resume the frozen one while more commands arrive: the resumed instance
    reads them too (it is assigned the partition, not a group member), decides them from
    its stale state, and must find itself fenced at its next transactional call and exit
    with EXIT_FENCED, with nothing of its own visible to a read_committed reader."""
    assert apply_topology(settings).ok
    env = governor_env(settings)
    log = tmp_path / "governor.log"
    first = spawn_governor("g0", env, log)
    second: subprocess.Popen | None = None
    try:
        _send_requests(settings, "a", 600)
        # Frozen as soon as it has committed part of the backlog, likely mid-transaction.
        wait_until(lambda: committed_offset(settings) >= 100, 90, "g0's first commits")
        os.kill(first.pid, signal.SIGSTOP)
        # (No committed-offset lookup here: if g0 froze between sending its offsets and
        # committing, the group's offsets stay unstable until g1 fences it, and a lookup
        # waits its full 30 s for them.)
        second = spawn_governor("g1", env, log)
        _send_requests(settings, "b", 200)
        wait_caught_up(settings)
        os.kill(first.pid, signal.SIGCONT)
        _send_requests(settings, "c", 200)
        assert first.wait(timeout=90) == EXIT_FENCED, log.read_text()[-3000:]
        wait_caught_up(settings)
        assert second.poll() is None, "the successor exited; see the log"
        assert _stop(second) == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
                process.wait(30)
    _assert_history_is_sound(settings, 1_000)


def test_the_governor_rides_out_a_broker_killed_and_restarted(
    broker: BrokerEndpoints, settings: Settings, tmp_path: Path
) -> None:
    """SIGKILL the broker while the governor works through a backlog, and restart it from
    the same log directory. The governor runs as in production, under `quantum worker
    --supervise`: a commit that failed with a retriable error is made again; one that
    never returns (librdkafka #5456/#5511 after a coordinator restart) makes the worker
    exit 75 and the supervisor start another, which settles the open transaction and
    rebuilds from the committed log. Either way every request is decided exactly once."""
    if broker.origin != "infra":
        pytest.skip("restarts only the project's own local broker (infra.local)")
    infra_settings = Settings().infra
    assert apply_topology(settings).ok
    worker = WorkerProcess(
        ("governor",),
        f"{settings.kafka.topic_prefix}worker",
        governor_env(settings, QT_GOVERNOR_SHELL__COMMIT_HANG_S="45"),
        tmp_path / "worker.log",
        supervise=True,
    )
    worker.start()
    try:
        _send_requests(settings, "a", 600)
        wait_until(lambda: committed_offset(settings) >= 100, 90, "the first commits")
        broker_pid = local.kill_broker(infra_settings)
        restarted = local.up(infra_settings)
        assert restarted.bootstrap == broker.bootstrap
        assert local.status(infra_settings).broker_pid not in (None, broker_pid)
        _send_requests(settings, "b", 200)
        wait_caught_up(settings, timeout_s=240)
        assert worker.alive(), worker.log_path.read_text(errors="replace")[-3000:]
    finally:
        worker.stop()
        local.up(infra_settings)  # the session's later tests need the broker, whatever failed
    log = worker.log_path.read_text(errors="replace")
    print(f"worker starts: {worker.worker_starts()}; hung commits: {log.count('has not returned')}")
    _assert_history_is_sound(settings, 800)
