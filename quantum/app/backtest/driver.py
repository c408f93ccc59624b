"""The replay feed of a backtest: bars into the run's topics, one event time at a time.

Why lock-step: a pipeline of independent consumers has no fixed order between records
of different topics, so a stop-loss release and a new slot request born from the same
bar could meet the governor in either order, and two runs could trade differently.
The driver removes that freedom without touching the agents:

1. the bars of one event time go to `market.ticks` (the venue side: paper exchange,
   positions, exits, clock) and the driver waits until every reader has caught up
   (`quantum.quiescence`): fills, stops, closes and releases are all in the log;
2. the same bars go to `market.bars` (the signal path: models, selector, sizing, the
   governor's grants, orders) and the driver waits again;
3. after the last bar, an end-of-stream marker goes to every partition of both topics.

Orders placed in step 2 meet the venue at the next bar, which is the paper exchange's
fill rule anyway (market orders fill at the next bar's open).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Producer

from quantum.config import RuntimeSettings
from quantum.dlq import DLQ_SCHEMA, RawRecord, dead_letter_value
from quantum.end_of_stream import EndOfStream, marker_key, marker_record
from quantum.marketdata import Kline, RowError
from quantum.quiescence import Quiescence
from quantum.serde import AvroSerde
from topologies.declaration import MARKET_BARS, MARKET_TICKS, TOPOLOGY, dlq_topic

log = logging.getLogger(__name__)

FEED = "replay-feed"
TICK_SCHEMA = TOPOLOGY.topic(MARKET_TICKS).schema or ""


@dataclass
class FeedStats:
    bars: int = 0
    steps: int = 0
    row_errors: int = 0
    settle_s: float = 0.0
    per_symbol: dict[str, int] = field(default_factory=dict)
    # event-time span of the replay: first bar's open, last bar's close + 1 ms, and the
    # shortest step between two consecutive close times (the bar interval)
    first_ms: int | None = None
    last_ms: int | None = None
    step_ms: int | None = None


def by_event_time(items: Iterable[Kline | RowError]) -> Iterator[list[Kline | RowError]]:
    """Consecutive bars of one close time form one step; a row error travels with the
    step it was read in (it is dead-lettered, never traded)."""
    step: list[Kline | RowError] = []
    current: int | None = None
    for item in items:
        t = None if isinstance(item, RowError) else item.close_time
        if t is not None and current is not None and t != current and step:
            yield step
            step = []
        if t is not None:
            current = t
        step.append(item)
    if step:
        yield step


class LockstepFeed:
    """Produces bars phase by phase and waits for `quiescence` after each phase."""

    def __init__(
        self,
        settings: RuntimeSettings,
        quiescence: Quiescence,
        *,
        serde: AvroSerde | None = None,
        settle_timeout_s: float = 120.0,
        progress: Callable[[FeedStats], None] | None = None,
        failed: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.quiescence = quiescence
        self.serde = serde or AvroSerde.from_settings(settings)
        self.settle_timeout_s = settle_timeout_s
        self.progress = progress
        self.failed = failed
        self.stats = FeedStats()
        self._failures: list[KafkaError] = []
        self._producer = Producer(
            {
                "bootstrap.servers": settings.kafka.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 0,
            }
        )
        self._last_time = 0

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._failures.append(err)

    def _produce(
        self, logical: str, value: dict[str, Any], key: bytes, partition: int = -1
    ) -> None:
        topic = self.settings.topic(logical)
        data = self.serde.encode(topic, value, schema_file=TICK_SCHEMA)
        self._producer.produce(
            topic, key=key, value=data, partition=partition, on_delivery=self._delivered
        )

    def _flush(self) -> None:
        left = self._producer.flush(30)
        if left or self._failures:
            raise RuntimeError(f"replay feed: {left} undelivered, failures: {self._failures[:3]}")

    def _settle(self) -> None:
        self.stats.settle_s += self.quiescence.wait(self.settle_timeout_s, failed=self.failed)

    def run(self, items: Iterable[Kline | RowError]) -> FeedStats:
        for step in by_event_time(items):
            bars = [b for b in step if isinstance(b, Kline)]
            for error in (e for e in step if isinstance(e, RowError)):
                self._dead_letter(error)
            if not bars:
                continue
            records = [(b.symbol.encode(), b.to_record()) for b in bars]
            for logical in (MARKET_TICKS, MARKET_BARS):
                for key, value in records:
                    self._produce(logical, value, key)
                self._flush()
                self._settle()
            close = max(b.close_time for b in bars)
            if self.stats.first_ms is None:
                self.stats.first_ms = min(b.open_time for b in bars)
            elif close > self._last_time:
                gap = close - self._last_time
                self.stats.step_ms = (
                    gap if self.stats.step_ms is None else min(self.stats.step_ms, gap)
                )
            self.stats.last_ms = max(self.stats.last_ms or 0, close + 1)
            self._last_time = max(self._last_time, close)
            self.stats.steps += 1
            self.stats.bars += len(bars)
            for b in bars:
                self.stats.per_symbol[b.symbol] = self.stats.per_symbol.get(b.symbol, 0) + 1
            if self.progress is not None:
                self.progress(self.stats)
        self.end()
        return self.stats

    def end(self) -> None:
        """The end-of-stream marker on every partition of both bar topics, then settle."""
        marker = EndOfStream.origin(FEED, self._last_time)
        for logical in (MARKET_TICKS, MARKET_BARS):
            for p in range(TOPOLOGY.topic(logical).partitions):
                self._produce(logical, marker_record(TICK_SCHEMA, marker), marker_key(p), p)
        self._flush()
        self._settle()

    def _dead_letter(self, error: RowError) -> None:
        """A bad file row goes to market.ticks.dlq with its reason, never silently away."""
        topic = self.settings.topic(dlq_topic(MARKET_TICKS))
        raw = RawRecord(error.source, -1, error.line, error.symbol.encode(), error.raw.encode())
        value = dead_letter_value(raw, error.error, agent=FEED)
        data = self.serde.encode(topic, value, schema_file=DLQ_SCHEMA)
        self._producer.produce(topic, key=error.symbol.encode(), value=data)
        self.stats.row_errors += 1
        log.warning("replay feed: dead-lettered %s", error)
