"""The one shell of every stateful pipeline agent: decode, skip what was applied, decide,
send, remember.

A pipeline agent is a pure core behind a `Processor` (records in, `Out` records out,
`snapshot()` for its state). This module binds it to Faust:

* every input topic goes through the guarded path of `agents.runtime`: a record that
  does not decode or validate, or that the core refuses, becomes a dead letter with its
  reason, and the agent goes on;
* state lives in a Faust table (`<agent>-state`, changelog-backed, one partition so a
  restart restores every key of it: the core's snapshot, or its parts), written after
  the record's outputs were delivered, with the offset applied for each input partition.
  Faust flushes the table's changelog before it commits input offsets, so after a crash
  the restored state is at least as new as the committed offsets; a redelivered record
  whose offset the state already holds is skipped. That is what makes an at-least-once
  agent apply each record once (DESIGN.md: "every stateful processor remembers what it
  applied");
* parts (`dirty_parts`) are written in the order the processor gives them, each its own
  changelog record, then the applied offsets. A crash in between leaves some parts newer
  than the offsets: the record comes again and meets state that already holds part of its
  effect, so a processor with parts must take such a redelivery as a no-op that repeats
  its outputs, and order its parts so that any prefix of them is a state it can continue
  from (the execution ledger, the positions books and the paper exchange's order memory
  are built that way, docs/execution.md "Shells"). A part whose value is None is deleted.
* a record of a gapless input (not compacted, never written in transactions:
  `Registry.gapless`) that comes after a hole in the offsets the agent applied means Faust
  did not hand it the records in between (faust-streaming 0.15.3 can lose records fetched
  while a restarted worker is starting, docs/exits.md "Restart"). Applying it would apply
  a later bar before an earlier one, so the worker exits (status 71) before it applies
  anything, and a restart (`quantum worker --supervise`) feeds the records again, in
  order, from the committed offset. On an input written in transactions (the governor's
  decisions) a gap is usually a commit marker, so there the gap is asked about first
  (`quantum.kafka_util.CommittedProbe`): a committed record in it is a hole, as above.
  Without that check a skipped decision was lost for good: the records after it were
  applied, and the restart then took it for one applied before a crash (CI rehearsal,
  2026-11-26: a GRANTED decision that execution never saw);
* the end-of-stream marker (`quantum.end_of_stream`) is tracked on every input partition;
  once all have ended the core may flush (`on_end_of_stream`), then the marker goes to
  every partition of every output topic.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust
from confluent_kafka import KafkaException

from agents.runtime import AgentContext, stop_for_environment
from quantum.end_of_stream import EndOfStream, EndOfStreamTracker, marker_key, marker_of
from quantum.end_of_stream import marker_record as eos_record
from quantum.errors import ENVIRONMENT_ERRORS, PoisonRecord
from quantum.kafka_util import CommittedProbe
from quantum.validation import validate
from topologies.declaration import TOPOLOGY

log = logging.getLogger(__name__)

EXIT_STATE_WRITE_FAILED = 70  # the worker's exit status when a state write failed
EXIT_RECORDS_SKIPPED = 71  # ... when Faust skipped records of an input (a hole)
STATE_KEY = "state"
APPLIED_KEY = "applied"
EOS_KEY = "eos"
PART_PREFIX = "part:"


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
    """What the shell drives. Implementations map Avro dicts to a pure core and back.

    `snapshot()` is the whole state. A processor whose state is large and changes a little
    per record (per-symbol features, a ledger) may also define `dirty_parts() -> dict[str,
    Any]`: the parts changed since the last call, in the order they must be written, each
    stored under its own table key (None: the part is deleted), and `make` then receives
    `{part: value}` of every part on a restart (None on a first start).
    """

    def on_record(self, record: Record) -> list[Out]: ...

    def on_end_of_stream(self, marker: EndOfStream) -> list[Out]: ...

    def snapshot(self) -> dict[str, Any]: ...


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


class _State:
    """The processor plus the bookkeeping the shell persists beside it."""

    def __init__(self, agent: StatefulAgent, stored: Mapping[str, Any]) -> None:
        ends = {t: TOPOLOGY.topic(t).partitions for t, e in agent.inputs.items() if e}
        self.tracker = EndOfStreamTracker(ends) if ends else None
        parts = {
            k[len(PART_PREFIX) :]: v
            for k, v in stored.items()
            if k.startswith(PART_PREFIX) and v is not None
        }
        core = parts or stored.get(STATE_KEY)
        self.processor = agent.make(core)
        self.partial = hasattr(self.processor, "dirty_parts")
        self.applied: dict[str, int] = {k: int(v) for k, v in stored.get(APPLIED_KEY, {}).items()}
        if self.tracker is not None and stored.get(EOS_KEY) is not None:
            self.tracker.restore(stored[EOS_KEY])

    def save(self, table: Any, *, ended: bool) -> None:
        """Write what changed: the state (or its dirty parts), then the applied offsets."""
        if self.partial:
            for name, value in self.processor.dirty_parts().items():  # type: ignore[attr-defined]
                if value is not None:
                    table[PART_PREFIX + name] = value
                elif PART_PREFIX + name in table:
                    del table[PART_PREFIX + name]
        else:
            table[STATE_KEY] = self.processor.snapshot()
        if ended and self.tracker is not None:
            table[EOS_KEY] = self.tracker.snapshot()
        table[APPLIED_KEY] = self.applied


class _OnePartitionTable(faust.Table):
    """A table whose every key lives in partition 0 of its changelog, named explicitly.

    With `use_partitioner=True` the producer picks the partition, and aiokafka needs the
    changelog topic's metadata for that; just after a start it may not have it, and the
    write fails ("'NoneType' object is not iterable" in aiokafka's `_partition`, seen in
    tests/chaos/test_exit_chaos.py and the end-to-end test). Naming it needs no metadata."""

    def partition_for_key(self, key: Any) -> int | None:
        return 0


def _state_table(ctx: AgentContext) -> Any:
    """`<agent>-state`: one partition, JSON keys and values both ways (with Faust's default
    raw keys a str key comes back from the changelog as bytes after a restart; a Table
    takes serializers through a Schema, as keyword arguments they fail at start-up)."""
    return ctx.app.tables.add(
        _OnePartitionTable(
            ctx.app,
            name=f"{ctx.name}-state",
            default=None,
            beacon=ctx.app.tables.beacon,
            partitions=1,
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
            help=f"{ctx.name}'s core state and the input offsets it has applied",
        )
    )


def register_stateful(ctx: AgentContext, agent: StatefulAgent) -> None:
    """Declare the Faust agent and its state table on `ctx.app`."""
    settings = ctx.settings
    prefix = settings.kafka.topic_prefix
    table = _state_table(ctx)
    channel = ctx.app.topic(
        *(settings.topic(t) for t in agent.inputs),
        key_serializer="raw",
        value_serializer="raw",
    )
    holder: list[_State] = []
    from agents.registry import REGISTRY  # the registry imports every agent's spec

    gapless = frozenset(t for t in agent.inputs if REGISTRY.gapless(t))
    in_transactions = frozenset(t for t in agent.inputs if REGISTRY.written_in_transactions(t))
    probes: list[CommittedProbe] = []

    async def hole(logical: str, msg: Any, last: int) -> bool:
        """Did Faust skip records between `last` (applied) and `msg` of this input?"""
        if logical in gapless:
            return True
        if logical not in in_transactions:
            return False  # compacted: gaps are what compaction leaves
        if not probes:
            probes.append(CommittedProbe(settings.kafka.bootstrap))
        ask = probes[0].skipped
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, ask, msg.topic, msg.partition, last, msg.offset
            )
        except (KafkaException, TimeoutError) as exc:  # the broker, not the record
            stop_for_environment(ctx.name, exc)
            raise

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
                holder.append(_State(agent, dict(table.items())))
            state = holder[0]
            msg = event.message
            logical = msg.topic[len(prefix) :] if msg.topic.startswith(prefix) else msg.topic
            where = f"{logical}/{msg.partition}"
            last = state.applied.get(where)
            if last is not None and last >= msg.offset:
                continue  # applied before a crash; its outputs are already out
            if last is not None and msg.offset > last + 1 and await hole(logical, msg, last):
                log.critical(
                    "%s: %s@%d came after @%d: records in between never reached this agent; "
                    "exiting so that a restart feeds them again from the committed offset",
                    ctx.name,
                    where,
                    msg.offset,
                    last,
                )
                os._exit(EXIT_RECORDS_SKIPPED)
            ended = False
            try:
                schema = agent.schema(logical)
                raw = msg.value if isinstance(msg.value, bytes | bytearray) else b""
                value = ctx.serde.decode(msg.topic, bytes(raw), schema_file=schema)
                validate(schema, value, universe=agent.universe)
                marker = marker_of(value)
                ended = marker is not None
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
            except ENVIRONMENT_ERRORS as exc:
                stop_for_environment(ctx.name, exc)
            except Exception as exc:  # a core bug must not stop the stream either
                log.exception("%s: processing failed", ctx.name)
                await ctx.dead_letter(event, exc)
            state.applied[where] = msg.offset
            try:
                state.save(table, ended=ended)
            except BaseException:
                # Memory is now ahead of the changelog, and Faust would go on with the same
                # memory and without the record: the one safe way on is a restart of the
                # process from the log (the input offset is not committed).
                log.critical("%s: writing the state failed; exiting", ctx.name, exc_info=True)
                os._exit(EXIT_STATE_WRITE_FAILED)
