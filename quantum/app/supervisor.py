"""`quantum worker --supervise`: a parent that restarts its worker when it exits or stalls.

Stateful agents are written so that a restart from the committed offsets is always safe
(state restored from the changelog, applied offsets skip redeliveries), and a worker exits
on purpose when only a restart is (status 70: a state write failed; 71: Faust skipped
records of a gapless input). One thing a worker cannot see itself: Faust 0.15.3 can lose a
record it fetched while a restarted worker was still starting, and then never commit past
it (docs/exits.md, "Restart"). From outside that is plain: the group's committed offsets
stand still while it has records to read. The supervisor asks the broker for that every
`check_every_s` and restarts a worker stalled for `stall_timeout_s`.

The decisions (is it stalled? restart, after how long, or give up?) are pure classes fed
the time and what the broker said, so they are tested without processes; `supervise` is
the shell around them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.spec import AgentSpec
from quantum.app.lag_probe import LagProbe, ProbeFailed
from quantum.config import SupervisorSettings
from quantum.quiescence import Reader

log = logging.getLogger(__name__)

EXIT_FENCED = 3  # a transactional agent fenced by a newer instance: never restarted here


def readers_of(
    settings: Any, specs: Sequence[AgentSpec], group: str
) -> tuple[list[Reader], set[str]]:
    """The consumer groups one worker commits (its Faust group, the governor's own) with
    the topics each reads, and the topics written in transactions by any agent (they end
    with a commit marker, see quantum/quiescence.py), whichever worker writes them."""
    from agents.registry import REGISTRY

    topic = settings.topic
    readers: list[Reader] = []
    faust_reads = sorted({t for s in specs if s.kind == "faust" for t in s.reads})
    if faust_reads:
        readers.append(
            Reader(f"{settings.kafka.topic_prefix}{group}", tuple(topic(t) for t in faust_reads))
        )
    for spec in specs:
        if spec.kind == "transactional":
            from agents.governor.io import governor_group_id

            readers.append(Reader(governor_group_id(settings), tuple(topic(t) for t in spec.reads)))
    transactional = {topic(t) for s in REGISTRY if s.kind == "transactional" for t in s.writes}
    return readers, transactional


@dataclass
class StallWatch:
    """Stalled: records to read, and committed offsets unchanged for `timeout_s`.

    A worker that is merely slow commits something within seconds; one that is restoring
    its changelog commits nothing, so the timeout must exceed a restore (and the watch is
    reset at every start)."""

    timeout_s: float
    _last: dict[Any, int] | None = None
    _since: float = 0.0

    def reset(self, now: float) -> None:
        self._last, self._since = None, now

    def observe(self, now: float, committed: dict[Any, int], lag: dict[str, int]) -> bool:
        if not lag or committed != self._last:
            self._last, self._since = committed, now
            return False
        return self.timeout_s > 0 and now - self._since >= self.timeout_s


@dataclass(frozen=True)
class Verdict:
    restart: bool
    wait_s: float
    reason: str


@dataclass
class RestartPolicy:
    """Restart with a doubling backoff, reset by a run that lived `healthy_after_s`; give up
    after `max_restarts` within `window_s`, and never restart a clean exit or a fenced one."""

    settings: SupervisorSettings
    _backoff: float = -1.0
    _recent: deque[float] = field(default_factory=deque)

    def after_exit(self, now: float, code: int, lived_s: float) -> Verdict:
        if code == 0:
            return Verdict(False, 0.0, "the worker exited cleanly")
        if code == EXIT_FENCED:
            return Verdict(False, 0.0, "fenced: a newer instance owns the transactional id")
        return self._next(now, lived_s, f"the worker exited with status {code}")

    def after_stall(self, now: float, lived_s: float) -> Verdict:
        return self._next(now, lived_s, "the worker stopped committing while it had lag")

    def _next(self, now: float, lived_s: float, why: str) -> Verdict:
        s = self.settings
        while self._recent and now - self._recent[0] > s.window_s:
            self._recent.popleft()
        if len(self._recent) >= s.max_restarts:
            return Verdict(False, 0.0, f"{why}; {len(self._recent)} restarts in {s.window_s:.0f} s")
        if self._backoff < 0 or lived_s >= s.healthy_after_s:
            self._backoff = s.backoff_s
        else:
            self._backoff = min(max(self._backoff * 2, s.backoff_s), s.backoff_max_s)
        self._recent.append(now)
        return Verdict(True, self._backoff, why)


def _die_with_parent() -> None:
    """In the child: SIGKILL it when the supervisor dies, even by SIGKILL (Linux prctl)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def supervise(child_argv: list[str], settings: Any, specs: Sequence[AgentSpec], group: str) -> int:
    """Run `python -m quantum <child_argv>` until it exits cleanly, is fenced, is stopped
    (SIGTERM/SIGINT, passed on) or restarts too often. Returns the worker's last status."""
    conf: SupervisorSettings = settings.supervisor
    policy = RestartPolicy(conf)
    watch = StallWatch(conf.stall_timeout_s)
    readers, transactional = readers_of(settings, specs, group)
    # The broker is asked from a probe process: librdkafka has crashed in an admin client
    # whose broker restarted, and here that would take the worker with the supervisor.
    probe = LagProbe(settings.kafka.bootstrap, readers, transactional, preexec_fn=_die_with_parent)
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)

    restarts = 0
    while True:
        child = subprocess.Popen(
            [sys.executable, "-m", "quantum", *child_argv], preexec_fn=_die_with_parent
        )
        started = time.monotonic()
        watch.reset(started)
        log.info("supervisor: worker pid %d started (restarts so far: %d)", child.pid, restarts)
        verdict: Verdict | None = None
        while verdict is None:
            try:
                code = child.wait(timeout=conf.check_every_s)
            except subprocess.TimeoutExpired:
                code = None
            now = time.monotonic()
            if code is not None:
                if stopping:
                    return code
                verdict = policy.after_exit(now, code, now - started)
                continue
            if stopping or conf.stall_timeout_s == 0:
                continue
            try:
                committed, lag = probe.ask()
            except ProbeFailed as exc:  # the broker is away: no judgement, wait and see
                log.warning("supervisor: lag unknown (%s)", exc)
                watch.reset(now)
                continue
            if watch.observe(now, committed, lag):
                log.error("supervisor: stalled with lag %s; killing pid %d", lag, child.pid)
                child.kill()
                child.wait()
                verdict = policy.after_stall(now, now - started)
        if not verdict.restart:
            log.error("supervisor: not restarting: %s", verdict.reason)
            code = child.returncode
            return code if code is not None and code >= 0 else 1
        restarts += 1
        log.warning(
            "supervisor: %s; restart %d in %.1f s", verdict.reason, restarts, verdict.wait_s
        )
        deadline = time.monotonic() + verdict.wait_s
        while not stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, verdict.wait_s))  # the backoff itself, interruptible
        if stopping:
            return child.returncode or 0
