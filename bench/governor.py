"""Governor benchmark on the real broker, against the bare transactional loop it is built on.

Two processors run the same case, one after the other, on the same broker, in the same run:
  bare:     the bare confluent-kafka transactional loop (`bare_loop` below): consume K records,
            produce each one unchanged, flush, send_offsets_to_transaction, commit. Records
            are 100 bytes, one partition. This is the limit a transactional agent can reach
            on this machine (FACTS.md); nothing is decoded, decided or encoded.
  governor: `quantum governor run`, which decodes, validates, decides and encodes.
Both use the same producer and consumer settings (`agents.governor.shell.producer_config`
and `consumer_config`), the same K (records per transaction) and the same topics
(a run-scoped `portfolio` in, `portfolio.decisions` out).

For each processor and K:
  throughput: N records, encoded beforehand, are sent as fast as the producer can; the figure
      is records processed per second, from the first send until the processor's committed
      offset reaches the end of the input topic.
  latency:    records are sent open-loop at a fixed offered rate; the latency of one record
      is the time from its send to the moment a read_committed consumer sees its output
      (one clock: this process). For the governor the output is the request's decision.
      Records are encoded before the clock starts and outputs identified after the run, so
      the measuring costs both processors the same. K=100 is measured at 1,000 and 2,500/s
      before the issue's 5,000/s; each phase also reports this process's worst 1 ms sleep
      overrun (`stall_max`): a stall the measuring process itself suffered.
`ratio` is the governor's median throughput over the bare loop's at the same K.
Writes JSON with the machine, the settings and the 1-minute load average before each case
(the machine is shared) to bench/results/governor.json.

    python -m bench.governor [--quick] [--repeat N] [--ks 1,10,100] [--profile DIR]

`--profile DIR` samples the governor with py-spy during each throughput phase and writes
collapsed stacks to DIR/governor-k<K>-<run>.txt (py-spy must be installed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as Tp

from agents.governor.codec import COMMAND_SCHEMA, DECISION_SCHEMA, command_to_avro
from agents.governor.io import CommandSender, end_offset
from agents.governor.model import Clock, Side, SlotRequest
from agents.governor.shell import consumer_config, producer_config
from bench.machine import KAFKA_BROKER, machine
from quantum.app.settings import Settings
from quantum.polling import wait_until
from quantum.serde import AvroSerde
from topologies.apply import apply_topology, delete_run_topics
from topologies.declaration import PORTFOLIO, PORTFOLIO_DECISIONS

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "governor.json"
LOG_DIR = Path(os.environ.get("QT_BENCH_LOG_DIR", "/tmp"))  # each processor's own log per case
BARE_RECORD_BYTES = 100
SNAPSHOT_EVERY = 5000
PROCESSORS = ("bare", "governor")


@dataclass(frozen=True)
class Case:
    k: int  # records per transaction
    throughput_records: int
    latency_records: int
    offered_per_s: float
    # Lower offered rates measured first (LOWER_RATE_SECONDS each): where the latency's knee is.
    lower_rates: tuple[float, ...] = ()


# Offered rates for the latency phase: K=100 at the 5,000/s, after 1,000/s and
# 2,500/s; K=1 and K=10 well below what either loop sustains on a loaded 2-core machine, so
# that their latency is the loop's, not a queue's.
CASES = (
    Case(1, 300, 150, 50.0),
    Case(10, 3_000, 1_500, 500.0),
    Case(100, 50_000, 10_000, 5_000.0, lower_rates=(1_000.0, 2_500.0)),
)
LOWER_RATE_SECONDS = 2.0


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------- the bare loop


def bare_loop(
    bootstrap: str,
    in_topic: str,
    out_topic: str,
    *,
    group_id: str,
    transactional_id: str,
    k: int,
    max_wait_ms: int,
    should_stop: Callable[[], bool],
) -> int:
    """Consume up to K records, produce each unchanged, flush, send the offsets, commit.

    The governor's loop minus decode/decide/encode; returns the records committed.
    """
    producer = Producer(producer_config(bootstrap, transactional_id))
    consumer = Consumer(consumer_config(bootstrap, group_id))
    producer.init_transactions(60)
    [committed] = consumer.committed([Tp(in_topic, 0)], timeout=30)
    consumer.assign([Tp(in_topic, 0, max(committed.offset, 0))])
    done = 0
    try:
        while not should_stop():
            msgs = consumer.consume(num_messages=k, timeout=max(max_wait_ms / 1000, 0.001))
            if not msgs:
                continue
            producer.begin_transaction()
            for msg in msgs:
                if msg.error():
                    raise KafkaException(msg.error())
                producer.produce(out_topic, value=msg.value(), key=msg.key())
            producer.flush(30)
            producer.send_offsets_to_transaction(
                [Tp(in_topic, 0, msgs[-1].offset() + 1)], consumer.consumer_group_metadata(), 30
            )
            producer.commit_transaction(30)
            done += len(msgs)
    finally:
        consumer.close()
    return done


def _bare_loop_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.governor bare-loop")
    for name in ("--bootstrap", "--in-topic", "--out-topic", "--group-id", "--transactional-id"):
        parser.add_argument(name, required=True)
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--max-wait-ms", type=int, required=True)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    done = bare_loop(
        args.bootstrap,
        args.in_topic,
        args.out_topic,
        group_id=args.group_id,
        transactional_id=args.transactional_id,
        k=args.k,
        max_wait_ms=args.max_wait_ms,
        should_stop=stop.is_set,
    )
    print(f"bare loop: {done} records committed", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- measuring


def _bare_value(i: int) -> bytes:
    return f"{i:012d}".encode().ljust(BARE_RECORD_BYTES, b".")


def _bare_ident(value: bytes) -> str:
    return value[:12].decode()


def _request(i: int, rng: random.Random, symbols: int) -> SlotRequest:
    return SlotRequest(
        intent_id=f"b{i}",
        symbol=f"S{rng.randrange(symbols):03d}USDT",
        side=Side.LONG,
        notional=Decimal(100),
        score=rng.random(),
        event_time_ms=_now_ms(),
    )


class CommittedOffset:
    """A processor's committed input offset, asked through one long-lived handle."""

    def __init__(self, bootstrap: str, topic: str, group_id: str) -> None:
        self.tp = Tp(topic, 0)
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False}
        )

    def __call__(self) -> int:
        [tp] = self.consumer.committed([self.tp], timeout=30)
        return max(tp.offset, 0)

    def close(self) -> None:
        self.consumer.close()


class OutputWatcher(threading.Thread):
    """Reads the committed output and stamps when each output record arrived.

    It only stamps raw values: identifying them (an Avro decode for the governor) waits
    until the run is over, so the watcher adds the same small cost to both processors'
    latency runs instead of a decode per record to the governor's alone.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.topic = settings.topic(PORTFOLIO_DECISIONS)
        self.arrivals: list[tuple[bytes, float]] = []
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
        self.position = 0  # the watcher's read position (set by its thread only)

    def _position(self) -> int:
        return self.consumer.position([Tp(self.topic, 0)])[0].offset

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.ready.is_set() and self._position() >= self.start_end:
                self.ready.set()
            # consume() waits for a full batch or the timeout: keep the timeout tiny, or the
            # watcher itself adds up to that much latency to every measurement.
            msgs = self.consumer.consume(num_messages=1000, timeout=0.001)
            if msgs:
                arrived = time.perf_counter()
                self.arrivals.extend((m.value() or b"", arrived) for m in msgs if not m.error())
            self.position = self._position()
        self.consumer.close()

    def read_to(self, offset: int, timeout_s: float = 60) -> None:
        """Wait until the watcher has read the output up to `offset` (exclusive)."""
        wait_until(lambda: self.position >= offset, timeout_s, "the output watcher", poll_s=0.005)

    def first_seen(self, key_of: Callable[[bytes], str]) -> dict[str, float]:
        """When each identity's first output arrived."""
        seen: dict[str, float] = {}
        for value, arrived in self.arrivals:
            seen.setdefault(key_of(value), arrived)
        return seen


class StallProbe(threading.Thread):
    """Sleeps 1 ms at a time and keeps how late each wake-up was: when this process got no
    CPU (host steal, the broker, the processor under test), a latency measured meanwhile
    includes that. The worst overrun of each latency phase is reported beside it."""

    TICK_S = 0.001

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.late_ms: list[float] = []

    def run(self) -> None:
        before = time.perf_counter()
        while not self.stop.is_set():
            time.sleep(self.TICK_S)
            now = time.perf_counter()
            self.late_ms.append((now - before - self.TICK_S) * 1000)
            before = now


def _spawn(kind: str, settings: Settings, k: int) -> subprocess.Popen:
    log = (LOG_DIR / f"{kind}-k{k}.log").open("ab")
    shell = settings.governor_shell
    if kind == "governor":
        env = settings.child_env(
            QT_GOVERNOR_SHELL__COMMANDS_PER_TRANSACTION=str(k),
            QT_GOVERNOR_SHELL__SNAPSHOT_EVERY=str(SNAPSHOT_EVERY),
            QT_GOVERNOR_SHELL__TRANSACTIONAL_ID=shell.transactional_id,
            QT_GOVERNOR_SHELL__GROUP_ID=shell.group_id,
            PYTHONPATH=str(REPO),
        )
        cmd = [sys.executable, "-m", "quantum", "governor", "run"]
    else:
        env = settings.child_env(PYTHONPATH=str(REPO))
        cmd = [
            sys.executable,
            "-m",
            "bench.governor",
            "bare-loop",
            f"--bootstrap={settings.kafka.bootstrap}",
            f"--in-topic={settings.topic(PORTFOLIO)}",
            f"--out-topic={settings.topic(PORTFOLIO_DECISIONS)}",
            f"--group-id={shell.group_id}",
            f"--transactional-id={shell.transactional_id}",
            f"--k={k}",
            f"--max-wait-ms={shell.max_batch_wait_ms}",
        ]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)


def _profiler(pid: int, out: Path) -> subprocess.Popen:
    spy = Path(sys.executable).with_name("py-spy")
    args = [str(spy), "record", "--pid", str(pid), "--rate", "200", "--format", "raw"]
    args += ["--output", str(out), "--nonblocking", "--idle"]
    return subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * q))]


def run_case(
    base: Settings, kind: str, case: Case, *, profile: Path | None = None
) -> dict[str, object]:
    """One processor, one K: throughput, then latency at the case's offered rate."""
    run_id = uuid.uuid4().hex[:8]
    settings = base.with_prefix(f"bench-{run_id}.")
    settings = settings.model_copy(
        update={
            "governor_shell": settings.governor_shell.model_copy(
                update={
                    "transactional_id": f"bench-{kind}-{run_id}",
                    "group_id": f"bench-{kind}-{run_id}",
                }
            )
        }
    )
    assert apply_topology(settings).ok
    serde = AvroSerde.from_settings(settings)
    portfolio = settings.topic(PORTFOLIO)
    committed = CommittedOffset(
        settings.kafka.bootstrap, portfolio, settings.governor_shell.group_id
    )
    process = _spawn(kind, settings, case.k)
    try:
        sender = CommandSender(settings, serde=serde, linger_ms=1)
        if kind == "governor":
            sender.send(Clock("warm-up", _now_ms()))
        else:
            sender.send_raw(_bare_value(10**11))
        sender.flush()
        wait_until(lambda: committed() >= 1, 90, f"the {kind} loop", poll_s=0.01)

        rng = random.Random(case.k)
        n = case.throughput_records
        if kind == "governor":
            values = [
                serde.encode(
                    portfolio, command_to_avro(_request(i, rng, 60)), schema_file=COMMAND_SCHEMA
                )
                for i in range(n)
            ]
        else:
            values = [_bare_value(i) for i in range(n)]
        load_before = os.getloadavg()[0]
        spy = None
        if profile is not None and kind == "governor":
            spy = _profiler(process.pid, profile / f"governor-k{case.k}-{run_id}.txt")
            time.sleep(0.5)  # py-spy attaches
        cpu_before = _cpu_seconds(process.pid)
        started = time.perf_counter()
        for value in values:
            sender.send_raw(value)
        sender.flush()
        target = end_offset(settings)
        wait_until(lambda: committed() >= target, 600, "the throughput run", poll_s=0.01)
        elapsed = time.perf_counter() - started
        cpu_after = _cpu_seconds(process.pid)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        per_second = n / elapsed

        if kind == "governor":
            topic = settings.topic(PORTFOLIO_DECISIONS)

            def ident(value: bytes) -> str:
                return serde.decode(topic, value, schema_file=DECISION_SCHEMA)["command_id"]

            def paced_record(i: int) -> tuple[str, bytes]:
                r = _request(i, rng, 60)
                value = serde.encode(portfolio, command_to_avro(r), schema_file=COMMAND_SCHEMA)
                return r.intent_id, value
        else:
            ident = _bare_ident

            def paced_record(i: int) -> tuple[str, bytes]:
                value = _bare_value(i)
                return _bare_ident(value), value

        watcher = OutputWatcher(settings)
        watcher.start()
        # Its own start-up (connect, first fetches) must not count as anyone's latency.
        if not watcher.ready.wait(60):
            raise TimeoutError("output watcher did not catch up")
        probe = StallProbe()
        probe.start()
        phases = [(rate, int(rate * LOWER_RATE_SECONDS)) for rate in case.lower_rates]
        phases.append((case.offered_per_s, case.latency_records))
        latency: dict[str, object] = {}
        for rate, records in phases:
            # Encoded beforehand, as in the throughput run: the paced loop then costs both
            # processors' runs the same.
            paced = [paced_record(i) for i in range(n, n + records)]
            n += records
            mark = len(probe.late_ms)
            sent = _send_paced(sender, paced, rate)
            # Everything decided and committed: read the output up to its end.
            target = end_offset(settings)
            wait_until(lambda: committed() >= target, 300, "the latency run", poll_s=0.01)  # noqa: B023
            watcher.read_to(end_offset(settings, PORTFOLIO_DECISIONS))
            seen = watcher.first_seen(ident)
            missing = [k for k in sent if k not in seen]
            if missing:
                raise AssertionError(f"{len(missing)} latency records lack an output: {missing[0]}")
            lat_ms = sorted((seen[k] - t) * 1000 for k, t in sent.items())
            figures = {
                "p50": round(statistics.median(lat_ms), 2),
                "p99": round(_percentile(lat_ms, 0.99), 2),
                "max": round(lat_ms[-1], 2),
                # this process's worst 1 ms sleep overrun meanwhile: a stall every loop shares
                "stall_max": round(max(probe.late_ms[mark:], default=0.0), 2),
            }
            if rate == case.offered_per_s:
                latency.update(
                    {
                        "latency_records": records,
                        "latency_offered_per_s": rate,
                        **{f"latency_ms_{q}": v for q, v in figures.items()},
                    }
                )
            else:
                latency.update({f"latency_ms_{q}_at_{rate:.0f}": v for q, v in figures.items()})
        watcher.stop.set()
        watcher.join(10)
        probe.stop.set()
        probe.join(10)
        return {
            "throughput_records": case.throughput_records,
            "throughput_seconds": round(elapsed, 3),
            "per_second": round(per_second, 1),
            # the processor's own CPU (all its threads), per record of the throughput phase
            "cpu_us_per_record": None
            if cpu_before is None or cpu_after is None
            else round((cpu_after - cpu_before) / case.throughput_records * 1e6, 1),
            **latency,
            "loadavg_1m_before": round(load_before, 2),
        }
    finally:
        process.terminate()
        process.wait(30)
        committed.close()
        delete_run_topics(settings)


def _send_paced(
    sender: CommandSender, paced: list[tuple[str, bytes]], rate: float
) -> dict[str, float]:
    """Send open-loop at `rate` records/s; returns when each identity was sent."""
    sent: dict[str, float] = {}
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for ident_i, value in paced:
        now = time.perf_counter()
        if now < next_at:
            time.sleep(next_at - now)
        sent[ident_i] = time.perf_counter()
        sender.send_raw(value)
        next_at += interval
    sender.flush()
    return sent


def _median_figures(runs: list[dict[str, object]]) -> dict[str, object]:
    return {
        key: (statistics.median(r[key] for r in runs) if isinstance(value, float) else value)  # type: ignore[misc]
        for key, value in runs[0].items()
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bare-loop"]:
        return _bare_loop_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.governor")
    parser.add_argument("--quick", action="store_true", help="small runs (smoke)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; medians reported")
    parser.add_argument("--ks", default="1,10,100", help="records per transaction, comma-separated")
    parser.add_argument("--profile", type=Path, help="py-spy the governor's throughput phases")
    args = parser.parse_args(argv)
    base = Settings()
    ks = {int(k) for k in args.ks.split(",")}
    cases = [c for c in CASES if c.k in ks]
    if args.quick:
        cases = [
            Case(
                c.k,
                max(50, c.throughput_records // 10),
                max(50, c.latency_records // 10),
                c.offered_per_s,
            )
            for c in cases
        ]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    # A freshly started broker runs its JIT-cold code paths slowly; the first case would
    # pay for that. One short, discarded case of each processor warms it up.
    for kind in PROCESSORS:
        run_case(base, kind, Case(100, 3_000, 500, 1_000.0))
    results = []
    for case in cases:
        runs: dict[str, list[dict[str, object]]] = {kind: [] for kind in PROCESSORS}
        for _ in range(args.repeat):
            for kind in PROCESSORS:  # side by side: bare, then governor, in every repeat
                runs[kind].append(run_case(base, kind, case, profile=args.profile))
        medians = {kind: _median_figures(r) for kind, r in runs.items()}
        bare_rate = medians["bare"]["per_second"]
        gov_rate = medians["governor"]["per_second"]
        entry = {
            "records_per_transaction": case.k,
            "ratio": round(gov_rate / bare_rate, 3),  # type: ignore[operator]
            "paired_ratios": [
                round(g["per_second"] / b["per_second"], 3)  # type: ignore[operator]
                for b, g in zip(runs["bare"], runs["governor"], strict=True)
            ],
            **medians,
            "runs": runs,
        }
        print(json.dumps({k: v for k, v in entry.items() if k != "runs"}), flush=True)
        results.append(entry)
    report = {
        "benchmark": "governor",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(kafka_broker=KAFKA_BROKER),
        "settings": {
            "bootstrap": base.kafka.bootstrap,
            "max_batch_wait_ms": base.governor_shell.max_batch_wait_ms,
            "snapshot_every": SNAPSHOT_EVERY,
            "snapshot_every_per_entry": base.governor_shell.snapshot_every_per_entry,
            "gc_freeze_every": base.governor_shell.gc_freeze_every,
            "latency_lower_rates_seconds": LOWER_RATE_SECONDS,
            "isolation": "read_committed",
            "bare_record_bytes": BARE_RECORD_BYTES,
            "governor": base.governor.model_dump(),
        },
        "repeat": args.repeat,
        "note": (
            "per case and processor: the median of each figure over `repeat` runs (every run"
            " under `runs`); bare and governor alternate within each repeat; `ratio` is the"
            " governor's median per_second over the bare loop's; one discarded warm-up case of"
            " each processor ran first; loadavg_1m_before is the machine's (shared) load;"
            " latency_ms_*_at_R: the same figures at R records/s offered (LOWER_RATE_SECONDS"
            " each); *stall_max: this process's worst 1 ms sleep overrun in that phase"
        ),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
