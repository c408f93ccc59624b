"""The governor's pipelined loop (`GovernorShell.run`) on the real broker: while one
transaction commits in the committer thread the next batch is already decided. When
that commit fails, the decided-ahead batch must vanish with the aborted one and both be
decided again from the committed state: every command decided once, none lost."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from agents.governor.io import CommandSender, committed_offset, read_decisions
from agents.governor.model import FINAL_KINDS, Side, SlotRequest
from agents.governor.shell import GovernorShell
from quantum.app.settings import Settings
from quantum.polling import wait_until
from quantum.serde import AvroSerde
from topologies.apply import apply_topology

pytestmark = pytest.mark.broker

T0 = 1_767_225_600_000
REQUESTS = 400


class _FailingCommits:
    """The real producer, except that chosen commit_transaction calls fail (abortable)."""

    def __init__(self, producer: Any, fail_on: set[int]) -> None:
        self._producer = producer
        self._fail_on = fail_on
        self.commits = 0
        self.failed = 0

    def commit_transaction(self, *args: Any) -> None:
        self.commits += 1
        if self.commits in self._fail_on:
            self.failed += 1
            raise KafkaException(
                KafkaError(KafkaError._TRANSPORT, "injected", txn_requires_abort=True)
            )
        self._producer.commit_transaction(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


@pytest.fixture
def gov_settings(settings: Settings) -> Settings:
    assert apply_topology(settings).ok
    shell = settings.governor_shell.model_copy(
        update={
            "transactional_id": f"{settings.kafka.topic_prefix}gov",
            "group_id": f"{settings.kafka.topic_prefix}gov",
            "commands_per_transaction": 20,
            "snapshot_every": 50,
        }
    )
    return settings.model_copy(update={"governor_shell": shell})


def test_a_failed_background_commit_loses_and_repeats_nothing(gov_settings: Settings) -> None:
    s = gov_settings
    serde = AvroSerde.from_settings(s)
    sender = CommandSender(s, serde=serde)
    for i in range(REQUESTS):
        sender.send(
            SlotRequest(f"i{i}", f"S{i % 40}USDT", Side.LONG, Decimal(10), (i % 7) / 7, T0 + i)
        )
    sender.flush()

    shell = GovernorShell(s, serde=serde, instance="flaky")
    flaky = _FailingCommits(shell.producer, fail_on={2, 5, 6})
    shell.producer = flaky  # type: ignore[assignment]
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            shell.run(stop.is_set)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(
            lambda: bool(errors) or committed_offset(s) >= REQUESTS,
            120,
            "the governor to commit every request",
            poll_s=0.05,
        )
    finally:
        stop.set()
        thread.join(60)
        shell.close()
    assert not errors, errors
    assert flaky.failed == 3

    decisions = [d.decision for d in read_decisions(s, serde=serde)]
    finals = [d.intent_id for d in decisions if d.kind in FINAL_KINDS]
    assert sorted(finals) == sorted(f"i{i}" for i in range(REQUESTS))  # once each
    ids = [d.decision_id for d in decisions]
    assert len(ids) == len(set(ids))
    assert shell.stats.commands == REQUESTS  # only committed work is counted
