"""Reconciliation against Binance: read ours (the positions topic) and theirs (REST),
compare (agents.binance_exchange.reconcile), and in the loop halt on a confirmed
mismatch: a `Halt` command with the differences on the portfolio topic and a
RECONCILE_MISMATCH alert on risk.warnings."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from agents.binance_exchange.model import Alert, AlertKind
from agents.binance_exchange.reconcile import (
    Confirmation,
    Diff,
    ExchangeOrder,
    ExchangePosition,
    OurPosition,
    compare,
)
from agents.binance_exchange.sink import Sink
from agents.governor.codec import COMMAND_SCHEMA, command_to_avro
from agents.governor.model import Halt as HaltCommand
from exchange.binance.rest import BinanceFutures
from quantum.config import RuntimeSettings
from quantum.kafka_util import read_range
from quantum.records import to_avro
from quantum.schemas import parse_decimal
from quantum.serde import AvroSerde
from topologies.declaration import PORTFOLIO, POSITIONS, RISK_WARNINGS, TOPOLOGY

log = logging.getLogger(__name__)
PROCESSOR = "reconcile"


def our_positions(settings: RuntimeSettings, serde: AvroSerde) -> list[OurPosition]:
    """The latest record per symbol of the positions topic, open ones as signed amounts."""
    topic = settings.topic(POSITIONS)
    schema = TOPOLOGY.topic(POSITIONS).schema or ""
    latest: dict[str, dict[str, Any] | None] = {}
    for msg in read_range(settings.kafka.bootstrap, topic, isolation="read_committed"):
        key = (msg.key() or b"").decode()
        value = msg.value()
        latest[key] = None if value is None else serde.decode(topic, value, schema_file=schema)
    return [p for p in (position_of(v) for v in latest.values() if v is not None) if p]


def position_of(record: dict[str, Any]) -> OurPosition | None:
    """An OPEN positions record as a signed amount with its protective triggers."""
    if record.get("status") != "OPEN":
        return None
    quantity = parse_decimal(record["quantity"])
    sign = Decimal(1) if record["side"] == "LONG" else Decimal(-1)

    def optional(name: str) -> Decimal | None:
        v = record.get(name)
        return None if v is None else parse_decimal(v)

    return OurPosition(
        record["symbol"], sign * quantity, optional("stop_loss"), optional("take_profit")
    )


def exchange_book(venue: BinanceFutures) -> tuple[list[ExchangePosition], list[ExchangeOrder]]:
    """positionRisk, openOrders and openAlgoOrders of every symbol (weight 46)."""
    positions = [ExchangePosition(p.symbol, p.amount) for p in venue.positions()]
    orders = [
        ExchangeOrder(o.symbol, o.client_order_id, o.order_type, o.side, None, algo=False)
        for o in venue.open_orders()
    ]
    orders += [
        ExchangeOrder(a.symbol, a.client_algo_id, a.order_type, a.side, a.trigger_price, True)
        for a in venue.open_algo_orders()
    ]
    return positions, orders


def reconcile_once(settings: RuntimeSettings, serde: AvroSerde, venue: BinanceFutures) -> Diff:
    positions, orders = exchange_book(venue)
    return compare(our_positions(settings, serde), positions, orders)


def halt_records(diff: Diff, now_ms: int) -> tuple[HaltCommand, Alert]:
    """The governor command and the alert of a confirmed mismatch."""
    text = "; ".join(str(m) for m in diff.mismatches)
    halt = HaltCommand(
        command_id=f"{PROCESSOR}:halt:{now_ms}",
        reason=f"reconcile: {text}"[:2000],
        event_time_ms=now_ms,
    )
    first = diff.mismatches[0]
    alert = Alert(
        warning_id=f"{PROCESSOR}:{now_ms}:{AlertKind.RECONCILE_MISMATCH}",
        kind=AlertKind.RECONCILE_MISMATCH,
        symbol=first.symbol,
        position_intent_id="",
        processor=PROCESSOR,
        detail=diff.render(),
        event_time_ms=now_ms,
    )
    return halt, alert


def reconcile_loop(
    read: Callable[[], Diff],
    sink: Sink,
    *,
    every_ms: int,
    stop: Callable[[], bool],
    confirm_after: int = 2,
    clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Compare every `every_ms` until `stop()`; halt once per confirmed mismatch.
    Returns how many halts it sent."""
    state = Confirmation(confirm_after)
    halts = 0
    while not stop():
        diff = read()
        state, halt = state.check(diff)
        log.info("%s", diff.render())
        if halt:
            command, alert = halt_records(diff, clock_ms())
            sink.send(PORTFOLIO, command_to_avro(command), b"portfolio", schema=COMMAND_SCHEMA)
            sink.send(RISK_WARNINGS, to_avro(alert), alert.symbol.encode())
            sink.flush()
            halts += 1
            log.error("reconcile: mismatch confirmed, Halt sent: %s", command.reason)
        if not stop():
            sleep(every_ms / 1000)
    return halts
