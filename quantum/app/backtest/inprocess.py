"""The in-process replay engine: every agent's core in one process, the broker at both ends.

`quantum backtest --engine inprocess` (and `quantum replay`) run it instead of the
lock-step worker processes. It keeps the platform's promise that the same cores run live,
in replay and in unit tests: each agent is bound exactly as its Faust shell binds it
(`binding(ctx)` in agents/<name>/agent.py gives the same `StatefulAgent`: inputs, outputs,
schemas, universe and `make`), the governor runs its `GovernorCore` behind the same
`decode_command`, and the clock its `heartbeat`. What goes is the cost between them: no
Faust hop, no commit and no settle wait per phase.

Through the broker:
* the bars are written to `market.ticks` and `market.bars` under the run prefix (batched),
  then read back from `market.ticks` in large batches (`consume(num_messages=...)`) and
  decoded with the registry's schemas (`AvroSerde`, compiled codec);
* every record an agent emits is encoded and written to its topic under the run prefix
  (batched, idempotent producer), to the partition Faust would choose (murmur2 of the key,
  as aiokafka's default partitioner), and the readers get the value decoded back from
  those bytes, validated as their shells validate it. The report (report.py) reads the
  topics as it does after a lock-step run.

Ordering rule (docs/replay.md): per event time (all symbols' bars that close together),
1. ticks phase: the step's bars, by symbol, each delivered to every reader of
   `market.ticks` in the registry's order; every record that causes is queued, and the
   queue is drained first-in first-out, each record to each of its readers in registry
   order, until nothing is left;
2. bars phase: the same bars on `market.bars`, drained the same way;
3. after the last step, the end-of-stream marker on every partition of both bar topics.
That is one of the interleavings the lock-step driver allows (a phase there ends when
every reader has caught up; inside it, records of different partitions may meet an agent
in any order), so both engines have the same semantics, and this one fixes the order.

Not here: crash recovery. The shells' state tables, applied offsets and the governor's
transactions and snapshots are what make a live agent survive a restart; an in-process
run that fails is rerun from its first bar under a new prefix.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from agents.clock.config import ClockConfig
from agents.clock.core import heartbeat
from agents.governor.codec import COMMAND_SCHEMA, DECISION_SCHEMA, decision_to_avro
from agents.governor.core import GovernorCore
from agents.governor.io import decode_command
from agents.registry import REGISTRY
from agents.runtime import AgentContext
from agents.spec import AgentSpec
from agents.stateful import Out, Processor, Record, StatefulAgent
from quantum.app.backtest.driver import FEED, FeedStats, by_event_time
from quantum.dlq import DLQ_SCHEMA, RawRecord, dead_letter_value
from quantum.end_of_stream import EndOfStream, EndOfStreamTracker, marker_key, marker_of
from quantum.end_of_stream import marker_record as eos_record
from quantum.errors import ENVIRONMENT_ERRORS, PoisonRecord
from quantum.marketdata import Kline, RowError
from quantum.records import tagged
from quantum.serde import AvroSerde
from quantum.validation import validate
from topologies.declaration import (
    MARKET_BARS,
    MARKET_TICKS,
    PORTFOLIO,
    PORTFOLIO_DECISIONS,
    TOPOLOGY,
    dlq_topic,
)

log = logging.getLogger(__name__)

TICK_SCHEMA = TOPOLOGY.topic(MARKET_TICKS).schema or ""
FIRST_CHUNK_BARS = 500  # the first batch is small: the first bar is decided within a second
CHUNK_BARS = 20_000  # then bars are written and read back this many at a time
CONSUME_BATCH = 10_000


def kafka_partition(key: bytes, partitions: int, _cache: dict[tuple[bytes, int], int] = {}) -> int:  # noqa: B006
    """The partition aiokafka's default partitioner (Faust's) gives `key`: murmur2, Java's."""
    hit = _cache.get((key, partitions))
    if hit is None:
        from aiokafka.partitioner import murmur2

        hit = _cache[(key, partitions)] = (murmur2(key) & 0x7FFFFFFF) % partitions
    return hit


@dataclass(slots=True)
class Delivered:
    """One record as its readers get it: where it is in the log, its bytes, and (lazily)
    its value decoded with a reader schema."""

    topic: str  # logical
    partition: int
    offset: int
    key: bytes | None
    data: bytes | None
    timestamp_ms: int
    decoded: dict[str, Any] = field(default_factory=dict)  # schema file -> value or error
    valid: dict[Any, Any] = field(default_factory=dict)  # (schema, universe) -> None or error


class _Reader:
    """One agent as the engine drives it."""

    name: str

    def deliver(self, rec: Delivered, engine: InProcessEngine) -> list[Out]:
        raise NotImplementedError

    def drain(self) -> None:
        """Between chunks: drop what a shell would have persisted (memory stays bounded)."""


class _StatefulReader(_Reader):
    """agents/stateful.py's `register_stateful`, minus Faust and the state table."""

    def __init__(self, name: str, agent: StatefulAgent) -> None:
        self.name = name
        self.agent = agent
        ends = {t: TOPOLOGY.topic(t).partitions for t, e in agent.inputs.items() if e}
        self.tracker = EndOfStreamTracker(ends) if ends else None
        self.processor: Processor = agent.make(None)
        self.partial = hasattr(self.processor, "dirty_parts")

    def deliver(self, rec: Delivered, engine: InProcessEngine) -> list[Out]:
        agent = self.agent
        schema = agent.schema(rec.topic)
        value = engine.decode(rec, schema)
        engine.check(rec, schema, value, agent.universe)
        marker = marker_of(value)
        if marker is None:
            record = Record(rec.topic, rec.partition, rec.offset, rec.key, value, rec.timestamp_ms)
            return self.processor.on_record(record)
        if self.tracker is None:
            raise PoisonRecord("UNEXPECTED_END", f"no end expected on {rec.topic}")
        forward = self.tracker.on_marker(rec.topic, rec.partition, marker)
        if forward is None:
            return []
        outs = list(self.processor.on_end_of_stream(forward))
        for topic in agent.outputs:
            schema_out = agent.schema(topic)
            for p in range(TOPOLOGY.topic(topic).partitions):
                outs.append(Out(topic, eos_record(schema_out, forward), marker_key(p), p))
        return outs

    def drain(self) -> None:
        if self.partial:
            self.processor.dirty_parts()  # type: ignore[attr-defined]


class _ClockReader(_Reader):
    """agents/clock/agent.py: one heartbeat per `every_ms` of tick time, per tick partition."""

    name = "clock"

    def __init__(self, config: ClockConfig) -> None:
        self.every_ms = config.every_ms
        self.last: dict[int, int | None] = {}

    def deliver(self, rec: Delivered, engine: InProcessEngine) -> list[Out]:
        value = engine.decode(rec, TICK_SCHEMA)
        engine.check(rec, TICK_SCHEMA, value, None)
        p = rec.partition
        self.last[p], clock = heartbeat(self.last.get(p), value["close_time"], self.every_ms)
        if clock is None:
            return []
        return [Out(PORTFOLIO, {"command": tagged(clock)}, b"portfolio")]


class _GovernorReader(_Reader):
    """agents/governor/shell.py's decision step: `decode_command`, then the core; each
    decision stamped with its command's offset in the portfolio topic."""

    name = "governor"

    def __init__(self, settings: Any, serde: AvroSerde) -> None:
        self.core = GovernorCore(settings.governor)
        self.serde = serde
        self.topic = settings.topic(PORTFOLIO)

    def deliver(self, rec: Delivered, engine: InProcessEngine) -> list[Out]:
        command = decode_command(
            self.serde,
            self.topic,
            rec.data or b"",
            record_timestamp_ms=rec.timestamp_ms,
            max_event_skew_ms=self.core.config.max_event_skew_ms,
        )
        return [
            Out(PORTFOLIO_DECISIONS, decision_to_avro(d, rec.offset), (d.symbol or "").encode())
            for d in self.core.handle(command)
        ]


OUT_SCHEMAS = {PORTFOLIO_DECISIONS: DECISION_SCHEMA, PORTFOLIO: COMMAND_SCHEMA}


@dataclass
class EngineStats:
    """Where the time went: per agent (seconds, deliveries), and the engine's own parts."""

    agent_s: dict[str, float] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)
    records_out: int = 0
    write_s: float = 0.0  # feed: encoding and producing the bars
    read_s: float = 0.0  # consuming and decoding them back
    first_bar_s: float | None = None  # from run() to the first bar decided


class InProcessEngine:
    """Runs a replay of `items` on `settings` (the composed Settings, with the run prefix and
    the run's configuration), topics already applied and empty."""

    def __init__(
        self,
        settings: Any,
        *,
        agents: Iterable[str],
        serde: AvroSerde | None = None,
        progress: Callable[[FeedStats], None] | None = None,
        chunk_bars: int = CHUNK_BARS,
    ) -> None:
        self.settings = settings
        self.serde = serde or AvroSerde.from_settings(settings)
        self.progress = progress
        self.chunk_bars = chunk_bars
        self.stats = FeedStats()
        self.engine_stats = EngineStats()
        names = set(agents)
        specs = [s for s in REGISTRY if s.name in names]  # registry order: delivery order
        self.readers: dict[str, list[_Reader]] = {}
        self._schemas: dict[tuple[str, str], str] = {}  # (agent, topic) -> writer schema
        for spec in specs:
            reader = self._bind(spec)
            for topic in spec.reads:
                self.readers.setdefault(topic, []).append(reader)
        self._queue: deque[Delivered] = deque()
        self._bar_ends: dict[tuple[str, int], int] = {}  # market.* partition -> next offset
        self._offsets: dict[tuple[str, int], int] = {}
        self._failures: list[KafkaError] = []
        self._producer = Producer(
            {
                "bootstrap.servers": settings.kafka.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                "compression.type": "lz4",
            }
        )
        self._last_time = 0

    # ------------------------------------------------------------------ binding

    def _bind(self, spec: AgentSpec) -> _Reader:
        settings = self.settings
        if spec.name == "governor":
            self._schemas[("governor", PORTFOLIO_DECISIONS)] = DECISION_SCHEMA
            return _GovernorReader(settings, self.serde)
        if spec.name == "clock":
            self._schemas[("clock", PORTFOLIO)] = COMMAND_SCHEMA
            return _ClockReader(spec.own_config(settings) or ClockConfig())
        module = spec.load_shell().__module__
        binding = importlib.import_module(module).binding
        ctx = AgentContext(
            app=None,  # type: ignore[arg-type]  # no Faust app: binding() needs none
            settings=settings,
            serde=self.serde,
            name=spec.name,
            config=spec.own_config(settings),
        )
        agent: StatefulAgent = binding(ctx)
        for topic in spec.writes:
            self._schemas[(spec.name, topic)] = agent.schema(topic)
        return _StatefulReader(spec.name, agent)

    # ------------------------------------------------------------------ records

    def decode(self, rec: Delivered, schema: str) -> dict[str, Any]:
        """The value a shell's `serde.decode(..., schema_file=schema)` gives, once per
        record and schema; a PoisonRecord is raised again to every reader that asks."""
        hit = rec.decoded.get(schema)
        if hit is None:
            try:
                hit = self.serde.decode(
                    self.settings.topic(rec.topic), rec.data or b"", schema_file=schema
                )
            except PoisonRecord as exc:
                hit = exc
            rec.decoded[schema] = hit
        if isinstance(hit, PoisonRecord):
            raise hit
        return hit

    def check(
        self, rec: Delivered, schema: str, value: dict[str, Any], universe: frozenset[str] | None
    ) -> None:
        """`validate` as the shell calls it, once per record, schema and universe."""
        k = (schema, universe)
        if k not in rec.valid:
            try:
                validate(schema, value, universe=universe)
                rec.valid[k] = None
            except PoisonRecord as exc:
                rec.valid[k] = exc
        exc = rec.valid[k]
        if exc is not None:
            raise exc

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._failures.append(err)

    def _produce(self, topic: str, key: bytes | None, data: bytes | None, partition: int) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, key=key, value=data, partition=partition, on_delivery=self._delivered
                )
                return
            except BufferError:
                self._producer.poll(0.05)

    def _next_offset(self, logical: str, partition: int) -> int:
        """Offsets of a fresh run topic written without transactions: 0, 1, 2, ..."""
        k = (logical, partition)
        offset = self._offsets.get(k, 0)
        self._offsets[k] = offset + 1
        return offset

    def emit(self, writer: str, outs: list[Out], now_ms: int) -> None:
        """Encode and write each output, and queue it for its readers."""
        for out in outs:
            spec = TOPOLOGY.topic(out.topic)
            if out.partition is not None:
                p = out.partition
            elif out.key is not None:
                p = kafka_partition(out.key, spec.partitions)
            else:
                p = 0  # no output of the platform is keyless; Faust would pick at random
            schema = self._schemas.get((writer, out.topic)) or spec.schema or ""
            physical = self.settings.topic(out.topic)
            data = (
                None
                if out.value is None
                else self.serde.encode(physical, out.value, schema_file=schema)
            )
            self._produce(physical, out.key, data, p)
            self.engine_stats.records_out += 1
            offset = self._next_offset(out.topic, p)
            if out.topic in self.readers:
                self._queue.append(Delivered(out.topic, p, offset, out.key, data, now_ms))

    def _dead_letter(self, agent: str, rec: Delivered, exc: BaseException, now_ms: int) -> None:
        physical = self.settings.topic(rec.topic)
        raw = RawRecord(
            physical, rec.partition, rec.offset, rec.key, rec.data, None, rec.timestamp_ms
        )
        target = dlq_topic(physical)
        value = dead_letter_value(raw, exc, agent=agent)
        data = self.serde.encode(target, value, schema_file=DLQ_SCHEMA)
        self._produce(target, rec.key, data, 0)
        log.warning(
            "%s: dead-lettered %s[%d]@%d: %s", agent, physical, rec.partition, rec.offset, exc
        )

    def _drain(self) -> None:
        """Deliver queued records first-in first-out, each to its readers in registry order."""
        queue = self._queue
        agent_s = self.engine_stats.agent_s
        counts = self.engine_stats.deliveries
        clock = time.perf_counter
        while queue:
            rec = queue.popleft()
            now_ms = int(time.time() * 1000)
            for reader in self.readers.get(rec.topic, ()):
                t0 = clock()
                # as in the shells: an output that fails to encode dead-letters the input
                # (outputs before it are out, as a Faust agent's sends before the failure)
                try:
                    outs = reader.deliver(rec, self)
                    if outs:
                        self.emit(reader.name, outs, now_ms)
                except PoisonRecord as exc:
                    self._dead_letter(reader.name, rec, exc, now_ms)
                except ENVIRONMENT_ERRORS:
                    raise  # the registry, not the record: the run fails, nothing is dead-lettered
                except Exception as exc:  # a core bug must not stop the run either
                    log.exception("%s: processing failed", reader.name)
                    self._dead_letter(reader.name, rec, exc, now_ms)
                agent_s[reader.name] = agent_s.get(reader.name, 0.0) + clock() - t0
                counts[reader.name] = counts.get(reader.name, 0) + 1

    # ------------------------------------------------------------------ the feed

    def _chunks(self, items: Iterable[Kline | RowError]) -> Iterator[list[list[Kline | RowError]]]:
        chunk: list[list[Kline | RowError]] = []
        size, limit = 0, min(FIRST_CHUNK_BARS, self.chunk_bars)
        for step in by_event_time(items):
            chunk.append(step)
            size += len(step)
            if size >= limit:
                yield chunk
                chunk, size, limit = [], 0, self.chunk_bars
        if chunk:
            yield chunk

    def _write_bars(self, chunk: list[list[Kline | RowError]]) -> int:
        """Both bar topics get the chunk's bars, keyed by symbol and partitioned by the
        producer as the lock-step feed's are; returns how many (read back next)."""
        ticks, bars = self.settings.topic(MARKET_TICKS), self.settings.topic(MARKET_BARS)
        encode = self.serde.encode
        count = 0
        for step in chunk:
            for item in step:
                if isinstance(item, RowError):
                    self._row_error(item)
                    continue
                key = item.symbol.encode()
                data = encode(ticks, item.to_record(), schema_file=TICK_SCHEMA)
                self._produce_bar(ticks, key, data)
                self._produce_bar(bars, key, data)
                count += 1
        self._flush()
        return count

    def _bar_delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._failures.append(err)
            return
        logical = MARKET_TICKS if msg.topic().endswith(MARKET_TICKS) else MARKET_BARS
        self._bar_ends[(logical, msg.partition())] = msg.offset() + 1

    def _produce_bar(self, topic: str, key: bytes, data: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, key=key, value=data, on_delivery=self._bar_delivered)
                return
            except BufferError:
                self._producer.poll(0.05)

    def _row_error(self, error: RowError) -> None:
        topic = self.settings.topic(dlq_topic(MARKET_TICKS))
        raw = RawRecord(error.source, -1, error.line, error.symbol.encode(), error.raw.encode())
        value = dead_letter_value(raw, error.error, agent=FEED)
        self._produce(
            topic, error.symbol.encode(), self.serde.encode(topic, value, schema_file=DLQ_SCHEMA), 0
        )
        self.stats.row_errors += 1

    def _flush(self) -> None:
        left = self._producer.flush(60)
        if left or self._failures:
            raise RuntimeError(f"in-process engine: {left} undelivered, {self._failures[:3]}")

    def _read_back(self, consumer: Consumer, want: int) -> list[Delivered]:
        """The chunk's bars from market.ticks, as a reader fetches them: in large batches."""
        left = want
        out: list[Delivered] = []
        deadline = time.monotonic() + 60
        while left > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"in-process engine: bars not read back: {left}")
            for msg in consumer.consume(num_messages=CONSUME_BATCH, timeout=1.0):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(msg.error())
                p = msg.partition()
                left -= 1
                rec = Delivered(
                    MARKET_TICKS, p, msg.offset(), msg.key(), msg.value(), msg.timestamp()[1]
                )
                self.decode(rec, TICK_SCHEMA)  # decoded once, here, for every reader
                out.append(rec)
        return out

    def run(self, items: Iterable[Kline | RowError]) -> FeedStats:
        t_start = time.perf_counter()
        es = self.engine_stats
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka.bootstrap,
                "group.id": f"{self.settings.kafka.topic_prefix}inprocess",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 10,
            }
        )
        ticks = self.settings.topic(MARKET_TICKS)
        n = TOPOLOGY.topic(MARKET_TICKS).partitions
        consumer.assign([TopicPartition(ticks, p, 0) for p in range(n)])
        try:
            for chunk in self._chunks(items):
                t0 = time.perf_counter()
                want = self._write_bars(chunk)
                t1 = time.perf_counter()
                records = self._read_back(consumer, want)
                es.write_s += t1 - t0
                es.read_s += time.perf_counter() - t1
                self._replay(records, t_start)
                for reader in {id(r): r for rs in self.readers.values() for r in rs}.values():
                    reader.drain()
                self._producer.poll(0)
            self._end()
            self._flush()
        finally:
            consumer.close()
        return self.stats

    def _replay(self, records: list[Delivered], t_start: float) -> None:
        """Steps by event time; in each, the ticks phase, then the bars phase."""
        steps: dict[int, list[Delivered]] = {}
        for rec in records:
            steps.setdefault(rec.decoded[TICK_SCHEMA]["close_time"], []).append(rec)
        for close_time in sorted(steps):
            step = sorted(
                steps[close_time],
                key=lambda r: (r.decoded[TICK_SCHEMA]["symbol"], r.partition, r.offset),
            )
            self._queue.extend(step)
            self._drain()
            if self.engine_stats.first_bar_s is None:
                self.engine_stats.first_bar_s = time.perf_counter() - t_start
            for r in step:
                bar = Delivered(MARKET_BARS, r.partition, r.offset, r.key, r.data, r.timestamp_ms)
                bar.decoded, bar.valid = r.decoded, dict(r.valid)
                self._queue.append(bar)
            self._drain()
            self._span(step, close_time)
            self._last_time = max(self._last_time, close_time)
            self.stats.steps += 1
            self.stats.bars += len(step)
            per = self.stats.per_symbol
            for r in step:
                s = r.decoded[TICK_SCHEMA]["symbol"]
                per[s] = per.get(s, 0) + 1
            if self.progress is not None:
                self.progress(self.stats)

    def _span(self, step: list[Delivered], close: int) -> None:
        """The event-time span the report needs, as the lock-step feed records it: the first
        bar's open, the last close + 1 ms, the shortest step between two close times."""
        stats = self.stats
        if stats.first_ms is None:
            stats.first_ms = min(r.decoded[TICK_SCHEMA]["open_time"] for r in step)
        elif close > self._last_time:
            gap = close - self._last_time
            stats.step_ms = gap if stats.step_ms is None else min(stats.step_ms, gap)
        stats.last_ms = max(stats.last_ms or 0, close + 1)

    def _end(self) -> None:
        """The end-of-stream marker on every partition of both bar topics, drained."""
        marker = EndOfStream.origin(FEED, self._last_time)
        value = eos_record(TICK_SCHEMA, marker)
        now_ms = int(time.time() * 1000)
        for logical in (MARKET_TICKS, MARKET_BARS):
            physical = self.settings.topic(logical)
            for p in range(TOPOLOGY.topic(logical).partitions):
                data = self.serde.encode(physical, value, schema_file=TICK_SCHEMA)
                self._produce(physical, marker_key(p), data, p)
                offset = self._bar_ends.get((logical, p), 0)
                self._queue.append(Delivered(logical, p, offset, marker_key(p), data, now_ms))
            self._drain()
