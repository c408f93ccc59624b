"""Talking to the governor from outside: send commands, read back the committed logs.

Used by the CLI (`quantum audit portfolio`), the chaos test, the benchmark and
any service that asks for slots. Readers are read_committed: what they return
is exactly what the governor's transactions committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, Message, Producer
from confluent_kafka import TopicPartition as Tp

from agents.governor.audit import AuditReport, audit_decisions
from agents.governor.codec import (
    COMMAND_SCHEMA,
    DECISION_SCHEMA,
    command_from_avro,
    command_to_avro,
    decision_from_avro,
)
from agents.governor.config import GovernorSettings
from agents.governor.core import check_command
from agents.governor.model import Command, Decision, SlotRequest
from quantum.config import RuntimeSettings
from quantum.errors import InvalidRecord, PoisonRecord
from quantum.kafka_util import high_watermarks, read_range
from quantum.serde import AvroSerde
from quantum.validation import validate
from topologies.declaration import PORTFOLIO, PORTFOLIO_DECISIONS

PORTFOLIO_KEY = b"portfolio"


def decode_command(
    serde: AvroSerde,
    topic: str,
    data: bytes,
    *,
    record_timestamp_ms: int | None = None,
    max_event_skew_ms: int | None = None,
) -> Command:
    """The one way a portfolio record becomes a command: decode, validate, convert, check.

    The governor (live and when it replays the log) and every reader of the log use it,
    so they agree on which records are commands and which are poison.
    Raises PoisonRecord; a record the codec cannot convert is INVALID_COMMAND, an empty id
    EMPTY_ID, and (given the record's timestamp and the allowed skew) an event time too far
    ahead of the record timestamp EVENT_TIME_SKEW.
    """
    value = serde.decode(topic, data, schema_file=COMMAND_SCHEMA)
    validate(COMMAND_SCHEMA, value)
    try:
        command = command_from_avro(value)
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidRecord("INVALID_COMMAND", f"{type(exc).__name__}: {exc}") from exc
    check_command(command, record_timestamp_ms, max_event_skew_ms)
    return command


def record_timestamp(msg: Message) -> int | None:
    """The Kafka record timestamp in ms (create or log-append time), None if it has none."""
    kind, ts = msg.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE or ts < 0 else ts


class CommandSender:
    """Produces governor commands to the single-partition portfolio topic (idempotent producer)."""

    def __init__(
        self, settings: RuntimeSettings, *, serde: AvroSerde | None = None, linger_ms: int = 5
    ) -> None:
        self.topic = settings.topic(PORTFOLIO)
        self.serde = serde or AvroSerde.from_settings(settings)
        self.producer = Producer(
            {
                "bootstrap.servers": settings.kafka.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": linger_ms,
            }
        )
        self.failures: list[KafkaError] = []

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self.failures.append(err)

    def send(self, command: Command) -> None:
        value = self.serde.encode(self.topic, command_to_avro(command), schema_file=COMMAND_SCHEMA)
        self.send_raw(value)

    def send_raw(self, value: bytes, key: bytes = PORTFOLIO_KEY) -> None:
        while True:
            try:
                self.producer.produce(
                    self.topic, key=key, value=value, on_delivery=self._on_delivery
                )
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                self.producer.poll(0.05)
        self.producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        remaining = self.producer.flush(timeout_s)
        if remaining or self.failures:
            raise RuntimeError(
                f"{remaining} commands undelivered, {len(self.failures)} failed"
                + (f": {self.failures[0]}" if self.failures else "")
            )


@dataclass(frozen=True)
class LoggedDecision:
    offset: int  # in portfolio.decisions
    input_offset: int  # of the command in the portfolio topic
    decision: Decision


def _read_partition(
    settings: RuntimeSettings, topic: str, *, timeout_s: float, isolation: str = "read_committed"
) -> Iterator[Message]:
    """Every record of the single partition, up to its end now."""
    end = high_watermarks(settings.kafka.bootstrap, topic, [0], timeout_s)[0]
    yield from read_range(
        settings.kafka.bootstrap, topic, {0: (0, end)}, isolation=isolation, timeout_s=timeout_s
    )


def read_decisions(
    settings: RuntimeSettings,
    *,
    serde: AvroSerde | None = None,
    timeout_s: float = 120.0,
    isolation: str = "read_committed",
) -> list[LoggedDecision]:
    serde = serde or AvroSerde.from_settings(settings)
    topic = settings.topic(PORTFOLIO_DECISIONS)
    out = []
    for msg in _read_partition(settings, topic, timeout_s=timeout_s, isolation=isolation):
        decision, input_offset = decision_from_avro(
            serde.decode(topic, msg.value() or b"", schema_file=DECISION_SCHEMA)
        )
        out.append(LoggedDecision(msg.offset(), input_offset, decision))
    return out


def read_commands(
    settings: RuntimeSettings, *, serde: AvroSerde | None = None, timeout_s: float = 120.0
) -> tuple[list[tuple[int, Command]], list[int]]:
    """Decodable commands with their offsets, and the offsets of undecodable ones
    (the same records the governor dead-letters, event-time skew included)."""
    serde = serde or AvroSerde.from_settings(settings)
    topic = settings.topic(PORTFOLIO)
    skew = settings.governor.max_event_skew_ms
    good: list[tuple[int, Command]] = []
    poison: list[int] = []
    for msg in _read_partition(settings, topic, timeout_s=timeout_s):
        try:
            command = decode_command(
                serde,
                topic,
                msg.value() or b"",
                record_timestamp_ms=record_timestamp(msg),
                max_event_skew_ms=skew,
            )
            good.append((msg.offset(), command))
        except PoisonRecord:
            poison.append(msg.offset())
    return good, poison


def committed_offset(settings: GovernorSettings, group_id: str | None = None) -> int:
    """The governor's committed position in the portfolio topic (0 if none yet)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": group_id
            or settings.governor_shell.group_id_for(settings.kafka.topic_prefix),
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        [tp] = consumer.committed([Tp(settings.topic(PORTFOLIO), 0)], timeout=30)
        return max(tp.offset, 0)
    finally:
        consumer.close()


def end_offset(settings: RuntimeSettings, logical_topic: str = PORTFOLIO) -> int:
    return high_watermarks(settings.kafka.bootstrap, settings.topic(logical_topic), [0], 30)[0]


def governor_group_id(settings) -> str:
    """The consumer group whose committed offset marks the governor's decided prefix."""
    return settings.governor_shell.group_id_for(settings.kafka.topic_prefix)


def audit_committed_log(settings) -> tuple[AuditReport, list[LoggedDecision], list[int]]:
    """Re-read the committed portfolio and decisions logs and audit them: the invariant at
    every offset, and one final decision for every request in the portfolio log.
    Returns the report, the decisions read, and the offsets of undecodable commands."""
    commands, poison = read_commands(settings)
    requests = [cmd for _, cmd in commands if isinstance(cmd, SlotRequest)]
    logged = read_decisions(settings)
    report = audit_decisions(((d.offset, d.decision) for d in logged), requests)
    return report, logged, poison
