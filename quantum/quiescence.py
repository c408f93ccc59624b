"""Has every reader caught up with every topic it reads? (the replay driver's barrier)

A lock-step replay sends one bar, then waits until its consequences have settled
before it sends the next, so the order in which records meet (a stop's release and a
new request at the governor, say) is the same on every run. "Settled" is a fact the
broker can answer: every consumer group has committed, for every partition it reads,
the offset at the partition's end (looked up after the committed offsets: see
`settled`), and no transaction is open on a transactional topic.

A reader commits an input's offset only after the outputs it caused were delivered
(agents/runtime.py, the governor's transactions), so a settled snapshot has no work in
flight. One subtlety: a topic written in transactions ends with a commit marker that no
consumer returns, so a reader that has consumed the last record commits `end - 1`;
for such topics that counts as caught up, once the last stable offset equals the high
watermark (the marker is written, so `end - 1` is the marker, not a record).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from quantum.kafka_util import is_settling

_T = TypeVar("_T")


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
        self._txn_partitions = [tp for tp in self._partitions if tp.topic in self._transactional]

    def ends(self) -> dict[tuple[str, int], int]:
        """The high watermark of every partition read (read_uncommitted: the true end)."""
        return self._list_offsets(self._partitions, IsolationLevel.READ_UNCOMMITTED)

    def open_transactions(self) -> bool:
        """Does a transactional topic still have an open (or not yet marked) transaction?
        Then its last stable offset is behind its high watermark."""
        if not self._txn_partitions:
            return False
        stable = self._list_offsets(self._txn_partitions, IsolationLevel.READ_COMMITTED)
        ends = self._list_offsets(self._txn_partitions, IsolationLevel.READ_UNCOMMITTED)
        return stable != ends

    def _list_offsets(
        self, partitions: list[TopicPartition], isolation: IsolationLevel
    ) -> dict[tuple[str, int], int]:
        def ask() -> dict[tuple[str, int], int]:
            futures = self._admin.list_offsets(
                {tp: OffsetSpec.latest() for tp in partitions},
                isolation_level=isolation,
                request_timeout=self._timeout_s,
            )
            return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

        return self._asking_again(ask)

    def _asking_again(self, ask: Callable[[], _T]) -> _T:
        """Asks again while a young topic's leader or a group coordinator settles
        (NOT_LEADER, COORDINATOR_LOAD_IN_PROGRESS and friends), up to the timeout."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                return ask()
            except KafkaException as exc:
                if not is_settling(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)  # an election or a coordinator load in progress

    def committed(self) -> dict[tuple[str, str, int], int]:
        """Every reader group's committed offset per partition it reads (0 if none yet);
        one request per group, all in flight at once."""

        def ask() -> dict[tuple[str, str, int], int]:
            futures = []
            for reader in self._readers:
                request = ConsumerGroupTopicPartitions(
                    reader.group,
                    [tp for tp in self._partitions if tp.topic in reader.topics],
                )
                futures.extend(self._admin.list_consumer_group_offsets([request]).values())
            return {
                (reader.group, tp.topic, tp.partition): max(tp.offset, 0)
                for reader, future in zip(self._readers, futures, strict=True)
                for tp in future.result().topic_partitions
            }

        return self._asking_again(ask)

    def lag(
        self,
        committed: dict[tuple[str, str, int], int] | None = None,
        ends: dict[tuple[str, int], int] | None = None,
    ) -> dict[str, int]:
        """Records not yet committed, per `group/topic`; empty when everything is read."""
        committed = self.committed() if committed is None else committed
        ends = self.ends() if ends is None else ends
        behind: dict[str, int] = {}
        for (group, topic, partition), offset in committed.items():
            end = ends[(topic, partition)]
            slack = 1 if topic in self._transactional else 0
            if offset < end - slack:
                key = f"{group}/{topic}"
                behind[key] = behind.get(key, 0) + end - offset
        return behind

    def settled(self) -> bool:
        """Every reader had committed, when asked, the end the topics had right after.

        Committed offsets first, ends second: a reader commits an input only after the
        outputs it caused are in the log, so an output not yet in the ends means its
        input was not yet committed either — one look is enough, with no window."""
        committed = self.committed()
        return not self.lag(committed, self.ends()) and not self.open_transactions()

    def settled_yet(self) -> bool:
        """`settled`, where a broker still settling for longer than this object's own
        asking again counts as not yet: a broker started on a data directory with many
        groups loads __consumer_offsets for tens of seconds (COORDINATOR_LOAD_IN_PROGRESS;
        `./qt demo` here, 2026-11-26, and the first test of a CI session)."""
        try:
            return self.settled()
        except KafkaException as exc:
            if not is_settling(exc):
                raise
            return False

    def wait(
        self,
        timeout_s: float,
        *,
        poll_s: float = 0.002,
        failed: Callable[[], str | None] = lambda: None,
    ) -> float:
        """Block until settled; TimeoutError naming who is behind. Returns seconds waited.

        failed: asked between looks; a message means a reader died and will never catch
        up, so the wait stops at once with that message (RuntimeError)."""
        start = time.monotonic()
        while not self.settled_yet():
            problem = failed()
            if problem is not None:
                raise RuntimeError(problem)
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"not settled after {timeout_s:.0f} s; behind: {self.lag()}")
            time.sleep(poll_s)
        return time.monotonic() - start
