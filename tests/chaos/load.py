"""Load processes for the governor chaos test and benchmark (run as `python -m tests.chaos.load`).

producer:  sends slot requests over many symbols, mixed with random releases and
           regime flips, as one of several concurrent producer processes.
responder: plays the execution layer: reads committed decisions and answers them
           (a GRANTED mostly fills, sometimes is rejected; a ROTATE_OUT is closed;
           open positions close now and then). Its command ids derive from the
           decision they answer, so a re-sent answer is a duplicate the governor ignores.

Event time is the wall clock of these harness processes: they stand for the outside world.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from decimal import Decimal

from confluent_kafka import Consumer, KafkaError
from confluent_kafka import TopicPartition as Tp

from agents.governor.codec import DECISION_SCHEMA, decision_from_avro
from agents.governor.io import CommandSender
from agents.governor.model import (
    DecisionKind,
    Regime,
    ReleaseReason,
    SetRegime,
    Side,
    SlotFilled,
    SlotRelease,
    SlotRequest,
)
from quantum.app.settings import Settings
from quantum.serde import AvroSerde
from topologies.declaration import PORTFOLIO_DECISIONS


def now_ms() -> int:
    return int(time.time() * 1000)


def symbols(count: int) -> list[str]:
    return [f"S{i:03d}USDT" for i in range(count)]


def run_producer(settings: Settings, args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    sender = CommandSender(settings)
    universe = symbols(args.symbols)
    regimes = [Regime.BASE, Regime.TREND_STRONG]
    for i in range(args.requests):
        intent = f"p{args.seed}-{i}"
        sender.send(
            SlotRequest(
                intent_id=intent,
                symbol=rng.choice(universe),
                side=rng.choice(list(Side)),
                notional=Decimal(rng.randrange(20, 2000)),
                score=round(rng.random(), 4),
                event_time_ms=now_ms(),
            )
        )
        if rng.random() < 0.02:  # an upstream retry: the same request again
            sender.send(
                SlotRequest(intent, rng.choice(universe), Side.LONG, Decimal(1), 0.1, now_ms())
            )
        if rng.random() < 0.15:
            sender.send(
                SlotRelease(
                    f"rel-{intent}",
                    rng.choice(universe),
                    None,
                    rng.choice([ReleaseReason.POSITION_CLOSED, ReleaseReason.ORDER_REJECTED]),
                    now_ms(),
                )
            )
        if rng.random() < 0.005:  # flips both ways; CHOP's shrink is covered by property tests
            sender.send(SetRegime(f"reg-{intent}", rng.choice(regimes), now_ms()))
        if args.rate and i % 50 == 49:
            time.sleep(50 / args.rate)  # pacing the load generator, not synchronising a test
    sender.flush()
    return 0


def run_responder(settings: Settings, args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    serde = AvroSerde.from_settings(settings)
    sender = CommandSender(settings, serde=serde)
    topic = settings.topic(PORTFOLIO_DECISIONS)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": f"chaos-responder-{args.seed}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([Tp(topic, 0, 0)])
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    open_positions: list[tuple[str, str]] = []
    while not stopping:
        for msg in consumer.consume(num_messages=500, timeout=0.2):
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    print(f"responder: {msg.error()}", file=sys.stderr)
                continue
            decision, _ = decision_from_avro(
                serde.decode(topic, msg.value(), schema_file=DECISION_SCHEMA)
            )
            if decision.kind == DecisionKind.GRANTED:
                assert decision.intent_id and decision.symbol
                if rng.random() < 0.85:
                    sender.send(
                        SlotFilled(
                            f"fill-{decision.intent_id}",
                            decision.intent_id,
                            decision.symbol,
                            now_ms(),
                        )
                    )
                    open_positions.append((decision.intent_id, decision.symbol))
                elif rng.random() < 0.7:
                    sender.send(
                        SlotRelease(
                            f"rej-{decision.intent_id}",
                            decision.symbol,
                            decision.intent_id,
                            ReleaseReason.ORDER_REJECTED,
                            now_ms(),
                        )
                    )
                # else: never answered, so the reservation must expire
            elif decision.kind == DecisionKind.ROTATE_OUT:
                assert decision.symbol
                sender.send(
                    SlotRelease(
                        f"rot-{decision.decision_id}",
                        decision.symbol,
                        decision.intent_id,
                        ReleaseReason.ROTATED_OUT,
                        now_ms(),
                    )
                )
            elif decision.kind == DecisionKind.FILL_REJECTED:
                assert decision.symbol
                sender.send(
                    SlotRelease(
                        f"frej-{decision.decision_id}",
                        decision.symbol,
                        decision.intent_id,
                        ReleaseReason.POSITION_CLOSED,
                        now_ms(),
                    )
                )
            if open_positions and rng.random() < 0.08:
                intent, symbol = open_positions.pop(rng.randrange(len(open_positions)))
                sender.send(
                    SlotRelease(
                        f"close-{intent}", symbol, intent, ReleaseReason.POSITION_CLOSED, now_ms()
                    )
                )
        sender.producer.poll(0)
    sender.flush()
    consumer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.load")
    parser.add_argument("role", choices=["producer", "responder"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=60)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="requests/s (0: as fast as possible)"
    )
    args = parser.parse_args(argv)
    settings = Settings()
    if args.role == "producer":
        return run_producer(settings, args)
    return run_responder(settings, args)


if __name__ == "__main__":
    sys.exit(main())
