"""Chaos on the real broker: the governor is SIGKILLed again and again, and a second
instance is started beside a running one, while several producers load the portfolio topic.

Afterwards a read_committed reader checks the whole history with the audit checker:
the invariant at every offset, exactly one final decision per request, no duplicate
decision. The checker itself is shown to fail on violating logs in
tests/unit/test_portfolio_audit.py, so a pass here means something.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from agents.governor.io import (
    CommandSender,
)
from agents.governor.model import (
    Clock,
    DecisionKind,
    Regime,
    ReleaseReason,
    SetRegime,
    Side,
    SlotFilled,
    SlotRelease,
    SlotRequest,
)
from agents.governor.shell import EXIT_FENCED
from quantum.app.settings import Settings
from tests.chaos.governor_world import (
    audit_history,
    governor_env,
    spawn,
    spawn_governor,
    wait_caught_up,
)
from topologies.apply import apply_topology

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

PRODUCERS = 3
REQUESTS_PER_PRODUCER = 1_700
SYMBOLS = 60
KILLS = 6


def _scripted_tail(settings: Settings, now_ms: int) -> dict:
    """After the random load (whose rotations and expiries depend on timing), a scripted
    sequence whose decisions are known: a clock past every TTL empties the reservations,
    by-symbol closes empty the book, ten fresh symbols are granted and nine filled, a
    strong request rotates the weakest out, and a last clock expires the unfilled tenth.
    Event times stay within the governor's max_event_skew_ms (5 min) of the wall clock."""
    sender = CommandSender(settings)
    t = now_ms + 60_000  # past every TTL and rotation timeout (30 s here)
    sender.send(Clock("tail-clock-1", t))
    for i in range(SYMBOLS):
        symbol = f"S{i:03d}USDT"
        close = ReleaseReason.POSITION_CLOSED
        sender.send(SlotRelease(f"tail-close-{symbol}", symbol, None, close, t))
    sender.send(SetRegime("tail-regime", Regime.TREND_STRONG, t))
    intents = [f"tail-{i}" for i in range(10)]
    for i, intent in enumerate(intents):
        score = 0.10 + i / 100  # tail-0 is the weakest
        sender.send(SlotRequest(intent, f"TAIL{i}USDT", Side.LONG, Decimal(100), score, t + 1))
    for i, intent in enumerate(intents[:9]):
        sender.send(SlotFilled(f"tail-fill-{i}", intent, f"TAIL{i}USDT", t + 2))
    sender.send(SlotRequest("tail-strong", "TAILXUSDT", Side.LONG, Decimal(100), 0.99, t + 3))
    sender.send(Clock("tail-clock-2", t + 40_000))
    sender.flush()
    return {"filled": intents[:9], "expires": intents[9], "weakest": "TAIL0USDT"}


def test_governor_survives_sigkills_and_a_second_instance(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"governor": settings.governor.model_copy(update={"max_open_positions": 10})}
    )
    assert apply_topology(settings).ok
    env = governor_env(settings)
    rng = random.Random(20261125)
    logs = tmp_path
    governor = spawn_governor("g0", env, logs / "governor.log")
    responder = spawn(
        ["-m", "tests.chaos.load", "responder", "--seed", "99"], env, logs / "responder.log"
    )
    producers = [
        spawn(
            [
                "-m",
                "tests.chaos.load",
                "producer",
                "--seed",
                str(seed),
                "--requests",
                str(REQUESTS_PER_PRODUCER),
                "--symbols",
                str(SYMBOLS),
                "--rate",
                "45",
            ],
            env,
            logs / f"producer{seed}.log",
        )
        for seed in range(1, PRODUCERS + 1)
    ]

    kills = 0
    fenced_exit: int | None = None
    generation = 0
    while kills < KILLS or any(p.poll() is None for p in producers):
        # A random moment: the governor must not exit on its own meanwhile.
        try:
            code = governor.wait(timeout=rng.uniform(2.5, 6.0))
            raise AssertionError(f"governor exited by itself with {code}; see {logs}")
        except subprocess.TimeoutExpired:
            pass
        generation += 1
        if kills == 2 and fenced_exit is None:
            # A second governor beside the running one: exactly one may go on committing.
            second = spawn_governor(f"g{generation}", env, logs / "governor.log")
            fenced_exit = governor.wait(timeout=90)
            governor = second
            continue
        governor.send_signal(signal.SIGKILL)
        governor.wait(timeout=30)
        kills += 1
        governor = spawn_governor(f"g{generation}", env, logs / "governor.log")

    for p in producers:
        assert p.wait(timeout=120) == 0, f"producer failed; see {logs}"
    wait_caught_up(settings)
    responder.send_signal(signal.SIGTERM)
    assert responder.wait(timeout=60) == 0, f"responder failed; see {logs}"
    scripted = _scripted_tail(settings, int(time.time() * 1000))
    wait_caught_up(settings)
    governor.send_signal(signal.SIGTERM)
    assert governor.wait(timeout=60) == 0

    report, logged, requests, poison = audit_history(settings)
    print(report.render())
    print(f"kills={kills} fenced_exit={fenced_exit} requests={len(requests)} logs={logs}")

    assert fenced_exit == EXIT_FENCED, "the older governor was not fenced"
    assert kills >= 5
    assert not poison
    assert len({r.intent_id for r in requests}) >= PRODUCERS * REQUESTS_PER_PRODUCER
    assert len({r.symbol for r in requests}) >= 50
    assert report.ok, report.render()
    assert not report.missing_decisions and not report.duplicate_finals
    ids = Counter(d.decision.decision_id for d in logged)
    assert max(ids.values()) == 1, f"duplicated decisions: {ids.most_common(3)}"
    assert report.grants > 0 and report.fills > 0 and report.releases > 0
    # The scripted tail, after the random load, decided as the rules say.
    kinds: dict[str, list[DecisionKind]] = {}
    for d in logged:
        if d.decision.intent_id:
            kinds.setdefault(d.decision.intent_id, []).append(d.decision.kind)
    assert report.rotations > 0 and report.expiries > 0
    for intent in scripted["filled"]:
        assert kinds[intent][:2] == [DecisionKind.GRANTED, DecisionKind.FILLED], kinds[intent]
    assert kinds[scripted["expires"]] == [DecisionKind.GRANTED, DecisionKind.EXPIRED]
    rotated = [
        d.decision
        for d in logged
        if d.decision.kind == DecisionKind.ROTATE_OUT and d.decision.symbol == scripted["weakest"]
    ]
    assert rotated, "the strong request did not rotate the weakest open position out"
