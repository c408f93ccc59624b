"""The one shell of every stateful pipeline agent: decode, skip what was applied, decide,
send, remember.

A pipeline agent is a pure core behind a `Processor` (records in, `Out` records out,
`snapshot()` for its state). This module binds it to Faust:

* every input topic goes through the guarded path of `agents.runtime`: a record that
  does not decode or validate, or that the core refuses, becomes a dead letter with its
  reason, and the agent goes on;
* state lives in a Faust table (`<agent>-state`, changelog-backed, one partition),
  written after the record's outputs were delivered, together with the offset applied
  for each input partition. Faust flushes the table's changelog before it commits input
  offsets, so after a crash the restored state is at least as new as the committed
  offsets; a redelivered record whose offset the state already holds is skipped. That is
  what makes an at-least-once agent apply each record once (DESIGN.md: "every stateful
  processor remembers what it applied");
* two ways to keep the state: `register_stateful` keeps the whole core under one key
  (`Processor.snapshot()`, rewritten after every record: right for a core that is one
  global decision, like sizing's exposure book); `register_keyed` keeps one key per
  entity (`KeyedProcessor.changes()`: only the keys a record touched are rewritten, a
  None deletes the key), for cores whose state is a set of independent entities, like the
  exit processors' one state per open position. The keyed variant writes the changed keys
  before the offsets (under `SHELL_KEY`); a crash between the two leaves some keys newer
  than the offsets, so the record comes again to a core that already holds its effect.
  Keyed cores must therefore be idempotent per key on their own (the exit cores are: a
  bar or position record not newer than the one applied changes nothing);
* the end-of-stream marker (`quantum.end_of_stream`) is tracked on every input partition;
  once all have ended the core may flush (`on_end_of_stream`), then the marker goes to
  every partition of every output topic.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust

from agents.runtime import AgentContext
from quantum.end_of_stream import EndOfStream, EndOfStreamTracker, marker_key, marker_of
from quantum.end_of_stream import marker_record as eos_record
from quantum.errors import PoisonRecord
from quantum.validation import validate
from topologies.declaration import TOPOLOGY

log = logging.getLogger(__name__)

STATE_KEY = "state"
EXIT_STATE_WRITE_FAILED = 70  # the worker's exit status when a state write failed
SHELL_KEY = "__shell__"  # the keyed variant's own bookkeeping: applied offsets, end of stream


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded, validated input record, with where it came from."""

    topic: str  # logical name
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any]
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class Out:
    """One output record: an Avro value for a logical topic."""

    topic: str
    value: dict[str, Any]
    key: bytes | None
    partition: int | None = None  # None: by key


class Processor(Protocol):
    """What the shell drives. Implementations map Avro dicts to a pure core and back."""

    def on_record(self, record: Record) -> list[Out]: ...

    def on_end_of_stream(self, marker: EndOfStream) -> list[Out]: ...

    def snapshot(self) -> dict[str, Any]: ...


class KeyedProcessor(Protocol):
    """A processor whose state is one JSON value per key (per position, per symbol...)."""

    def on_record(self, record: Record) -> list[Out]: ...

    def on_end_of_stream(self, marker: EndOfStream) -> list[Out]: ...

    def changes(self) -> dict[str, dict[str, Any] | None]:
        """The keys changed since the last call: the new value, or None for a deleted key.
        Called by the shell after each record's outputs were delivered."""
        ...


@dataclass(frozen=True)
class StatefulAgent:
    """How a stateful agent is bound: its inputs, outputs and how to (re)build its core.

    inputs: logical topic -> whether the end-of-stream marker comes through it (a compacted
        state topic such as `positions` never ends).
    outputs: logical topics the marker is forwarded to once every input has ended.
    make: builds the processor from the table's last snapshot (None on a first start).
    universe: symbols to check at decode (None: any well-formed symbol).
    """

    inputs: Mapping[str, bool]
    outputs: tuple[str, ...]
    make: Callable[[dict[str, Any] | None], Processor]
    universe: frozenset[str] | None = None
    schemas: Mapping[str, str] = field(default_factory=dict)

    def schema(self, logical: str) -> str:
        return self.schemas.get(logical) or TOPOLOGY.topic(logical).schema or ""


@dataclass(frozen=True)
class KeyedStatefulAgent(StatefulAgent):
    """As `StatefulAgent`, but `make` builds the processor from every key of the table
    (an empty dict on a first start), and the processor reports `changes()` per key."""

    make: Callable[[dict[str, dict[str, Any]]], KeyedProcessor]  # type: ignore[assignment]


class _Bookkeeping:
    """What the shell persists beside the core: applied offsets, the end-of-stream tracker."""

    def __init__(self, agent: StatefulAgent, blob: dict[str, Any] | None) -> None:
        ends = {t: TOPOLOGY.topic(t).partitions for t, e in agent.inputs.items() if e}
        self.tracker = EndOfStreamTracker(ends) if ends else None
        self.applied: dict[str, int] = {}
        if blob is not None:
            self.applied = {k: int(v) for k, v in blob["applied"].items()}
            if self.tracker is not None and blob.get("eos") is not None:
                self.tracker.restore(blob["eos"])

    def blob(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "eos": None if self.tracker is None else self.tracker.snapshot(),
        }


class _State:
    """The processor plus the bookkeeping the shell persists beside it."""

    def __init__(self, processor: Processor | KeyedProcessor, books: _Bookkeeping) -> None:
        self.processor = processor
        self.books = books


def register_stateful(ctx: AgentContext, agent: StatefulAgent) -> None:
    """Declare the Faust agent and its state table on `ctx.app`: the whole core under one
    key, rewritten after every record."""
    table = _table(ctx, "core state and the input offsets it has applied")

    def load() -> _State:
        blob = table.get(STATE_KEY)
        processor = agent.make(None if blob is None else blob["core"])
        return _State(processor, _Bookkeeping(agent, blob))

    def save(state: _State) -> None:
        processor: Processor = state.processor  # type: ignore[assignment]
        table[STATE_KEY] = {"core": processor.snapshot(), **state.books.blob()}

    _bind(ctx, agent, load, save)


def register_keyed(ctx: AgentContext, agent: KeyedStatefulAgent) -> None:
    """Declare the Faust agent and its state table on `ctx.app`: one key per entity of the
    core, only the changed ones rewritten, the offsets under `SHELL_KEY`."""
    table = _table(ctx, "state per key and, under __shell__, the input offsets applied")

    def load() -> _State:
        entries = {str(k): v for k, v in table.items() if k != SHELL_KEY and v is not None}
        return _State(agent.make(entries), _Bookkeeping(agent, table.get(SHELL_KEY)))

    def save(state: _State) -> None:
        processor: KeyedProcessor = state.processor  # type: ignore[assignment]
        for key, value in processor.changes().items():
            if key == SHELL_KEY:
                raise ValueError(f"{ctx.name}: the key {SHELL_KEY!r} is the shell's")
            if value is None:
                if key in table:
                    del table[key]
            else:
                table[key] = value
        table[SHELL_KEY] = state.books.blob()

    _bind(ctx, agent, load, save)


class _OnePartitionTable(faust.Table):
    """A table whose every key lives in partition 0 of its changelog, named explicitly.

    With `use_partitioner=True` the producer picks the partition, and aiokafka needs the
    changelog topic's metadata for that; just after a start it may not have it, and the
    write fails ("'NoneType' object is not iterable" in aiokafka's `_partition`), measured
    in tests/chaos/test_exit_chaos.py. Naming the partition needs no metadata."""

    def partition_for_key(self, key: Any) -> int | None:
        return 0


def _table(ctx: AgentContext, what: str) -> Any:
    # Keys and values are JSON both ways: with Faust's default raw keys, a str key would
    # come back from the changelog as bytes after a restart. (A Table takes the serializers
    # through a Schema; as keyword arguments they fail in Service.__init__.)
    return ctx.app.tables.add(
        _OnePartitionTable(
            ctx.app,
            name=f"{ctx.name}-state",
            default=None,
            beacon=ctx.app.tables.beacon,
            partitions=1,
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
            help=f"{ctx.name}'s {what}",
        )
    )


def _bind(
    ctx: AgentContext,
    agent: StatefulAgent,
    load: Callable[[], _State],
    save: Callable[[_State], None],
) -> None:
    """The one event loop of both variants."""
    settings = ctx.settings
    prefix = settings.kafka.topic_prefix
    channel = ctx.app.topic(
        *(settings.topic(t) for t in agent.inputs),
        key_serializer="raw",
        value_serializer="raw",
    )
    holder: list[_State] = []

    async def send_all(outs: list[Out]) -> None:
        for out in outs:
            await ctx.send(
                out.topic,
                out.value,
                schema_file=agent.schema(out.topic),
                key=out.key,
                partition=out.partition,
            )

    async def forward_end(marker: EndOfStream, state: _State) -> None:
        await send_all(state.processor.on_end_of_stream(marker))
        for topic in agent.outputs:
            schema = agent.schema(topic)
            for p in range(TOPOLOGY.topic(topic).partitions):
                value = eos_record(schema, marker)
                await ctx.send(topic, value, schema_file=schema, key=marker_key(p), partition=p)

    @ctx.app.agent(channel, name=ctx.name)
    async def run(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            if not holder:
                holder.append(load())
            state = holder[0]
            msg = event.message
            logical = msg.topic[len(prefix) :] if msg.topic.startswith(prefix) else msg.topic
            where = f"{logical}/{msg.partition}"
            if state.books.applied.get(where, -1) >= msg.offset:
                continue  # applied before a crash; its outputs are already out
            try:
                schema = agent.schema(logical)
                raw = msg.value if isinstance(msg.value, bytes | bytearray) else b""
                value = ctx.serde.decode(msg.topic, bytes(raw), schema_file=schema)
                validate(schema, value, universe=agent.universe)
                marker = marker_of(value)
                if marker is not None:
                    tracker = state.books.tracker
                    if tracker is None or not agent.inputs.get(logical, False):
                        raise PoisonRecord("UNEXPECTED_END", f"no end expected on {logical}")
                    forward = tracker.on_marker(logical, msg.partition, marker)
                    if forward is not None:
                        await forward_end(forward, state)
                else:
                    ts = int(msg.timestamp * 1000) if msg.timestamp else None
                    record = Record(logical, msg.partition, msg.offset, msg.key, value, ts)
                    await send_all(state.processor.on_record(record))
                ctx.processed += 1
            except PoisonRecord as exc:
                await ctx.dead_letter(event, exc)
            except Exception as exc:  # a core bug must not stop the stream either
                log.exception("%s: processing failed", ctx.name)
                await ctx.dead_letter(event, exc)
            state.books.applied[where] = msg.offset
            try:
                save(state)
            except BaseException:
                # Memory is now ahead of the changelog, and Faust would restart this actor
                # with the same memory and without the record: the one safe way on is a
                # restart of the process from the log (the input offset is not committed).
                log.critical("%s: writing the state failed; exiting", ctx.name, exc_info=True)
                os._exit(EXIT_STATE_WRITE_FAILED)
