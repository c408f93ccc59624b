"""Governor benchmark on the real broker: decisions/s and request-to-decision latency,
with exactly-once transactions, at 1, 10 and 100 commands per transaction.

For each batch size a governor runs as its own process (`quantum governor run`).
  throughput: N requests are sent as fast as the producer can; the figure is
      commands decided per second, from the first send until the governor's
      committed offset reaches the end of the portfolio topic.
  latency:    requests are sent open-loop at a fixed rate below that throughput; the
      latency of one request is the time from its send to the moment a
      read_committed consumer sees its decision (one clock: this process).
Writes JSON with the machine and the settings to bench/results/governor.json.

    python -m bench.governor [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as Tp

from agents.governor.codec import DECISION_SCHEMA, decision_from_avro
from agents.governor.io import CommandSender, committed_offset, end_offset
from agents.governor.model import Clock, Side, SlotRequest
from bench.machine import KAFKA_BROKER, machine
from quantum.app.settings import Settings
from quantum.polling import wait_until
from quantum.serde import AvroSerde
from topologies.apply import apply_topology, delete_run_topics
from topologies.declaration import PORTFOLIO_DECISIONS

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "governor.json"
LOG_DIR = Path(os.environ.get("QT_BENCH_LOG_DIR", "/tmp"))  # the governor's own log per case


def _now_ms() -> int:
    return int(time.time() * 1000)


def _request(i: int, rng: random.Random, symbols: int) -> SlotRequest:
    return SlotRequest(
        intent_id=f"b{i}",
        symbol=f"S{rng.randrange(symbols):03d}USDT",
        side=Side.LONG,
        notional=Decimal(100),
        score=rng.random(),
        event_time_ms=_now_ms(),
    )


class DecisionWatcher(threading.Thread):
    """Reads committed decisions and stamps when each command's first decision arrived."""

    def __init__(self, settings: Settings, serde: AvroSerde) -> None:
        super().__init__(daemon=True)
        self.topic = settings.topic(PORTFOLIO_DECISIONS)
        self.serde = serde
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka.bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                "isolation.level": os.environ.get("QT_BENCH_ISOLATION", "read_committed"),
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        self.consumer.assign([Tp(self.topic, 0, 0)])

        self.ready = threading.Event()  # set once the watcher has read to the log's end
        self.start_end = end_offset(settings, PORTFOLIO_DECISIONS)

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.ready.is_set():
                position = self.consumer.position([Tp(self.topic, 0)])[0].offset
                if position >= self.start_end:
                    self.ready.set()
            # consume() waits for a full batch or the timeout: keep the timeout tiny, or the
            # watcher itself adds up to that much latency to every measurement.
            for msg in self.consumer.consume(num_messages=1000, timeout=0.001):
                if msg.error():
                    continue
                arrived = time.perf_counter()
                decision, _ = decision_from_avro(
                    self.serde.decode(self.topic, msg.value(), schema_file=DECISION_SCHEMA)
                )
                self.seen.setdefault(decision.command_id, arrived)
        self.consumer.close()


def run_case(base: Settings, batch: int, n_throughput: int, n_latency: int) -> dict[str, object]:
    settings = base.with_prefix(f"bench-{uuid.uuid4().hex[:8]}.")
    assert apply_topology(settings).ok
    serde = AvroSerde.from_settings(settings)
    env = settings.child_env(
        QT_GOVERNOR_SHELL__COMMANDS_PER_TRANSACTION=str(batch),
        QT_GOVERNOR_SHELL__SNAPSHOT_EVERY="5000",
        PYTHONPATH=str(REPO),
    )
    governor = subprocess.Popen(
        [sys.executable, "-m", "quantum", "governor", "run"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(LOG_DIR / f"governor-k{batch}.log").open("ab"),
    )
    try:
        sender = CommandSender(settings, serde=serde, linger_ms=1)
        sender.send(Clock("warm-up", _now_ms()))
        sender.flush()
        wait_until(lambda: committed_offset(settings) >= 1, 90, "the governor", poll_s=0.01)

        rng = random.Random(batch)
        requests = [_request(i, rng, 60) for i in range(n_throughput)]
        started = time.perf_counter()
        for r in requests:
            sender.send(r)
        sender.flush()
        target = end_offset(settings)
        wait_until(
            lambda: committed_offset(settings) >= target, 600, "the throughput run", poll_s=0.01
        )
        elapsed = time.perf_counter() - started
        throughput = n_throughput / elapsed

        rate = max(5.0, min(throughput * 0.5, 2000.0))
        watcher = DecisionWatcher(settings, serde)
        watcher.start()
        # Its own start-up (connect, first fetches) must not count as anyone's latency.
        if not watcher.ready.wait(60):
            raise TimeoutError("decision watcher did not catch up")
        sent: dict[str, float] = {}
        interval = 1.0 / rate
        next_at = time.perf_counter()
        for i in range(n_latency):
            r = _request(n_throughput + i, rng, 60)
            now = time.perf_counter()
            if now < next_at:
                time.sleep(next_at - now)  # open-loop pacing of the load
            sent[r.intent_id] = time.perf_counter()
            sender.send(r)
            sender.producer.poll(0)
            next_at += interval
        sender.flush()
        wait_until(
            lambda: all(k in watcher.seen for k in sent), 300, "the latency run", poll_s=0.01
        )
        watcher.stop.set()
        watcher.join(10)
        lat_ms = sorted((watcher.seen[k] - t) * 1000 for k, t in sent.items())
        return {
            "commands_per_transaction": batch,
            "throughput_requests": n_throughput,
            "throughput_seconds": round(elapsed, 3),
            "decisions_per_second": round(throughput, 1),
            "latency_requests": n_latency,
            "latency_offered_rate_per_s": round(rate, 1),
            "latency_ms_p50": round(statistics.median(lat_ms), 2),
            "latency_ms_p99": round(lat_ms[min(len(lat_ms) - 1, int(len(lat_ms) * 0.99))], 2),
            "latency_ms_max": round(lat_ms[-1], 2),
        }
    finally:
        governor.terminate()
        governor.wait(30)
        delete_run_topics(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.governor")
    parser.add_argument("--quick", action="store_true", help="small runs (smoke)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; medians reported")
    args = parser.parse_args(argv)
    base = Settings()
    sizes = {1: (300, 150), 10: (3_000, 1_000), 100: (30_000, 5_000)}
    if args.quick:
        sizes = {k: (max(50, t // 10), max(50, lat // 10)) for k, (t, lat) in sizes.items()}
    # A freshly started broker runs its JIT-cold code paths slowly; the first case would
    # pay for that. One short, discarded case warms it up.
    run_case(base, 100, 3_000, 500)
    results = []
    for batch, (n_t, n_l) in sizes.items():
        runs = [run_case(base, batch, n_t, n_l) for _ in range(args.repeat)]
        median = {
            k: (statistics.median(r[k] for r in runs) if isinstance(v, float) else v)
            for k, v in runs[0].items()
        }
        median["runs"] = runs
        print(json.dumps({k: v for k, v in median.items() if k != "runs"}))
        results.append(median)
    report = {
        "benchmark": "governor",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(kafka_broker=KAFKA_BROKER),
        "settings": {
            "bootstrap": base.kafka.bootstrap,
            "max_batch_wait_ms": base.governor_shell.max_batch_wait_ms,
            "snapshot_every": 5000,
            "isolation": "read_committed",
            "governor": base.governor.model_dump(),
        },
        "repeat": args.repeat,
        "note": (
            "per case: the median of each figure over `repeat` runs; every run under `runs`;"
            " one discarded warm-up case ran first"
        ),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
