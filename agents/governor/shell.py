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

Throughput (docs/governor-performance.md): a batch is decided and encoded before its
transaction opens, and its records go out in one produce_batch per topic; while a
committer thread opens the transaction, publishes, flushes and commits it, the commands
arriving meanwhile are decided, to be handed over only after that commit succeeded.

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
import queue
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from agents.governor.codec import DECISION_SCHEMA, decision_to_avro
from agents.governor.config import GovernorSettings, GovernorShellSettings
from agents.governor.core import GovernorCore
from agents.governor.io import decode_command, record_timestamp
from agents.governor.model import Command
from quantum.dlq import DLQ_SCHEMA, dead_letter_value
from quantum.errors import PoisonRecord
from quantum.exit_status import exit_for_environment
from quantum.gc_freeze import GcFreezer, freeze_survivors
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
GIL_SWITCH_INTERVAL_S = 0.0005  # while run() is deciding (see there), process-wide
POLL_WHILE_COMMITTING_S = 0.001  # how often run() looks whether the commit is over


def producer_config(bootstrap: str, transactional_id: str) -> dict[str, object]:
    """The transactional producer of the loop (bench/governor.py's bare loop uses it too)."""
    return {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 1,
        "transaction.timeout.ms": TXN_TIMEOUT_MS,
        "message.max.bytes": 16 * 1024 * 1024,
        "compression.type": "lz4",
    }


def consumer_config(bootstrap: str, group_id: str) -> dict[str, object]:
    """The read_committed input consumer of the loop (and of the bench's bare loop)."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 5,
        "enable.partition.eof": False,
    }


def snapshot_due(since: int, remembered: int, conf: GovernorShellSettings) -> bool:
    """After `snapshot_every` commands, and not before one command per
    `1 / snapshot_every_per_entry` entries the snapshot would hold: writing a snapshot costs
    O(entries), so this keeps its cost per command constant as the remembered state grows
    (and a restart replays at most max(snapshot_every, per_entry * entries) commands)."""
    return since >= conf.snapshot_every and since >= conf.snapshot_every_per_entry * remembered


class GovernorFenced(RuntimeError):
    """A newer governor instance took over; this one must stop and commit nothing."""


@dataclass
class BatchStats:
    commands: int = 0
    decisions: int = 0
    dead_letters: int = 0
    transactions: int = 0


_Decoded = tuple[Message, Command | PoisonRecord]  # a record and what it decodes to


@dataclass
class _Batch:
    """One transaction's worth of output, encoded and ready for `produce_batch`."""

    commands: int
    decisions: list[dict[str, object]] = field(default_factory=list)
    dead_letters: list[dict[str, object]] = field(default_factory=list)
    snapshot: bytes | None = None
    next_offset: int = 0  # the input offset this transaction commits
    prepare_s: float = 0.0
    published_at: float = 0.0


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
        self._in_transaction = False
        # Opens, publishes, flushes, sends the offsets and commits each batch while the next
        # one is prepared (run()); never two transactional calls at once.
        self._committer = _Committer(self._publish_and_commit, name=f"{instance}-commit")
        self._group_metadata = None
        self.core = GovernorCore(settings.governor)
        self._next_offset = 0
        self._since_snapshot = 0
        self._snapshot_now = False  # the next transaction carries a snapshot, whatever the count
        self._gc = GcFreezer(self.shell.gc_freeze_every)
        bootstrap = settings.kafka.bootstrap
        self.producer = Producer(producer_config(bootstrap, self.transactional_id))
        # assign(), not subscribe(): one partition, and no wait for a dead member's session
        # timeout after a SIGKILL (FACTS.md). Fencing rests on the transactional.id.
        self.consumer = Consumer(consumer_config(bootstrap, self.group_id))

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
        self._since_snapshot = replayed
        self._snapshot_now = fresh_snapshot
        if self._gc.every:
            freeze_survivors(2)  # the rebuilt state is long-lived: out of the collector's way
        self.consumer.assign([TopicPartition(self.portfolio, 0, committed)])
        # Read here, not in the committer thread while this one consumes.
        self._group_metadata = self.consumer.consumer_group_metadata()
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
        """Decide until `should_stop()`; returns counts. Raises GovernorFenced if fenced.

        Two stages overlap: while one transaction is opened, published, flushed, its
        offsets sent and it is committed (in the committer thread, mostly blocked in
        librdkafka without the GIL), the commands arriving meanwhile (up to
        `commands_per_transaction`) are decoded, decided and encoded here, as they come.
        They are handed over once that commit succeeded; if it fails instead, they are
        dropped with the rest of the state,
        which is rebuilt from the committed log (`_restore`), as after any abort.
        """
        self.start()
        limit = self.shell.commands_per_transaction
        wait_s = max(self.shell.max_batch_wait_ms / 1000, 0.001)
        batch: _Batch | None = None  # decided, not yet published
        committing = False  # a published batch is being committed by the committer
        # The committer thread needs the GIL for a moment between its librdkafka calls;
        # with the default 5 ms switch interval it could wait that long for this thread.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, GIL_SWITCH_INTERVAL_S))
        try:
            while not should_stop():
                try:
                    room = limit - (0 if batch is None else batch.commands)
                    if committing:
                        if room > 0 and not self._committer.finished() and not self._overdue():
                            batch = self._take(room, POLL_WHILE_COMMITTING_S, batch)
                            continue
                        self._wait_for_commit()
                        committing = False
                        self._committer.outcome()  # the last transaction's, raised here
                    elif batch is None:
                        batch = self._take(limit, wait_s, None)
                    if batch is not None:
                        self._committer.start(batch)  # publishes it, then commits
                        committing, batch = True, None
                except KafkaException as exc:
                    batch = None
                    if committing:
                        self._settle_commit()  # never abort while a commit is in flight
                        committing = False
                    self._fail(exc)
        finally:
            sys.setswitchinterval(switch_interval)
            if committing:
                self._settle_commit()
        return self.stats

    def process_batch(self, msgs: list[Message]) -> None:
        """Decide `msgs` in one transaction; `stats` counts them only once it committed."""
        try:
            batch = self._prepare(self._decode(msgs), None)
            if batch is not None:
                self._publish(batch)
                self._commit(batch)
        except KafkaException as exc:
            self._fail(exc)

    def _take(self, limit: int, timeout_s: float, batch: _Batch | None) -> _Batch | None:
        """Up to `limit` more commands, waiting at most `timeout_s`, decided into `batch`."""
        msgs = self.consumer.consume(num_messages=limit, timeout=timeout_s)
        msgs = [m for m in msgs if not _is_soft_error(m)]
        return self._prepare(self._decode(msgs), batch) if msgs else batch

    def _decode(self, msgs: list[Message]) -> list[_Decoded]:
        """Each record's command, or the PoisonRecord that dead-letters it (no state used)."""
        out: list[_Decoded] = []
        serde, topic = self.serde, self.portfolio
        skew = self.core.config.max_event_skew_ms
        for msg in msgs:
            if msg.error():
                raise KafkaException(msg.error())
            try:
                command = decode_command(
                    serde,
                    topic,
                    msg.value() or b"",
                    record_timestamp_ms=record_timestamp(msg),
                    max_event_skew_ms=skew,
                )
                out.append((msg, command))
            except PoisonRecord as exc:
                out.append((msg, exc))
        return out

    def _prepare(self, decoded: list[_Decoded], batch: _Batch | None) -> _Batch | None:
        """Decide and encode into `batch` (a new one if None): the state moves on, nothing
        is sent yet."""
        if not decoded:
            return batch
        t0 = time.perf_counter()
        if batch is None:
            batch = _Batch(commands=0)
        batch.commands += len(decoded)
        decisions = batch.decisions
        handle = self.core.handle
        encode = self.serde.encode
        topic = self.decisions_topic
        for msg, command in decoded:
            if isinstance(command, PoisonRecord):
                batch.dead_letters.append(self._dead_letter(msg, command))
                continue
            offset = msg.offset()
            try:
                decided = handle(command)
            except PoisonRecord as exc:  # e.g. SYMBOL_MISMATCH: the core changed nothing
                batch.dead_letters.append(self._dead_letter(msg, exc))
                continue
            for decision in decided:
                value = encode(
                    topic, decision_to_avro(decision, offset), schema_file=DECISION_SCHEMA
                )
                decisions.append({"value": value, "key": (decision.symbol or "").encode()})
        self._next_offset = batch.next_offset = decoded[-1][0].offset() + 1
        self._since_snapshot += len(decoded)
        self._gc.count(len(decoded))
        if self._snapshot_due():
            # (state and offset as of now; more commands may join the batch after it, which
            # a restore replays from the committed log like any others)
            batch.snapshot = self._snapshot()
        batch.prepare_s += time.perf_counter() - t0
        return batch

    def _publish(self, batch: _Batch) -> None:
        """Open the batch's transaction and hand its records to the producer."""
        t0 = time.perf_counter()
        self.producer.begin_transaction()
        self._in_transaction = True
        if batch.decisions:
            _produce_all(self.producer, self.decisions_topic, batch.decisions)
        if batch.dead_letters:
            _produce_all(self.producer, self.dlq, batch.dead_letters)
        if batch.snapshot is not None:
            self.producer.produce(self.snapshots_topic, key=SNAPSHOT_KEY, value=batch.snapshot)
        batch.published_at = t0

    def _publish_and_commit(self, batch: _Batch) -> None:
        self._publish(batch)
        self._commit(batch)

    def _commit(self, batch: _Batch) -> None:
        t1 = time.perf_counter()
        # Flushing first is measurably faster here: send_offsets_to_transaction with
        # records still queued took ~22 ms against ~1 ms after a flush (bench/governor.py).
        self.producer.flush(30)
        t2 = time.perf_counter()
        offsets = [TopicPartition(self.portfolio, 0, batch.next_offset)]
        self._resuming(
            "send_offsets_to_transaction",
            lambda: self.producer.send_offsets_to_transaction(offsets, self._group_metadata, 30),
        )
        t3 = time.perf_counter()
        self._resuming("commit_transaction", lambda: self.producer.commit_transaction(30))
        self._in_transaction = False
        t4 = time.perf_counter()
        total = batch.prepare_s + t4 - batch.published_at
        if total > SLOW_TRANSACTION_S:
            log.warning(
                "%s: slow transaction %.0f ms for %d commands (decide %.0f%s, publish %.0f, "
                "flush %.0f, offsets %.0f, commit %.0f ms)",
                self.instance,
                total * 1000,
                batch.commands,
                batch.prepare_s * 1000,
                " incl. snapshot" if batch.snapshot is not None else "",
                (t1 - batch.published_at) * 1000,
                (t2 - t1) * 1000,
                (t3 - t2) * 1000,
                (t4 - t3) * 1000,
            )
        self.stats.commands += batch.commands
        self.stats.decisions += len(batch.decisions)
        self.stats.dead_letters += len(batch.dead_letters)
        self.stats.transactions += 1

    def _overdue(self) -> bool:
        return self._committer.running_s() >= self.shell.commit_hang_s

    def _wait_for_commit(self) -> None:
        """Until the running commit is over, or leave the process if it hangs (`_hung`)."""
        left = self.shell.commit_hang_s - self._committer.running_s()
        if not self._committer.wait(max(left, 0.0)):
            self._hung()

    def _settle_commit(self) -> None:
        """Wait for the running commit (or leave if it hangs); its outcome no longer matters."""
        self._wait_for_commit()
        self._committer.settle()

    def _hung(self) -> NoReturn:
        """A commit that never returns: librdkafka's send_offsets_to_transaction can block
        past its timeout once the group coordinator restarted (confluentinc/librdkafka
        #5456, #5511; seen here after a broker restart). Nothing in this process can undo
        that, and the transaction's outcome is unknown, so leave for a new instance: its
        init_transactions settles the transaction, and it rebuilds from the committed log."""
        exit_for_environment(
            self.instance,
            f"a transaction's commit has not returned for {self.shell.commit_hang_s:.0f} s",
        )

    def _resuming(self, what: str, call: Callable[[], object]) -> None:
        """Make a transactional call, and make it again while it fails with a retriable error.

        librdkafka's contract: a retriable error (e.g. `_TIMED_OUT` while the broker is away)
        leaves the operation running, and the same call again resumes it. Aborting instead
        fails with `_CONFLICT` ("commit_transaction ... already in progress"), which is how
        a broker restart of ~30 s used to end the governor (tests/chaos/
        test_governor_faults.py). Errors that need an abort, or are fatal, are raised."""
        while True:
            try:
                call()
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if not err.retriable() or err.fatal() or err.txn_requires_abort():
                    raise
                log.warning("%s: %s: %s; calling it again", self.instance, what, err.str())

    def _fail(self, exc: KafkaException) -> None:
        """A fenced instance stops; any other failure aborts and rebuilds the state."""
        error = self._translate(exc)
        if isinstance(error, GovernorFenced):
            raise error from exc
        log.warning("transaction failed (%s); aborting and rebuilding state", exc)
        self._abort_and_recover()

    def _decode_or_none(self, msg: Message) -> Command | None:
        """The command in `msg`, or None for poison (replay: its dead letter is out already)."""
        try:
            return decode_command(
                self.serde,
                self.portfolio,
                msg.value() or b"",
                record_timestamp_ms=record_timestamp(msg),
                max_event_skew_ms=self.core.config.max_event_skew_ms,  # replay: as decided
            )
        except PoisonRecord:
            return None

    def _dead_letter(self, msg: Message, exc: Exception) -> dict[str, object]:
        value = dead_letter_value(msg, exc, agent=AGENT_NAME)
        log.warning("dead-lettered %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), exc)
        out: dict[str, object] = {
            "value": self.serde.encode(self.dlq, value, schema_file=DLQ_SCHEMA)
        }
        if msg.key() is not None:
            out["key"] = msg.key()
        return out

    def _snapshot_due(self) -> bool:
        return self._snapshot_now or snapshot_due(
            self._since_snapshot, self.core.remembered, self.shell
        )

    def _snapshot(self) -> bytes:
        payload = {
            "v": SNAPSHOT_VERSION,
            "input_offset": self._next_offset,
            "core": self.core.to_snapshot(),
        }
        self._since_snapshot = 0
        self._snapshot_now = False
        return zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 1)

    def _abort_and_recover(self) -> None:
        if self._in_transaction:
            try:
                self._resuming("abort_transaction", lambda: self.producer.abort_transaction(30))
            except KafkaException as exc:
                error = self._translate(exc)
                if isinstance(error, GovernorFenced):
                    raise error from exc
                raise
            self._in_transaction = False
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
        self._committer.stop()
        try:
            self.consumer.close()
        finally:
            try:
                self.producer.flush(5)
            except KafkaException as exc:
                log.info("%s: producer closed with %s", self.instance, exc)


class _Committer:
    """One thread that runs `commit(batch)` for each batch handed to `start`.

    Two queues of the standard library's C implementation: the hand-over costs far less
    than an executor's Future (a Python Condition per result).
    """

    def __init__(self, commit: Callable[[_Batch], None], *, name: str) -> None:
        self._commit = commit
        self._todo: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._started_at = 0.0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (batch := self._todo.get()) is not None:
            try:
                self._commit(batch)
            except BaseException as exc:  # handed to the caller of outcome()
                self._done.put(exc)
            else:
                self._done.put(None)

    def start(self, batch: _Batch) -> None:
        self._started_at = time.monotonic()
        self._todo.put(batch)

    def running_s(self) -> float:
        """How long the started commit has been running."""
        return time.monotonic() - self._started_at

    def finished(self) -> bool:
        """Whether the started commit is over (its outcome() will not wait)."""
        return not self._done.empty()

    def wait(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the started commit to be over; whether it is."""
        if self.finished():
            return True
        try:
            self._done.put(self._done.get(timeout=timeout_s))
        except queue.Empty:
            return False
        return True

    def outcome(self) -> None:
        """Wait for the started commit; raise what it raised."""
        error = self._done.get()
        if error is not None:
            raise error

    def settle(self) -> None:
        """Wait for a commit whose outcome no longer matters (the caller aborts or stops)."""
        try:
            self.outcome()
        except KafkaException as exc:
            log.info("a background commit failed as well: %s", exc)

    def stop(self) -> None:
        self._todo.put(None)
        self._thread.join()


def _produce_all(producer: Producer, topic: str, messages: list[dict[str, object]]) -> None:
    """Queue every message or raise: a message left out would be missing from the commit."""
    queued = producer.produce_batch(topic, messages)
    if queued != len(messages):
        failed = next((m["_error"] for m in messages if "_error" in m), None)
        if isinstance(failed, KafkaError):
            raise KafkaException(failed)
        raise KafkaException(KafkaError(KafkaError._FAIL, f"{queued}/{len(messages)} queued"))


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
