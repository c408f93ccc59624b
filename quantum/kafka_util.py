"""Small Kafka facts every reader of a committed log needs, in one place."""

from __future__ import annotations

import time
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as Tp


def high_watermarks(
    bootstrap: str, topic: str, partitions: list[int], timeout_s: float
) -> dict[int, int]:
    """The true end of each partition (records, open transactions and markers included).

    Asked through a read_uncommitted handle on purpose: a read_committed consumer's
    watermark query answers with the last stable offset, which right after a
    commit_transaction can still sit before the commit markers (even at 0).
    """
    probe = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "quantum-watermarks",
            "isolation.level": "read_uncommitted",
            "enable.auto.commit": False,
        }
    )
    deadline = time.monotonic() + timeout_s
    try:
        return {p: _high_watermark(probe, Tp(topic, p), deadline) for p in partitions}
    finally:
        probe.close()


def end_offsets(bootstrap: str, topic: str, timeout_s: float) -> dict[int, int]:
    """High watermark of every partition of `topic`; ValueError if there is no such topic."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "quantum-watermarks"})
    try:
        meta = probe.list_topics(topic, timeout=timeout_s).topics.get(topic)
    finally:
        probe.close()
    if meta is None or meta.error is not None:
        raise ValueError(f"topic {topic!r} does not exist")
    return high_watermarks(bootstrap, topic, list(meta.partitions), timeout_s)


def _high_watermark(probe: Consumer, tp: Tp, deadline: float) -> int:
    """Retries what a young topic answers while its leader settles (not leader, unknown)."""
    while True:
        remaining = deadline - time.monotonic()
        try:
            return probe.get_watermark_offsets(tp, timeout=max(remaining, 0.1), cached=False)[1]
        except KafkaException as exc:
            if not is_settling(exc) or remaining <= 0:
                raise
        time.sleep(0.1)  # the leader is being elected: ask again shortly


SETTLING_ERRORS = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        # A group coordinator moving or loading its log (after a broker restart, or
        # under load): the answer comes once it has loaded.
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
    }
)


def is_settling(exc: KafkaException) -> bool:
    """Will asking again shortly succeed? A retriable error, or the broker still settling
    (a leader being elected, a group coordinator loading its log)."""
    err: KafkaError = exc.args[0]
    return err.retriable() or err.code() in SETTLING_ERRORS


def read_range(
    bootstrap: str,
    topic: str,
    ranges: dict[int, tuple[int, int]] | None = None,
    *,
    isolation: str = "read_committed",
    timeout_s: float = 60.0,
    group_id: str = "quantum-log-reader",
) -> Iterator[Message]:
    """Every record of `topic` from each partition's start (inclusive) to end (exclusive).

    `ranges` maps partition -> (start, end); None reads every partition from 0 to its
    high watermark now. A read_committed read ends at an end that only control
    records follow: its end-of-partition is reported at the last stable offset,
    which passes the end once the markers are written.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "fetch.max.bytes": 52_428_800,
        }
    )
    try:
        if ranges is None:
            ranges = {p: (0, end) for p, end in end_offsets(bootstrap, topic, timeout_s).items()}
        pending = {p: end for p, (start, end) in ranges.items() if end > start}
        if not pending:
            return
        consumer.assign([Tp(topic, p, ranges[p][0]) for p in pending])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} {pending} took more than {timeout_s} s")
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                p = msg.partition()
                if p not in pending:
                    continue
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(msg.error())
                    if msg.offset() >= pending[p]:
                        del pending[p]
                    continue
                if msg.offset() >= pending[p]:
                    del pending[p]
                    continue
                yield msg
                if msg.offset() >= pending[p] - 1:
                    del pending[p]
    finally:
        consumer.close()


class CommittedProbe:
    """Is there a committed record in a gap of a transactional partition?

    A read_committed reader of a topic written in transactions sees gaps in the offsets it
    is handed: every commit marker takes an offset, and aborted records are never handed
    over. So a gap alone does not say that a record was skipped. Fetching from the gap's
    first offset does: the broker answers with the first committed record at or after it,
    which is the record after the gap if, and only if, the gap held nothing committed.
    One consumer (no group commits), kept for the reader's life; a fetch per gap.
    """

    def __init__(self, bootstrap: str, *, timeout_s: float = 30.0) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "quantum-gap-probe",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
            }
        )
        self._timeout_s = timeout_s

    def first_committed(self, topic: str, partition: int, start: int) -> int:
        """The offset of the first committed record at or after `start`; TimeoutError if
        none comes within the timeout (ask only below an offset known to be committed)."""
        self._consumer.assign([Tp(topic, partition, start)])
        deadline = time.monotonic() + self._timeout_s
        try:
            while time.monotonic() < deadline:
                msg = self._consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(msg.error())
                return int(msg.offset())
        finally:
            self._consumer.unassign()
        raise TimeoutError(f"no committed record of {topic}/{partition} from @{start}")

    def skipped(self, topic: str, partition: int, last: int, offset: int) -> bool:
        """Were committed records between `last` and `offset` (both handed over) skipped?"""
        return offset > last + 1 and self.first_committed(topic, partition, last + 1) < offset

    def close(self) -> None:
        self._consumer.close()
