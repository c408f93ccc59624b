"""Dead letters: the envelope every agent writes for a record it could not handle,
and the tools to list, show and replay them.

The envelope keeps the original key and bytes untouched, so a replay re-injects
exactly what arrived; the source topic, partition and offset say where it came
from; the error says why. Replayed records carry the header `x-dlq-replay` with
the dead letter's coordinates, so an agent (or a person) can tell them apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, Producer

from quantum.config import RuntimeSettings
from quantum.errors import PoisonRecord
from quantum.kafka_util import read_range
from quantum.serde import AvroSerde

DLQ_SCHEMA = "dead_letter.avsc"
DLQ_SUFFIX = ".dlq"
REPLAY_HEADER = "x-dlq-replay"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of a (logical or physical) topic name."""
    return f"{topic}{DLQ_SUFFIX}"


class SourceRecord(Protocol):
    """What a dead letter needs of the failed record (a confluent Message fits)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...
    def timestamp(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class RawRecord:
    """A failed record's coordinates and bytes, for shells whose messages are not confluent's."""

    topic_: str
    partition_: int
    offset_: int
    key_: bytes | None
    value_: bytes | None
    headers_: list[tuple[str, bytes]] | None = None
    timestamp_ms: int | None = None

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self.headers_

    def timestamp(self) -> tuple[int, int]:
        return (1, self.timestamp_ms) if self.timestamp_ms is not None else (0, -1)


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(error class, message) as stored: poison records lead with their reason code."""
    if isinstance(exc, PoisonRecord):
        return type(exc).__name__, f"{exc.reason}: {exc}"
    return type(exc).__name__, str(exc) or repr(exc)


def dead_letter_value(
    record: SourceRecord, exc: BaseException, *, agent: str, failed_at_ms: int | None = None
) -> dict[str, Any]:
    """The DeadLetter record (schemas/dead_letter.avsc) for a failed record."""
    error_class, message = describe_error(exc)
    ts_type, ts = record.timestamp()
    headers = record.headers() or []
    replays = sum(1 for name, _ in headers if name == REPLAY_HEADER)
    return {
        "source_topic": record.topic() or "",
        "source_partition": record.partition() if record.partition() is not None else -1,
        "source_offset": record.offset() if record.offset() is not None else -1,
        "source_timestamp": ts if ts_type != 0 and ts >= 0 else None,
        "key": record.key(),
        "value": record.value(),
        "headers": [{"key": k, "value": v if v is not None else b""} for k, v in headers],
        "error_class": error_class,
        "error_message": message[:4000],
        "agent": agent,
        "failed_at": failed_at_ms if failed_at_ms is not None else int(time.time() * 1000),
        "replay_count": replays,
    }


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    value: dict[str, Any]

    def summary(self) -> str:
        v = self.value
        return (
            f"@{self.offset}  {v['source_topic']}[{v['source_partition']}]@{v['source_offset']}  "
            f"agent={v['agent']}  {v['error_class']}: {v['error_message'][:120]}"
        )


def read_dead_letters(
    settings: RuntimeSettings,
    dlq_topic: str,
    *,
    serde: AvroSerde | None = None,
    timeout_s: float = 30.0,
) -> Iterator[DeadLetter]:
    """Every dead letter currently in `dlq_topic` (physical name), oldest first."""
    if not dlq_topic.endswith(DLQ_SUFFIX):
        raise ValueError(f"{dlq_topic!r} is not a dead-letter topic (they end in {DLQ_SUFFIX})")
    serde = serde or AvroSerde.from_settings(settings)
    try:
        for msg in read_range(settings.kafka.bootstrap, dlq_topic, timeout_s=timeout_s):
            value = serde.decode(dlq_topic, msg.value() or b"", schema_file=DLQ_SCHEMA)
            yield DeadLetter(msg.offset(), value)
    except ValueError as exc:
        raise ValueError(f"dead-letter topic {dlq_topic!r} does not exist") from exc


def replay(
    settings: RuntimeSettings,
    dlq_topic: str,
    *,
    offsets: set[int] | None = None,
    serde: AvroSerde | None = None,
) -> list[DeadLetter]:
    """Re-inject dead letters (all, or those at `offsets`) into their source topics.

    Original key and bytes go back unchanged; a header names the dead letter they came from.
    """
    letters = [
        letter
        for letter in read_dead_letters(settings, dlq_topic, serde=serde)
        if offsets is None or letter.offset in offsets
    ]
    if not letters:
        return []
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "enable.idempotence": True})
    failures: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures.append(err)

    for letter in letters:
        v = letter.value
        headers = [(h["key"], h["value"]) for h in v["headers"]]
        headers.append((REPLAY_HEADER, f"{dlq_topic}@{letter.offset}".encode()))
        producer.produce(
            v["source_topic"],
            key=v["key"],
            value=v["value"],
            headers=headers,
            on_delivery=on_delivery,
        )
    producer.flush(30)
    if failures:
        raise RuntimeError(f"replay: {len(failures)} records not delivered: {failures[0]}")
    return letters
