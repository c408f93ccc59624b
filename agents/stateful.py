"""The one shell of every stateful pipeline agent: decode, skip what was applied, decide,
send, remember.

A pipeline agent is a pure core behind a `Processor` (records in, `Out` records out,
`snapshot()` for its state). This module binds it to Faust:

* every input topic goes through the guarded path of `agents.runtime`: a record that
  does not decode or validate, or that the core refuses, becomes a dead letter with its
  reason, and the agent goes on;
* state lives in a Faust table (`<agent>-state`, changelog-backed, one partition so a
  single key holds the whole core), written after the record's outputs were delivered,
  together with the offset applied for each input partition. Faust flushes the table's
  changelog before it commits input offsets, so after a crash the restored state is at
  least as new as the committed offsets; a redelivered record whose offset the state
  already holds is skipped. That is what makes an at-least-once agent apply each record
  once (DESIGN.md: "every stateful processor remembers what it applied");
* a core whose state is too big to rewrite after every record (a ledger, an order
  memory) is a `KeyedProcessor`: besides its small `snapshot()` it keeps items under
  keys of their own (`item:<key>`), and after each record only the items it changed are
  written, before the snapshot key. A crash between the two leaves some items newer than
  the snapshot and its applied offsets: the record comes again and meets state that
  already holds part of its effect, so a keyed core must take a redelivery against its
  own updated items as a no-op that repeats its outputs (the execution ledger, the
  positions books and the paper exchange's order memory are built that way);
* the end-of-stream marker (`quantum.end_of_stream`) is tracked on every input partition;
  once all have ended the core may flush (`on_end_of_stream`), then the marker goes to
  every partition of every output topic.
"""

from __future__ import annotations

import logging
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
ITEM_PREFIX = "item:"  # a KeyedProcessor's items, beside STATE_KEY in the same table


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
    """One output record: an Avro value for a logical topic (None: a tombstone, for a
    compacted topic)."""

    topic: str
    value: dict[str, Any] | None
    key: bytes | None
    partition: int | None = None  # None: by key


class Processor(Protocol):
    """What the shell drives. Implementations map Avro dicts to a pure core and back."""

    def on_record(self, record: Record) -> list[Out]: ...

    def on_end_of_stream(self, marker: EndOfStream) -> list[Out]: ...

    def snapshot(self) -> dict[str, Any]: ...


class KeyedProcessor(Processor, Protocol):
    """A processor that keeps most of its state in items: `snapshot()` is the small rest."""

    def take_changes(self) -> dict[str, Any | None]:
        """Items changed since the last call, key -> JSON-safe value (None: deleted)."""
        ...


@dataclass(frozen=True)
class StatefulAgent:
    """How a stateful agent is bound: its inputs, outputs and how to (re)build its core.

    inputs: logical topic -> whether the end-of-stream marker comes through it (a compacted
        state topic such as `positions` never ends).
    outputs: logical topics the marker is forwarded to once every input has ended.
    make: builds the processor from the table's last snapshot (None on a first start).
    make_keyed: instead of `make`, for a `KeyedProcessor`: builds it from the last
        snapshot (None if there is none) and the items in the table ({} on a first start).
    universe: symbols to check at decode (None: any well-formed symbol).
    schemas: schema file per logical topic where it is not the topology's (a command
        union on the portfolio topic, say).
    """

    inputs: Mapping[str, bool]
    outputs: tuple[str, ...]
    make: Callable[[dict[str, Any] | None], Processor] | None = None
    universe: frozenset[str] | None = None
    schemas: Mapping[str, str] = field(default_factory=dict)
    make_keyed: Callable[[dict[str, Any] | None, dict[str, Any]], KeyedProcessor] | None = None

    def __post_init__(self) -> None:
        if (self.make is None) == (self.make_keyed is None):
            raise ValueError("a stateful agent needs exactly one of make and make_keyed")

    def schema(self, logical: str) -> str:
        return self.schemas.get(logical) or TOPOLOGY.topic(logical).schema or ""


class _State:
    """The processor plus the bookkeeping the shell persists beside it."""

    def __init__(
        self, agent: StatefulAgent, blob: dict[str, Any] | None, items: dict[str, Any]
    ) -> None:
        ends = {t: TOPOLOGY.topic(t).partitions for t, e in agent.inputs.items() if e}
        self.tracker = EndOfStreamTracker(ends) if ends else None
        self.applied: dict[str, int] = {}
        core = None if blob is None else blob["core"]
        self.keyed: KeyedProcessor | None = None
        if agent.make_keyed is not None:
            self.keyed = agent.make_keyed(core, items)
            self.processor: Processor = self.keyed
        else:
            assert agent.make is not None
            self.processor = agent.make(core)
        if blob is not None:
            self.applied = {k: int(v) for k, v in blob["applied"].items()}
            if self.tracker is not None and blob.get("eos") is not None:
                self.tracker.restore(blob["eos"])

    def blob(self) -> dict[str, Any]:
        return {
            "core": self.processor.snapshot(),
            "applied": self.applied,
            "eos": None if self.tracker is None else self.tracker.snapshot(),
        }


def register_stateful(ctx: AgentContext, agent: StatefulAgent) -> None:
    """Declare the Faust agent and its state table on `ctx.app`."""
    settings = ctx.settings
    prefix = settings.kafka.topic_prefix
    table = ctx.app.Table(
        f"{ctx.name}-state",
        default=None,
        partitions=1,
        use_partitioner=True,
        # Faust tables take their serializers through a schema (not as keywords)
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
        help=f"{ctx.name}'s core state and the input offsets it has applied",
    )
    channel = ctx.app.topic(
        *(settings.topic(t) for t in agent.inputs),
        key_serializer="raw",
        value_serializer="raw",
    )
    holder: list[_State] = []

    def items() -> dict[str, Any]:
        if agent.make_keyed is None:
            return {}
        return {
            k[len(ITEM_PREFIX) :]: v
            for k, v in table.items()
            if isinstance(k, str) and k.startswith(ITEM_PREFIX) and v is not None
        }

    def persist(state: _State) -> None:
        if state.keyed is not None:
            for key, value in state.keyed.take_changes().items():
                name = ITEM_PREFIX + key
                if value is not None:
                    table[name] = value
                elif name in table:
                    del table[name]
        table[STATE_KEY] = state.blob()

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
                holder.append(_State(agent, table.get(STATE_KEY), items()))
            state = holder[0]
            msg = event.message
            logical = msg.topic[len(prefix) :] if msg.topic.startswith(prefix) else msg.topic
            where = f"{logical}/{msg.partition}"
            if state.applied.get(where, -1) >= msg.offset:
                continue  # applied before a crash; its outputs are already out
            try:
                schema = agent.schema(logical)
                raw = msg.value if isinstance(msg.value, bytes | bytearray) else b""
                value = ctx.serde.decode(msg.topic, bytes(raw), schema_file=schema)
                validate(schema, value, universe=agent.universe)
                marker = marker_of(value)
                if marker is not None:
                    if state.tracker is None or logical not in agent.inputs:
                        raise PoisonRecord("UNEXPECTED_END", f"no end expected on {logical}")
                    forward = state.tracker.on_marker(logical, msg.partition, marker)
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
            state.applied[where] = msg.offset
            persist(state)
