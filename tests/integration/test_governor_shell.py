"""The governor's transactional shell on the real broker, in-process and step by step:
decisions out, poison to the DLQ inside the transaction, restore after restart, fencing.
(The SIGKILL version of these is tests/chaos/test_governor_chaos.py.)"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from agents.governor.codec import command_to_avro
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
    Halt,
    Regime,
    ReleaseReason,
    SetRegime,
    Side,
    SlotFilled,
    SlotRelease,
    SlotRequest,
)
from agents.governor.shell import GovernorFenced, GovernorShell
from quantum.app.settings import Settings
from quantum.dlq import read_dead_letters
from quantum.serde import AvroSerde
from topologies.apply import apply_topology
from topologies.declaration import PORTFOLIO, dlq_topic

pytestmark = pytest.mark.broker

T0 = 1_767_225_600_000


def _req(intent: str, symbol: str, score: float = 0.5, t: int = T0) -> SlotRequest:
    return SlotRequest(intent, symbol, Side.LONG, Decimal("250.5"), score, t)


def _pump(shell: GovernorShell, settings: Settings, timeout_s: float = 60.0) -> None:
    """Run batches until everything in the portfolio topic is decided and committed."""
    end = end_offset(settings)
    deadline = time.monotonic() + timeout_s
    while shell._next_offset < end:
        assert time.monotonic() < deadline, f"stuck at {shell._next_offset} of {end}"
        msgs = shell.consumer.consume(num_messages=50, timeout=0.5)
        if msgs:
            shell.process_batch(msgs)


@pytest.fixture
def gov_settings(settings: Settings) -> Settings:
    assert apply_topology(settings).ok
    config = settings.governor.model_copy(
        update={"max_open_positions": 3, "active_slots_base": 2, "active_slots_trend_strong": 3}
    )
    shell = settings.governor_shell.model_copy(
        update={"transactional_id": f"{settings.kafka.topic_prefix}gov", "snapshot_every": 4}
    )
    return settings.model_copy(update={"governor": config, "governor_shell": shell})


def test_decisions_poison_and_restore(gov_settings: Settings) -> None:
    s = gov_settings
    serde = AvroSerde.from_settings(s)
    sender = CommandSender(s, serde=serde)
    for cmd in (
        _req("i1", "BTCUSDT", 0.2),
        _req("i2", "ETHUSDT", 0.3),
        _req("i3", "SOLUSDT", 0.9),  # base regime: 2 slots, full, nothing open to rotate
        SlotFilled("f1", "i1", "BTCUSDT", T0 + 1),
        SlotFilled("f2", "i2", "ETHUSDT", T0 + 1),
    ):
        sender.send(cmd)
    sender.send_raw(b"\x00\x00\x00\x00\x01 not an avro body")
    poisoned = command_to_avro(_req("i9", "XRPUSDT"))
    branch, body = poisoned["command"]  # union branch in fastavro's (name, record) form
    poisoned["command"] = (branch, {**body, "notional": "NaN"})
    sender.send_raw(serde.encode(s.topic(PORTFOLIO), poisoned, schema_file="portfolio.avsc"))
    sender.flush()

    first = GovernorShell(s, serde=serde, instance="first")
    first.start()
    _pump(first, s)
    first.close()
    assert (first.stats.commands, first.stats.decisions, first.stats.dead_letters) == (7, 5, 2)

    kinds = [(d.decision.kind, d.decision.intent_id) for d in read_decisions(s, serde=serde)]
    assert kinds == [
        (DecisionKind.GRANTED, "i1"),
        (DecisionKind.GRANTED, "i2"),
        (DecisionKind.DENIED, "i3"),
        (DecisionKind.FILLED, "i1"),
        (DecisionKind.FILLED, "i2"),
    ]
    letters = list(read_dead_letters(s, s.topic(dlq_topic(PORTFOLIO)), serde=serde))
    assert [letter.value["source_offset"] for letter in letters] == [5, 6]
    assert letters[0].value["error_class"] == "DecodeError"
    assert "notional" in letters[1].value["error_message"]
    assert committed_offset(s) == 7
    # Readers of the log call the same records poison as the governor did.
    assert read_commands(s, serde=serde)[1] == [5, 6]

    # A new instance rebuilds the same state from snapshot + committed log.
    sender.send(_req("i1", "BTCUSDT"))  # duplicate: no new decision
    sender.send(_req("i4", "ADAUSDT", 0.95))  # full (2 open): rotate out the weakest (i1)
    sender.send(SlotRelease("r1", "BTCUSDT", None, ReleaseReason.ROTATED_OUT, T0 + 5))
    sender.send(SetRegime("g1", Regime.TREND_STRONG, T0 + 6))
    sender.send(Halt("h1", "drawdown", T0 + 7))
    sender.send(_req("i5", "DOGEUSDT", 0.5, T0 + 8))
    sender.send(Clock("c1", T0 + 10**9))
    sender.flush()
    second = GovernorShell(s, serde=serde, instance="second")
    second.start()
    assert (second.core.open_count, second.core.reserved_count) == (2, 0)
    _pump(second, s)
    second.close()

    later = [d.decision for d in read_decisions(s, serde=serde)][5:]
    assert [(d.kind, d.intent_id) for d in later[:3]] == [
        (DecisionKind.ROTATE_OUT, "i1"),
        (DecisionKind.RELEASED, "i1"),
        (DecisionKind.GRANTED, "i4"),
    ]
    assert later[-2].kind == DecisionKind.DENIED and later[-2].deny_reason == DenyReason.HALTED
    assert later[-1].kind == DecisionKind.EXPIRED and later[-1].intent_id == "i4"


def test_a_second_instance_fences_the_first(gov_settings: Settings) -> None:
    s = gov_settings
    serde = AvroSerde.from_settings(s)
    sender = CommandSender(s, serde=serde)
    for i in range(5):
        sender.send(_req(f"i{i}", f"S{i}USDT"))
    sender.flush()

    old = GovernorShell(s, serde=serde, instance="old")
    old.start()
    msgs: list = []
    deadline = time.monotonic() + 30
    while len(msgs) < 5 and time.monotonic() < deadline:
        msgs += old.consumer.consume(num_messages=5, timeout=0.5)
    assert len(msgs) == 5

    new = GovernorShell(s, serde=serde, instance="new")
    new.start()  # init_transactions bumps the epoch: `old` can no longer commit
    with pytest.raises(GovernorFenced):
        old.process_batch(msgs)
    assert old.stats.commands == old.stats.decisions == 0  # nothing of it committed
    _pump(new, s)
    new.close()

    decided = [d.decision.intent_id for d in read_decisions(s, serde=serde)]
    assert decided == [f"i{i}" for i in range(5)]  # each exactly once, by `new`
