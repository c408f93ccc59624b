"""The Faust side of every agent: an app factory and the one guarded way to consume.

Agents consume raw bytes and decode them here, not in Faust's serializer:
Faust logs and skips a value it cannot deserialize, which would drop a record
silently. `guarded_events` decodes, validates and calls the agent's handler;
anything that fails on the way — malformed frame, unknown schema id, a value
that breaks a semantic rule, or an exception from the handler — goes to
`<topic>.dlq` with the dead-letter envelope, and the stream goes on.
The dead letter is delivered before the source offset can be committed, so
a crash in between at worst writes the dead letter twice, never loses it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import EventT

from quantum.config import RuntimeSettings
from quantum.dlq import DLQ_SCHEMA, RawRecord, dead_letter_value
from quantum.errors import ENVIRONMENT_ERRORS, PoisonRecord
from quantum.exit_status import exit_for_environment
from quantum.serde import AvroSerde
from quantum.validation import validate
from topologies.declaration import dlq_topic

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], EventT], Awaitable[None]]


def create_app(settings: RuntimeSettings, *, app_id: str = "quantum-trader") -> faust.App:
    """A Faust app bound to the settings' broker; nothing starts until a worker runs it."""
    return faust.App(
        f"{settings.kafka.topic_prefix}{app_id}",
        broker=f"kafka://{settings.kafka.bootstrap}",
        store="memory://",
        processing_guarantee=settings.kafka.processing_guarantee,
        web_enabled=False,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        producer_acks=-1,
        broker_commit_interval=settings.kafka.commit_interval_s,
    )


@dataclass
class AgentContext:
    """What an agent's shell needs: its app, settings, serde, its own config section
    (`AgentSpec.config[name]`, None if it has none), and counters."""

    app: faust.App
    settings: RuntimeSettings
    serde: AvroSerde
    name: str
    config: Any = None
    processed: int = 0
    dead_letters: int = 0

    def raw_topic(self, logical: str, **kwargs: Any) -> faust.TopicT:
        return self.app.topic(
            self.settings.topic(logical),
            key_serializer="raw",
            value_serializer="raw",
            **kwargs,
        )

    async def send(
        self,
        logical: str,
        value: dict[str, Any] | None,
        *,
        schema_file: str,
        key: bytes | None,
        partition: int | None = None,
    ) -> None:
        """Encode and send to a logical topic (this run's prefix added); a None value is a
        tombstone (compacted topics)."""
        await self._send_to(
            self.settings.topic(logical),
            value,
            schema_file=schema_file,
            key=key,
            partition=partition,
        )

    async def _send_to(
        self,
        topic: str,
        value: dict[str, Any] | None,
        *,
        schema_file: str,
        key: bytes | None,
        partition: int | None = None,
    ) -> None:
        """Encode and send to a physical topic, waiting for delivery, so the input
        offset can only be committed after the output (or dead letter) is written."""
        data = None if value is None else self.serde.encode(topic, value, schema_file=schema_file)
        out = self.app.topic(topic, key_serializer="raw", value_serializer="raw")
        pending = await out.send(key=key, value=data, partition=partition)
        await pending

    async def dead_letter(self, event: EventT, exc: BaseException) -> None:
        msg = event.message
        record = RawRecord(
            msg.topic,
            msg.partition,
            msg.offset,
            msg.key,
            msg.value,
            list(msg.headers.items()) if isinstance(msg.headers, dict) else list(msg.headers or []),
            int(msg.timestamp * 1000) if msg.timestamp else None,
        )
        target = dlq_topic(msg.topic)
        value = dead_letter_value(record, exc, agent=self.name)
        await self._send_to(target, value, schema_file=DLQ_SCHEMA, key=msg.key)
        self.dead_letters += 1
        log.warning(
            "%s: dead-lettered %s[%d]@%d to %s: %s: %s",
            self.name,
            msg.topic,
            msg.partition,
            msg.offset,
            target,
            type(exc).__name__,
            exc,
        )


def stop_for_environment(agent: str, exc: Exception) -> None:
    """Exit at once, this record unacknowledged: the registry is away or refused a schema,
    which is no fault of the record, so dead-lettering it would lose a good one. Its offset
    is not committed; a restart (the supervisor's, `quantum worker --supervise`) reads it
    again, as after a kill -9 at this point."""
    exit_for_environment(agent, f"{type(exc).__name__}: {exc}")


async def guarded_events(
    ctx: AgentContext,
    stream: faust.StreamT,
    *,
    schema_file: str,
    handler: Handler,
    universe: frozenset[str] | None = None,
) -> AsyncIterator[None]:
    """Drive `handler` over decoded, validated values; route every failure to the DLQ.

    Yields once per input record so the Faust agent body stays a one-line loop.
    """
    async for event in stream.events():
        try:
            raw = event.value if isinstance(event.value, bytes | bytearray) else b""
            value = ctx.serde.decode(event.message.topic, bytes(raw), schema_file=schema_file)
            validate(schema_file, value, universe=universe)
            await handler(value, event)
            ctx.processed += 1
        except PoisonRecord as exc:
            await ctx.dead_letter(event, exc)
        except ENVIRONMENT_ERRORS as exc:
            stop_for_environment(ctx.name, exc)
        except Exception as exc:  # a handler bug must not stop the stream either
            log.exception("%s: handler failed", ctx.name)
            await ctx.dead_letter(event, exc)
        yield None
