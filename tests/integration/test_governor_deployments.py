"""The governor shell on the real broker, for the rules of issue 7 that need Kafka: two
deployments side by side, restarts under a lower cap, and commands dead-lettered for
their record timestamp or for contradicting the book.

Unlike tests/integration/test_governor_shell.py these shells keep the default
transactional.id and group: derived from the test's own topic prefix."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from agents.governor.audit import audit_decisions
from agents.governor.io import (
    CommandSender,
    committed_offset,
    end_offset,
    read_commands,
    read_decisions,
)
from agents.governor.model import (
    Clock,
    DecisionKind,
    DenyReason,
    Side,
    SlotFilled,
    SlotRequest,
)
from agents.governor.shell import GovernorShell
from quantum.app.settings import Settings
from quantum.dlq import read_dead_letters
from quantum.serde import AvroSerde
from topologies.apply import apply_topology
from topologies.declaration import PORTFOLIO, dlq_topic

pytestmark = pytest.mark.broker

K = DecisionKind


def _now_ms() -> int:
    return int(time.time() * 1000)


def _req(intent: str, symbol: str, t: int, score: float = 0.5) -> SlotRequest:
    return SlotRequest(intent, symbol, Side.LONG, Decimal("250.5"), score, t)


def _pump(shells: list[GovernorShell], timeout_s: float = 60.0) -> None:
    """Let each shell decide one batch in turn until every one has committed its topic's end;
    a shell fenced by another would raise GovernorFenced here."""
    ends = [end_offset(shell.settings) for shell in shells]
    deadline = time.monotonic() + timeout_s
    while any(shell._next_offset < end for shell, end in zip(shells, ends, strict=True)):
        assert time.monotonic() < deadline, [s._next_offset for s in shells]
        for shell, end in zip(shells, ends, strict=True):
            if shell._next_offset < end:
                msgs = shell.consumer.consume(num_messages=2, timeout=0.5)
                if msgs:
                    shell.process_batch(msgs)


def _with(settings: Settings, **governor: int) -> Settings:
    return settings.model_copy(update={"governor": settings.governor.model_copy(update=governor)})


def test_two_prefixed_governors_on_one_broker_both_commit(settings: Settings) -> None:
    first = settings
    second = settings.with_prefix(f"{settings.kafka.topic_prefix}second.")
    for s in (first, second):
        assert apply_topology(s).ok
        sender = CommandSender(s)
        for n in range(6):
            sender.send(_req(f"i{n}", f"S{n}USDT", _now_ms()))
        sender.flush()
    shells = [GovernorShell(s, instance=f"g{k}") for k, s in enumerate((first, second))]
    for shell in shells:
        shell.start()  # both fence nothing: their transactional.ids differ
    assert [shell.transactional_id for shell in shells] == [
        f"{first.kafka.topic_prefix}quantum-governor",
        f"{second.kafka.topic_prefix}quantum-governor",
    ]
    _pump(shells)  # interleaved: g0 commits, g1 commits, g0 commits again, ...
    for shell in shells:
        shell.close()
        assert shell.stats.transactions >= 3 and shell.stats.commands == 6
    for s in (first, second):
        assert committed_offset(s) == 6
        decided = [(d.decision.kind, d.decision.intent_id) for d in read_decisions(s)]
        assert decided == [(K.GRANTED, f"i{n}") for n in range(4)] + [
            (K.DENIED, f"i{n}") for n in range(4, 6)
        ]


def test_a_restart_under_a_lower_cap_says_so_once_and_denies_until_under(
    settings: Settings,
) -> None:
    wide = _with(settings, max_open_positions=3, active_slots_base=3)
    assert apply_topology(wide).ok
    serde = AvroSerde.from_settings(wide)
    sender = CommandSender(wide, serde=serde)
    t = _now_ms()
    for n in range(3):
        sender.send(_req(f"i{n}", f"S{n}USDT", t))
        sender.send(SlotFilled(f"f{n}", f"i{n}", f"S{n}USDT", t))
    sender.flush()
    shell = GovernorShell(wide, serde=serde, instance="wide")
    shell.start()
    _pump([shell])
    shell.close()

    narrow = _with(settings, max_open_positions=2, active_slots_base=2)
    sender.send(_req("x1", "X1USDT", t + 1))
    sender.flush()
    shell = GovernorShell(narrow, serde=serde, instance="narrow")
    shell.start()  # starts although 3 are open under a cap of 2 (and logs it)
    assert (shell.core.occupied, shell.core.config.max_open_positions) == (3, 2)
    _pump([shell])
    shell.close()
    sender.send(_req("x2", "X2USDT", t + 2))  # a second restart: nothing to announce
    sender.flush()
    shell = GovernorShell(narrow, serde=serde, instance="narrow-again")
    shell.start()
    _pump([shell])
    shell.close()

    logged = [d.decision for d in read_decisions(narrow, serde=serde)]
    tail = [(d.kind, d.deny_reason, d.max_open_positions) for d in logged[6:]]
    assert tail == [
        (K.CONFIG_CHANGED, None, 2),
        (K.DENIED, DenyReason.LIMIT_FULL, 2),
        (K.DENIED, DenyReason.LIMIT_FULL, 2),
    ]
    assert (logged[6].open_after, logged[6].active_slots) == (3, 2)
    report = audit_decisions(enumerate(logged))
    assert report.ok and report.config_changes == 1, report.render()


def test_skewed_blank_and_contradicting_commands_are_dead_lettered(settings: Settings) -> None:
    assert apply_topology(settings).ok
    serde = AvroSerde.from_settings(settings)
    sender = CommandSender(settings, serde=serde)
    t = _now_ms()
    sender.send(_req("a", "AUSDT", t))
    sender.send(Clock("micro", t * 1000))  # a producer writing microseconds
    sender.send(_req("", "BUSDT", t))  # blank intent id
    sender.send(SlotFilled("f-a", "a", "ZUSDT", t))  # a's fill naming another symbol
    sender.send(Clock("fine", t + 60_000))  # a minute ahead: within the 5 min skew
    sender.send(_req("b", "BUSDT", t + 60_000))
    sender.flush()
    shell = GovernorShell(settings, serde=serde, instance="g")
    shell.start()
    _pump([shell])
    assert shell.core.now_ms == t + 60_000  # the clock never saw the skewed command
    shell.close()

    letters = list(read_dead_letters(settings, settings.topic(dlq_topic(PORTFOLIO)), serde=serde))
    assert [
        (x.value["source_offset"], x.value["error_message"].split(":")[0]) for x in letters
    ] == [
        (1, "EVENT_TIME_SKEW"),
        (2, "EMPTY_ID"),
        (3, "SYMBOL_MISMATCH"),
    ]
    decided = [(d.decision.kind, d.decision.intent_id) for d in read_decisions(settings)]
    assert decided == [(K.GRANTED, "a"), (K.GRANTED, "b")]
    # readers of the log agree on the decode-time poison (the core's own refusal is the
    # governor's: a reader sees a well-formed fill)
    assert read_commands(settings, serde=serde)[1] == [1, 2]
    # a restart replays the same log to the same state
    again = GovernorShell(settings, serde=serde, instance="g2")
    again.start()
    assert (again.core.now_ms, again.core.reserved_count) == (t + 60_000, 2)
    again.close()
