"""`quantum demo`: the main job on its embedded default, start to finish, on a real broker.

1. starts the local broker and schema registry (unless KAFKA_BOOTSTRAP is set),
2. applies the topology and registers every schema under a run-scoped topic prefix,
3. runs the pass-through agent in a worker and feeds it the bundled sample klines
   plus two poison records (garbage bytes, a schema-valid tick with a NaN price),
4. runs the exactly-once governor on the audit's scenario (9 open positions, then a
   burst of 15 strong signals) and audits the committed decisions log,
5. stops what it started.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

from confluent_kafka import Producer

from agents.governor.audit import audit_decisions
from agents.governor.io import CommandSender, committed_offset, end_offset, read_decisions
from agents.governor.model import Clock, Regime, SetRegime, Side, SlotFilled, SlotRequest
from quantum.app.settings import Settings
from quantum.errors import CliError
from quantum.kafka_util import end_offsets
from quantum.marketdata import sample_klines
from quantum.polling import wait_until
from quantum.serde import AvroSerde
from topologies.apply import apply_topology
from topologies.declaration import MARKET_TICKS, PASSTHROUGH_OUT, TOPOLOGY, dlq_topic

REPO = Path(__file__).resolve().parents[2]


def add_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the main job end to end on a local real broker")
    parser.add_argument("--keep-infra", action="store_true", help="leave the broker running")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per stage")
    parser.set_defaults(func=run_demo)


def _stage(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _count(settings: Settings, logical: str) -> int:
    return sum(end_offsets(settings.kafka.bootstrap, settings.topic(logical), 10).values())


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    started_infra = False
    if not os.environ.get("KAFKA_BOOTSTRAP"):
        from infra import local

        _stage("local broker and schema registry")
        was_up = local.status(settings.infra).healthy
        t0 = time.monotonic()
        endpoints = local.up(settings.infra)
        started_infra = not was_up
        print(
            f"bootstrap={endpoints.bootstrap} registry={endpoints.registry_url} "
            f"({time.monotonic() - t0:.1f} s, {'started' if started_infra else 'reused'})"
        )
        settings = settings.model_copy(
            update={
                "kafka": settings.kafka.model_copy(update={"bootstrap": endpoints.bootstrap}),
                "registry": settings.registry.model_copy(update={"url": endpoints.registry_url}),
            }
        )
    if not settings.kafka.topic_prefix:
        settings = settings.with_prefix(f"demo-{uuid.uuid4().hex[:8]}.")
    env = settings.child_env()
    procs: list[subprocess.Popen] = []
    try:
        _stage(f"topology (prefix {settings.kafka.topic_prefix!r})")
        report = apply_topology(settings)
        print(report.render().splitlines()[-1])
        if not report.ok:
            raise CliError("topology drift; see above")

        _stage("pass-through agent: sample klines + 2 poison records")
        procs.append(_spawn(["worker", "--agents", "passthrough"], env))
        n = _produce_ticks(settings)
        wait_until(lambda: _count(settings, PASSTHROUGH_OUT) >= n, args.timeout, "relayed ticks")
        wait_until(
            lambda: _count(settings, dlq_topic(MARKET_TICKS)) >= 2, args.timeout, "dead letters"
        )
        print(
            f"relayed {_count(settings, PASSTHROUGH_OUT)} of {n} valid ticks; "
            f"{_count(settings, dlq_topic(MARKET_TICKS))} dead letters in "
            f"{settings.topic(dlq_topic(MARKET_TICKS))} (inspect: quantum --topic-prefix "
            f"{settings.kafka.topic_prefix} dlq list {MARKET_TICKS})"
        )

        _stage("governor: the audit's scenario (9 positions, then 15 strong signals, on Kafka)")
        procs.append(_spawn(["governor", "run"], env))
        _audit_scenario(settings)
        target = end_offset(settings)
        wait_until(lambda: committed_offset(settings) >= target, args.timeout, "governor")
        logged = read_decisions(settings)
        audit = audit_decisions((d.offset, d.decision) for d in logged)
        print(audit.render())

        _stage("the audit's race, simulated on one event sequence (docs/audit-race.md)")
        _race_comparison()
        return 0 if audit.ok else 1
    except TimeoutError as exc:
        raise CliError(f"demo: {exc}") from exc
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if started_infra and not args.keep_infra:
            from infra import local

            local.down(settings.infra)
            print("\nstopped the local broker (use --keep-infra to leave it running)")


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "quantum", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# The sample holds 43,200 bars (3 days x 10 symbols); the pass-through stage only shows
# the runtime and its dead letters, so 5 hours of bars are enough.
DEMO_TICKS = 3_000


def _produce_ticks(settings: Settings) -> int:
    serde = AvroSerde.from_settings(settings)
    topic = settings.topic(MARKET_TICKS)
    schema = TOPOLOGY.topic(MARKET_TICKS).schema or ""
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "enable.idempotence": True})
    count = 0
    last: dict | None = None
    for kline in itertools.islice(sample_klines(), DEMO_TICKS):
        producer.produce(
            topic,
            key=kline["symbol"].encode(),
            value=serde.encode(topic, kline, schema_file=schema),
        )
        count += 1
        last = kline
    assert last is not None
    producer.produce(topic, key=b"BTCUSDT", value=b"\x00garbage, not Avro")
    poisoned = dict(last, close="NaN", event_id=last["event_id"] + ":nan")
    producer.produce(topic, key=b"BTCUSDT", value=serde.encode(topic, poisoned, schema_file=schema))
    producer.flush(30)
    return count


def _audit_scenario(settings: Settings) -> None:
    """The audit's Phase 1.5 timeline: 9 open positions, trend-strong regime, 15 signals."""
    sender = CommandSender(settings)
    t = 1_767_225_600_000
    sender.send(SetRegime("regime-1", Regime.TREND_STRONG, t))
    for i in range(9):
        intent = f"old-{i}"
        sender.send(SlotRequest(intent, f"OLD{i}USDT", Side.LONG, Decimal(100), 0.3 + i / 100, t))
        sender.send(SlotFilled(f"fill-{intent}", intent, f"OLD{i}USDT", t))
    for i in range(15):
        sender.send(
            SlotRequest(f"new-{i}", f"NEW{i}USDT", Side.LONG, Decimal(100), 0.9, t + 10_000 + i)
        )
    sender.send(Clock("end", t + 86_400_000))
    sender.flush()


def _race_comparison(seeds: range = range(8)) -> None:
    """Max open positions of the audited design vs our governor core, seed by seed."""
    import random

    from agents.governor.simulation.audited_design import simulate_audited, simulate_governor
    from agents.governor.simulation.scenario import audit_like

    print("seed  audited design  governor   (limit 10)")
    for seed in seeds:
        scenario = audit_like(random.Random(seed))
        old = simulate_audited(scenario, random.Random(1000 + seed)).max_open
        ours = simulate_governor(scenario).max_open
        print(f"{seed:>4}  {old:>14}  {ours:>8}")
