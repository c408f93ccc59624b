"""Has every reader caught up with every topic it reads? (the replay driver's barrier)

A lock-step replay sends one bar, then waits until its consequences have settled
before it sends the next, so the order in which records meet (a stop's release and a
new request at the governor, say) is the same on every run. "Settled" is a fact the
broker can answer: every consumer group has committed, for every partition it reads,
the offset at the partition's end, and two looks in a row saw the same ends (nothing
was produced in between).

A reader commits an input's offset only after the outputs it caused were delivered
(agents/runtime.py, the governor's transactions), so a settled snapshot has no work in
flight. One subtlety: a topic written in transactions ends with a commit marker that no
consumer returns, so a reader that has consumed the last record commits `end - 1`;
for such topics that counts as caught up.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

_SETTLING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


@dataclass(frozen=True)
class Reader:
    """A consumer group and the (physical) topics it reads."""

    group: str
    topics: tuple[str, ...]


class Quiescence:
    """Asks the broker whether `readers` have consumed everything produced so far."""

    def __init__(
        self,
        bootstrap: str,
        readers: Iterable[Reader],
        *,
        transactional: Iterable[str] = (),
        timeout_s: float = 10.0,
    ) -> None:
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._readers = tuple(readers)
        self._transactional = frozenset(transactional)
        self._timeout_s = timeout_s
        topics = sorted({t for r in self._readers for t in r.topics})
        meta = self._admin.list_topics(timeout=timeout_s).topics
        missing = [t for t in topics if t not in meta]
        if missing:
            raise ValueError(f"quiescence: no such topics {missing}")
        self._partitions = [
            TopicPartition(t, p) for t in topics for p in sorted(meta[t].partitions)
        ]

    def ends(self) -> dict[tuple[str, int], int]:
        """The high watermark of every partition read (read_uncommitted: the true end).

        A topic created moments ago answers "not leader" until its leader is elected:
        asked again shortly, for up to the timeout."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            futures = self._admin.list_offsets(
                {tp: OffsetSpec.latest() for tp in self._partitions},
                isolation_level=IsolationLevel.READ_UNCOMMITTED,
                request_timeout=self._timeout_s,
            )
            try:
                return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if not (err.retriable() or err.code() in _SETTLING):
                    raise
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)  # the leader is being elected: ask again shortly

    def lag(self, ends: dict[tuple[str, int], int] | None = None) -> dict[str, int]:
        """Records not yet committed, per `group/topic`; empty when everything is read."""
        ends = self.ends() if ends is None else ends
        behind: dict[str, int] = {}
        for reader in self._readers:
            request = ConsumerGroupTopicPartitions(
                reader.group,
                [tp for tp in self._partitions if tp.topic in reader.topics],
            )
            [future] = self._admin.list_consumer_group_offsets([request]).values()
            for tp in future.result().topic_partitions:
                committed = max(tp.offset, 0)
                end = ends[(tp.topic, tp.partition)]
                slack = 1 if tp.topic in self._transactional else 0
                if committed < end - slack:
                    key = f"{reader.group}/{tp.topic}"
                    behind[key] = behind.get(key, 0) + end - committed
        return behind

    def settled(self) -> bool:
        """Nothing unread, and no topic grew while we looked."""
        before = self.ends()
        if self.lag(before):
            return False
        return self.ends() == before

    def wait(self, timeout_s: float, *, poll_s: float = 0.002) -> float:
        """Block until settled; TimeoutError naming who is behind. Returns seconds waited."""
        start = time.monotonic()
        while not self.settled():
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"not settled after {timeout_s:.0f} s; behind: {self.lag()}")
            time.sleep(poll_s)
        return time.monotonic() - start
