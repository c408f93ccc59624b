"""One backtest: topics under a run prefix, the agents in worker processes, the lock-step
feed, then the report. The CLI (`quantum backtest`), the demo and the end-to-end tests
all run it through `Backtest`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.registry import REGISTRY
from quantum.app.backtest.driver import FeedStats, LockstepFeed
from quantum.app.supervisor import readers_of
from quantum.app.worker import APP_ID
from quantum.marketdata import Kline, RowError
from quantum.polling import wait_until
from quantum.processes import command_line, running
from quantum.quiescence import Quiescence, Reader
from topologies.apply import apply_topology

REPO = Path(__file__).resolve().parents[3]

# Every registered agent takes part in a backtest but the smoke-test relay and the venue
# not chosen: the paper exchange by default, the Binance adapter with `venue="binance"`
# (pointed at a local replay of Binance, tests/e2e/test_binance_pipeline.py).
NOT_IN_BACKTEST = frozenset({"passthrough", "binance_exchange"})
VENUE_AGENTS = {"paper": "paper_exchange", "binance": "binance_exchange"}


def pipeline_agents(venue: str = "paper") -> list[str]:
    """The registered agents of a backtest on `venue` ("paper" or "binance")."""
    if venue not in VENUE_AGENTS:
        raise ValueError(f"unknown venue {venue!r}; one of {sorted(VENUE_AGENTS)}")
    skip = (NOT_IN_BACKTEST | set(VENUE_AGENTS.values())) - {VENUE_AGENTS[venue]}
    return [name for name in REGISTRY.names() if name not in skip]


def _kill_and_reap_wait(pid: int, timeout_s: float = 30.0) -> None:
    """SIGKILL a process that is not our child, and wait until it is gone (its parent
    reaps it; /proc/<pid> then disappears)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_until(lambda: not running(pid), timeout_s, f"pid {pid} to exit after SIGKILL", poll_s=0.01)


def readers_of_processes(
    settings: Any, processes: Iterable[WorkerProcess]
) -> tuple[list[Reader], set[str]]:
    """Who must have caught up for these workers' pipeline to be settled (each worker's
    groups, as its supervisor sees them), and which topics are written in transactions
    (they end with a commit marker)."""
    readers: list[Reader] = []
    transactional: set[str] = set()
    for proc in processes:
        more, txn = readers_of(settings, REGISTRY.select(",".join(proc.agents)), proc.group)
        readers.extend(more)
        transactional |= txn
    return readers, transactional


@dataclass
class WorkerProcess:
    """One `quantum worker` child; tests kill and restart it.

    supervise: run it as `quantum worker --supervise`: then `kill()` SIGKILLs the worker
    under the supervisor, which restarts it (as in production), and `start()` only starts
    a supervisor that is not running; `worker_starts()` counts the worker's starts."""

    agents: tuple[str, ...]
    group: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    starts: int = 0
    expected_down: bool = False  # killed on purpose (a chaos test), restart pending
    supervise: bool = False

    def start(self) -> None:
        if self.supervise and self.alive():
            return  # the supervisor restarts its worker itself
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        cmd = [sys.executable, "-m", "quantum", "worker", "--agents", ",".join(self.agents)]
        cmd += ["--group", self.group, *(["--supervise"] if self.supervise else [])]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.expected_down = False
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed or committed."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.supervise:
            for pid in self.children():
                _kill_and_reap_wait(pid)
            return
        self.expected_down = True
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def children(self) -> list[int]:
        """The supervisor's worker process (as a list: none while it restarts one), not its
        lag probe (quantum/app/lag_probe.py)."""
        assert self.proc is not None
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            pids = [int(p) for p in path.read_text().split()]
        except OSError:
            return []
        return [pid for pid in pids if "worker" in command_line(pid).split()]

    def worker_starts(self) -> int:
        """Worker processes started so far (under a supervisor: its starts and restarts)."""
        if not self.supervise:
            return self.starts
        return self.log_path.read_text(errors="replace").count("supervisor: worker pid ")

    def stop(self) -> None:
        self.expected_down = True
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Backtest:
    """A run on `settings`' broker under its topic prefix.

    workers: the agents per worker process (default: every pipeline agent in one worker).
    env: extra environment for the workers (configuration overrides, `QT_...`).
    supervise: run each worker under `quantum worker --supervise` (restarted when it exits
        or stalls; see quantum/app/supervisor.py).
    venue: "paper" (default) or "binance": which venue agent the default worker runs, and
        the workers' `QT_VENUE__KIND` (the Binance adapter needs its keys and, off the
        testnet, `QT_BINANCE_EXCHANGE__REST_URL` in `env`).
    """

    settings: Any
    out_dir: Path
    workers: Sequence[Sequence[str]] | None = None
    env: dict[str, str] = field(default_factory=dict)
    settle_timeout_s: float = 120.0
    supervise: bool = False
    commit_interval_s: float = 0.005
    engine: str = "lockstep"  # or "inprocess" (quantum/app/backtest/inprocess.py)
    engine_stats: Any = None  # the in-process engine's timings, after run()
    venue: str = "paper"
    processes: list[WorkerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        groups = self.workers or [pipeline_agents(self.venue)]
        env = self.settings.child_env(
            **{
                "QT_KAFKA__COMMIT_INTERVAL_S": str(self.commit_interval_s),
                "QT_VENUE__KIND": self.venue,
                **self.env,
            }
        )
        for i, names in enumerate(groups):
            REGISTRY.select(",".join(names))  # unknown names fail here, before anything starts
            self.processes.append(
                WorkerProcess(
                    tuple(names),
                    f"{APP_ID}-{i}",
                    env,
                    self.out_dir / "logs" / f"worker-{i}.log",
                    supervise=self.supervise,
                )
            )

    def readers(self) -> tuple[list[Reader], set[str]]:
        return readers_of_processes(self.settings, self.processes)

    def start(self) -> Quiescence:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        report = apply_topology(self.settings)
        if not report.ok:
            raise RuntimeError(f"topology drift:\n{report.render()}")
        for proc in self.processes:
            proc.start()
        readers, transactional = self.readers()
        return Quiescence(self.settings.kafka.bootstrap, readers, transactional=transactional)

    def feed(
        self,
        items: Iterable[Kline | RowError],
        quiescence: Quiescence,
        progress: Callable[[FeedStats], None] | None = None,
    ) -> FeedStats:
        feed = LockstepFeed(
            self.settings,
            quiescence,
            settle_timeout_s=self.settle_timeout_s,
            progress=progress,
            failed=self.dead_worker,
        )
        return feed.run(items)

    def dead_worker(self) -> str | None:
        """A worker that exited on its own (a crash): the run cannot settle."""
        for proc in self.processes:
            if proc.proc is not None and proc.proc.poll() is not None and not proc.expected_down:
                return (
                    f"worker {proc.agents} exited with {proc.proc.returncode}; see {proc.log_path}"
                )
        return None

    def stop(self) -> None:
        for proc in self.processes:
            proc.stop()

    def run(
        self,
        items: Iterable[Kline | RowError],
        progress: Callable[[FeedStats], None] | None = None,
    ) -> tuple[FeedStats, float]:
        """Start, feed everything, stop. Returns the feed's counts and the wall time."""
        if self.engine == "inprocess":
            if self.venue != "paper":  # a live adapter does I/O: it runs only in a worker
                raise ValueError(f"the in-process engine runs the paper venue, not {self.venue}")
            return self.run_inprocess(items, progress)
        if self.engine != "lockstep":
            raise ValueError(f"unknown engine {self.engine!r}; known: {', '.join(ENGINES)}")
        t0 = time.monotonic()
        try:
            quiescence = self.start()
            stats = self.feed(items, quiescence, progress)
        finally:
            self.stop()
        return stats, time.monotonic() - t0

    def run_inprocess(
        self,
        items: Iterable[Kline | RowError],
        progress: Callable[[FeedStats], None] | None = None,
    ) -> tuple[FeedStats, float]:
        """Every agent's core in this process (quantum/app/backtest/inprocess.py), under the
        configuration the workers would read (`run_settings`)."""
        from quantum.app.backtest.inprocess import InProcessEngine

        t0 = time.monotonic()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        report = apply_topology(self.settings)
        if not report.ok:
            raise RuntimeError(f"topology drift:\n{report.render()}")
        engine = InProcessEngine(
            run_settings(self.settings, self.env), agents=pipeline_agents(), progress=progress
        )
        stats = engine.run(items)
        self.engine_stats = engine.engine_stats
        return stats, time.monotonic() - t0


ENGINES = ("lockstep", "inprocess")


def run_settings(settings: Any, env: dict[str, str]) -> Any:
    """The composed Settings a worker of this run reads: its environment is
    `settings.child_env(**env)` (broker, registry, prefix, the run's `QT_...` overrides and
    `QT_CONFIG`), read here the same way, so both engines run one configuration."""
    from quantum.app.settings import Settings

    saved = dict(os.environ)
    child = settings.child_env(**env)  # (read before the environment is swapped)
    try:
        os.environ.clear()
        os.environ.update(child)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_record(backtest: Backtest, stats: FeedStats, wall_s: float) -> dict[str, Any]:
    """`run.json`: how the run went (wall-clock figures stay out of summary.json)."""
    run: dict[str, Any] = {"engine": backtest.engine, "bars": stats.bars, "steps": stats.steps}
    run["wall_s"] = round(wall_s, 2)
    run["bars_per_s"] = round(stats.bars / wall_s, 1) if wall_s else None
    es = backtest.engine_stats
    if es is not None:
        run["first_bar_s"] = None if es.first_bar_s is None else round(es.first_bar_s, 3)
        run["feed_write_s"] = round(es.write_s, 3)
        run["feed_read_s"] = round(es.read_s, 3)
        run["records_out"] = es.records_out
        run["agent_s"] = {k: round(v, 3) for k, v in sorted(es.agent_s.items())}
        run["deliveries"] = dict(sorted(es.deliveries.items()))
    return run
