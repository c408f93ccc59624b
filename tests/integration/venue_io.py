"""Test helpers for the venue side (paper exchange, execution, positions) on the real broker:
records of each input topic, a producer that waits for delivery, and whole-topic readers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from agents.execution.codec import entry_from_avro
from agents.execution.model import IntentEntry
from agents.governor.codec import COMMAND_SCHEMA, command_from_avro, decision_to_avro
from agents.governor.model import Command, Decision, DecisionKind, Regime, Side
from quantum.config import RuntimeSettings
from quantum.dlq import DLQ_SCHEMA
from quantum.end_of_stream import FIELD as MARKER_FIELD
from quantum.errors import DecodeError
from quantum.kafka_util import read_range
from quantum.marketdata import Kline
from quantum.quiescence import Quiescence
from quantum.schemas import format_decimal
from quantum.serde import AvroSerde
from topologies.declaration import (
    EXECUTION_LEDGER,
    MARKET_TICKS,
    PORTFOLIO,
    PORTFOLIO_DECISIONS,
    SIZED_INTENTS,
    TOPOLOGY,
    dlq_topic,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000


def bar(symbol: str, i: int, o: str, h: str, low: str, c: str) -> Kline:
    """The i-th one-minute bar after T0."""
    start = T0 + i * MINUTE
    prices = [Decimal(x) for x in (o, h, low, c)]
    return Kline(symbol, "1m", start, start + MINUTE - 1, *prices, volume=Decimal(10))


def sized_plan(
    intent_id: str,
    symbol: str,
    side: Side,
    quantity: str,
    price: str,
    at: int,
    leverage: int = 10,
) -> dict[str, Any]:
    """A trade.sized record (the entry plan sizing writes)."""
    p = Decimal(price)
    stop = p * Decimal("0.98") if side == Side.LONG else p * Decimal("1.02")
    return {
        "intent_id": intent_id,
        "signal_id": f"sig-{intent_id}",
        "symbol": symbol,
        "side": side.value,
        "entry_price": format_decimal(p),
        "stop_loss": format_decimal(stop),
        "take_profit": None,
        "leverage": leverage,
        "score": 0.7,
        "quantity": quantity,
        "notional": format_decimal(p * Decimal(quantity)),
        "event_time": at,
        MARKER_FIELD: None,
    }


def decision(
    kind: DecisionKind,
    intent_id: str | None,
    symbol: str | None,
    at: int,
    n: int,
    side: Side | None = Side.LONG,
) -> dict[str, Any]:
    """A portfolio.decisions record as the governor writes it."""
    d = Decision(
        decision_id=f"cmd-{n}#0",
        command_id=f"cmd-{n}",
        kind=kind,
        event_time_ms=at,
        intent_id=intent_id,
        symbol=symbol,
        side=side,
        notional=None,
        score=0.7,
        deny_reason=None,
        release_reason=None,
        for_intent_id=None,
        regime=Regime.BASE,
        halted=False,
        open_after=0,
        reserved_after=1,
        active_slots=4,
        max_open_positions=10,
    )
    return decision_to_avro(d, n)


@dataclass
class Feed:
    """Encodes and produces records to logical topics; `flush` waits for delivery."""

    settings: RuntimeSettings
    serde: AvroSerde
    producer: Producer = field(init=False)

    def __post_init__(self) -> None:
        self.producer = Producer(
            {"bootstrap.servers": self.settings.kafka.bootstrap, "acks": "all", "linger.ms": 1}
        )

    def send(self, logical: str, value: dict[str, Any], key: bytes, schema: str = "") -> None:
        topic = self.settings.topic(logical)
        schema = schema or (TOPOLOGY.topic(logical).schema or "")
        data = self.serde.encode(topic, value, schema_file=schema)
        self.producer.produce(topic, key=key, value=data)

    def raw(self, logical: str, data: bytes, key: bytes) -> None:
        self.producer.produce(self.settings.topic(logical), key=key, value=data)

    def tick(self, k: Kline) -> None:
        self.send(MARKET_TICKS, k.to_record(), k.symbol.encode())

    def plan(self, value: dict[str, Any]) -> None:
        self.send(SIZED_INTENTS, value, value["symbol"].encode())

    def decide(self, value: dict[str, Any]) -> None:
        self.send(PORTFOLIO_DECISIONS, value, b"portfolio")

    def flush(self) -> None:
        left = self.producer.flush(30)
        assert left == 0, f"{left} records undelivered"


def read_all(settings: RuntimeSettings, serde: AvroSerde, logical: str) -> list[dict[str, Any]]:
    """Every record of a topic (all partitions), decoded; tombstones and the test's own
    poison (records that do not decode) skipped."""
    topic = settings.topic(logical)
    schema = TOPOLOGY.topic(logical).schema or ""
    out = []
    for msg in read_range(settings.kafka.bootstrap, topic, isolation="read_uncommitted"):
        if msg.value() is not None:
            try:
                out.append(serde.decode(topic, msg.value(), schema_file=schema))
            except DecodeError:
                continue
    return out


def read_commands(settings: RuntimeSettings, serde: AvroSerde) -> list[Command]:
    topic = settings.topic(PORTFOLIO)
    return [
        command_from_avro(serde.decode(topic, msg.value(), schema_file=COMMAND_SCHEMA))
        for msg in read_range(settings.kafka.bootstrap, topic, isolation="read_uncommitted")
    ]


def read_ledger(settings: RuntimeSettings, serde: AvroSerde) -> dict[str, IntentEntry]:
    """The ledger topic compacted by hand: the last record per intent id."""
    topic = settings.topic(EXECUTION_LEDGER)
    schema = TOPOLOGY.topic(EXECUTION_LEDGER).schema or ""
    entries: dict[str, IntentEntry] = {}
    for msg in read_range(settings.kafka.bootstrap, topic, isolation="read_uncommitted"):
        key = (msg.key() or b"").decode()
        if msg.value() is None:
            entries.pop(key, None)
        else:
            entries[key] = entry_from_avro(serde.decode(topic, msg.value(), schema_file=schema))
    return entries


def read_dlq(settings: RuntimeSettings, serde: AvroSerde, logical: str) -> list[dict[str, Any]]:
    topic = settings.topic(dlq_topic(logical))
    return [
        serde.decode(topic, msg.value(), schema_file=DLQ_SCHEMA)
        for msg in read_range(settings.kafka.bootstrap, topic, isolation="read_uncommitted")
    ]


def settle(
    quiet: Quiescence,
    alive: Callable[[], bool],
    log: Path,
    timeout_s: float = 120.0,
) -> float:
    """Wait until every reader caught up (`Quiescence`); fail at once, with the worker's
    log, if a worker that should be running died. Returns the seconds waited."""
    try:
        return quiet.wait(timeout_s, failed=lambda: None if alive() else "a worker died")
    except (TimeoutError, RuntimeError) as exc:
        raise AssertionError(f"{exc}\n{log.read_text()[-4000:]}") from exc
