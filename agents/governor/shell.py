"""The governor's exactly-once shell: consume the portfolio topic, decide, produce, commit.

Why a confluent-kafka transactional loop and not Faust's `exactly_once`: in a
SIGKILL test on this machine kind Faust's exactly-once mode left 412 duplicated
outputs visible to a read_committed reader (FACTS.md), while this loop, killed
the same way, left none (tests/chaos/test_governor_chaos.py shows it again).

One transaction holds, for a batch of commands:
  * the decisions (portfolio.decisions), each stamped with its input offset,
  * dead letters for undecodable commands (portfolio.dlq),
  * now and then a state snapshot (portfolio.governor-snapshots, compacted),
  * the input offset commit (send_offsets_to_transaction).
So a crash at any instant either shows all of a batch's effects or none.

State is not trusted across a crash: on start (and after any aborted
transaction) the core is rebuilt from the last committed snapshot plus a
replay of the committed portfolio prefix through the same pure core, which
yields exactly the state that produced the committed decisions.

Fencing: every instance of a deployment uses the same transactional.id (derived from
the topic prefix, so runs under other prefixes never fence it); `init_transactions`
of a newer instance bumps the producer epoch, aborts the older one's open
transaction, and makes every later produce or commit of the older instance
fail with a fatal fenced error. The older instance then exits (exit code 3)
without having committed anything after the newer one started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from agents.governor.codec import DECISION_SCHEMA, decision_to_avro
from agents.governor.config import GovernorSettings
from agents.governor.core import GovernorCore
from agents.governor.io import decode_command, record_timestamp
from agents.governor.model import Command, Decision
from quantum.dlq import DLQ_SCHEMA, dead_letter_value
from quantum.errors import PoisonRecord
from quantum.kafka_util import high_watermarks, read_range
from quantum.serde import AvroSerde
from topologies.declaration import (
    GOVERNOR_SNAPSHOTS,
    PORTFOLIO,
    PORTFOLIO_DECISIONS,
    dlq_topic,
)

log = logging.getLogger(__name__)

AGENT_NAME = "governor"
SNAPSHOT_KEY = b"governor"
SNAPSHOT_VERSION = 1
TXN_TIMEOUT_MS = 30_000
EXIT_FENCED = 3
SLOW_TRANSACTION_S = 0.05  # logged with its phases: where a latency tail comes from


class GovernorFenced(RuntimeError):
    """A newer governor instance took over; this one must stop and commit nothing."""


@dataclass
class BatchStats:
    commands: int = 0
    decisions: int = 0
    dead_letters: int = 0
    transactions: int = 0


class GovernorShell:
    """Runs the pure `GovernorCore` inside Kafka transactions. One per deployment."""

    def __init__(
        self,
        settings: GovernorSettings,
        *,
        serde: AvroSerde | None = None,
        instance: str = "governor",
    ) -> None:
        self.settings = settings
        self.shell = settings.governor_shell
        self.serde = serde or AvroSerde.from_settings(settings)
        self.instance = instance
        self.portfolio = settings.topic(PORTFOLIO)
        self.decisions_topic = settings.topic(PORTFOLIO_DECISIONS)
        self.snapshots_topic = settings.topic(GOVERNOR_SNAPSHOTS)
        self.dlq = dlq_topic(self.portfolio)
        prefix = settings.kafka.topic_prefix
        self.transactional_id = self.shell.transactional_id_for(prefix)
        self.group_id = self.shell.group_id_for(prefix)
        self.stats = BatchStats()  # committed work only
        self._pending = BatchStats()  # the open transaction's
        self.core = GovernorCore(settings.governor)
        self._next_offset = 0
        self._since_snapshot = 0
        bootstrap = settings.kafka.bootstrap
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "transactional.id": self.transactional_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 1,
                "transaction.timeout.ms": TXN_TIMEOUT_MS,
                "message.max.bytes": 16 * 1024 * 1024,
                "compression.type": "lz4",
            }
        )
        # assign(), not subscribe(): one partition, and no wait for a dead member's session
        # timeout after a SIGKILL (FACTS.md). Fencing rests on the transactional.id.
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 5,
                "enable.partition.eof": False,
            }
        )

    # ------------------------------------------------------------------ start-up

    def start(self) -> None:
        """Fence older instances, then rebuild state from the committed log."""
        try:
            self.producer.init_transactions(60)
        except KafkaException as exc:
            raise self._translate(exc) from exc
        self._restore()

    def _committed_offset(self) -> int:
        tp = TopicPartition(self.portfolio, 0)
        [committed] = self.consumer.committed([tp], timeout=30)
        return committed.offset if committed.offset >= 0 else 0

    def _restore(self) -> None:
        committed = self._committed_offset()
        snapshot = self._latest_snapshot()
        config = self.settings.governor
        then = None
        if snapshot is not None and snapshot["input_offset"] <= committed:
            # Replay under the config the committed decisions were made with; then switch,
            # and the core announces other limits once (CONFIG_CHANGED) in the live log.
            then = GovernorCore.snapshot_config(snapshot["core"]) or config
            self.core = GovernorCore.from_snapshot(then, snapshot["core"])
            start = snapshot["input_offset"]
        else:
            self.core = GovernorCore(config)
            start = 0
        replayed = self._replay(start, committed)
        self.core.reconfigure(config)
        # With no snapshot, or other limits than the snapshot's, write one in the first
        # transaction: it then commits together with the CONFIG_CHANGED, so a crash after
        # it never replays under the old limits and announces them a second time.
        fresh_snapshot = then != config
        if self.core.occupied > config.max_open_positions:
            log.warning(
                "%s: restored occupancy %d is above max_open_positions=%d; new entries are "
                "denied until it is under (announced as CONFIG_CHANGED)",
                self.instance,
                self.core.occupied,
                config.max_open_positions,
            )
        self._next_offset = committed
        self._since_snapshot = self.shell.snapshot_every if fresh_snapshot else replayed
        self.consumer.assign([TopicPartition(self.portfolio, 0, committed)])
        log.info(
            "%s restored: snapshot@%s, replayed %d commands, resuming at offset %d "
            "(open=%d reserved=%d)",
            self.instance,
            None if snapshot is None else snapshot["input_offset"],
            replayed,
            committed,
            self.core.open_count,
            self.core.reserved_count,
        )

    def _latest_snapshot(self) -> dict | None:
        high = high_watermarks(self.settings.kafka.bootstrap, self.snapshots_topic, [0], 30)[0]
        latest: bytes | None = None
        for msg in self._read(self.snapshots_topic, 0, high):
            if msg.key() == SNAPSHOT_KEY:
                latest = msg.value()
        if latest is None:
            return None
        data = json.loads(zlib.decompress(latest))
        if data.get("v") != SNAPSHOT_VERSION:
            log.warning("ignoring snapshot of version %s; replaying from 0", data.get("v"))
            return None
        return data

    def _replay(self, start: int, end: int) -> int:
        """Feed committed commands [start, end) to the core; their decisions are already out."""
        count = 0
        for msg in self._read(self.portfolio, start, end):
            command = self._decode_or_none(msg)
            if command is not None:
                # A command the core refused was dead-lettered when first decided; it
                # changed nothing then, and changes nothing now.
                with contextlib.suppress(PoisonRecord):
                    self.core.handle(command)
            count += 1
        return count

    def _read(self, topic: str, start: int, end: int):
        return read_range(
            self.settings.kafka.bootstrap,
            topic,
            {0: (start, end)},
            group_id=f"{self.group_id}-restore",
        )

    # ------------------------------------------------------------------ the loop

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> BatchStats:
        """Decide until `should_stop()`; returns counts. Raises GovernorFenced if fenced."""
        self.start()
        batch_size = self.shell.commands_per_transaction
        wait_s = self.shell.max_batch_wait_ms / 1000
        while not should_stop():
            msgs = self.consumer.consume(num_messages=batch_size, timeout=max(wait_s, 0.001))
            msgs = [m for m in msgs if not _is_soft_error(m)]
            if msgs:
                self.process_batch(msgs)
        return self.stats

    def process_batch(self, msgs: list[Message]) -> None:
        """Decide `msgs` in one transaction; `stats` counts them only once it committed."""
        self._pending = BatchStats()
        t0 = time.perf_counter()
        try:
            self.producer.begin_transaction()
            for msg in msgs:
                self._decide(msg)
            self._since_snapshot += len(msgs)
            snapshot = self._since_snapshot >= self.shell.snapshot_every
            if snapshot:
                self._produce_snapshot()
            t1 = time.perf_counter()
            # Flushing first is measurably faster here: send_offsets_to_transaction with
            # records still queued took ~22 ms against ~1 ms after a flush (bench/governor.py).
            self.producer.flush(30)
            t2 = time.perf_counter()
            offsets = [TopicPartition(self.portfolio, 0, self._next_offset)]
            self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), 30
            )
            t3 = time.perf_counter()
            self.producer.commit_transaction(30)
            t4 = time.perf_counter()
            if t4 - t0 > SLOW_TRANSACTION_S:
                log.warning(
                    "%s: slow transaction %.0f ms for %d commands (decide %.0f%s, flush %.0f, "
                    "offsets %.0f, commit %.0f ms)",
                    self.instance,
                    (t4 - t0) * 1000,
                    len(msgs),
                    (t1 - t0) * 1000,
                    " incl. snapshot" if snapshot else "",
                    (t2 - t1) * 1000,
                    (t3 - t2) * 1000,
                    (t4 - t3) * 1000,
                )
            self.stats.commands += self._pending.commands
            self.stats.decisions += self._pending.decisions
            self.stats.dead_letters += self._pending.dead_letters
            self.stats.transactions += 1
        except KafkaException as exc:
            error = self._translate(exc)
            if isinstance(error, GovernorFenced):
                raise error from exc
            log.warning("transaction failed (%s); aborting and rebuilding state", exc)
            self._abort_and_recover()

    def _decide(self, msg: Message) -> None:
        if msg.error():
            raise KafkaException(msg.error())
        command = self._decode_or_none(msg, route_to_dlq=True)
        self._next_offset = msg.offset() + 1
        self._pending.commands += 1
        if command is None:
            return
        try:
            decisions = self.core.handle(command)
        except PoisonRecord as exc:  # e.g. SYMBOL_MISMATCH: the core changed nothing
            self._produce_dead_letter(msg, exc)
            return
        for decision in decisions:
            self._produce_decision(decision, msg.offset())

    def _decode_or_none(self, msg: Message, *, route_to_dlq: bool = False) -> Command | None:
        """A poison command is dead-lettered (in the same transaction) and yields None."""
        try:
            return decode_command(
                self.serde,
                self.portfolio,
                msg.value() or b"",
                record_timestamp_ms=record_timestamp(msg),
                max_event_skew_ms=self.core.config.max_event_skew_ms,  # replay: as decided
            )
        except PoisonRecord as exc:
            if route_to_dlq:
                self._produce_dead_letter(msg, exc)
            return None

    def _produce_decision(self, decision: Decision, input_offset: int) -> None:
        value = self.serde.encode(
            self.decisions_topic,
            decision_to_avro(decision, input_offset),
            schema_file=DECISION_SCHEMA,
        )
        key = (decision.symbol or "").encode()
        self.producer.produce(self.decisions_topic, value=value, key=key)
        self._pending.decisions += 1

    def _produce_dead_letter(self, msg: Message, exc: Exception) -> None:
        value = dead_letter_value(msg, exc, agent=AGENT_NAME)
        self.producer.produce(
            self.dlq,
            key=msg.key(),
            value=self.serde.encode(self.dlq, value, schema_file=DLQ_SCHEMA),
        )
        self._pending.dead_letters += 1
        log.warning("dead-lettered %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), exc)

    def _produce_snapshot(self) -> None:
        payload = {
            "v": SNAPSHOT_VERSION,
            "input_offset": self._next_offset,
            "core": self.core.to_snapshot(),
        }
        blob = zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 1)
        self.producer.produce(self.snapshots_topic, key=SNAPSHOT_KEY, value=blob)
        self._since_snapshot = 0

    def _abort_and_recover(self) -> None:
        try:
            self.producer.abort_transaction(30)
        except KafkaException as exc:
            error = self._translate(exc)
            if isinstance(error, GovernorFenced):
                raise error from exc
            raise
        self._restore()

    def _translate(self, exc: KafkaException) -> Exception:
        err: KafkaError = exc.args[0]
        if err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED) or (
            err.fatal() and "fenced" in err.str().lower()
        ):
            return GovernorFenced(f"{self.instance}: fenced by a newer governor ({err.str()})")
        if err.fatal():
            return RuntimeError(f"{self.instance}: fatal Kafka error: {err.str()}")
        return exc

    def close(self) -> None:
        """Leave without committing anything more (a fenced producer cannot flush)."""
        try:
            self.consumer.close()
        finally:
            try:
                self.producer.flush(5)
            except KafkaException as exc:
                log.info("%s: producer closed with %s", self.instance, exc)


def _is_soft_error(msg: Message) -> bool:
    err = msg.error()
    return err is not None and err.code() == KafkaError._PARTITION_EOF


def run(
    settings: GovernorSettings, stop: Callable[[], bool], instance: str = "governor"
) -> BatchStats:
    """The governor's entry point for a worker (agents/governor/spec.py): decide until
    `stop()`; raises GovernorFenced when a newer instance took over."""
    shell = GovernorShell(settings, instance=instance)
    try:
        return shell.run(stop)
    finally:
        shell.close()
