"""Crash test for Faust's `exactly_once`: does a relay agent duplicate outputs after SIGKILLs?

FACTS.md reports 412 duplicated outputs among 7,449 under `exactly_once` with 4
SIGKILLs; the governor uses a confluent-kafka transactional loop instead because of
it. This reproduces the experiment so anyone can check the claim on a real broker:

  1. fresh uuid-named topics: input and output (same partition count, default 1);
  2. N records (value = sequence number, key = str(i % 8)) produced by an idempotent
     producer, paced to take about `--seconds`;
  3. the Faust worker `bench.faust_relay_app` relays input → output unchanged; it is
     SIGKILLed `--kills` times, each time a seeded-random delay after it has shown
     progress (its committed offset moved), and restarted at once;
  4. the last worker runs until the group's committed offsets reach the input's end,
     then is stopped with SIGTERM;
  5. the whole output is read with read_committed and with read_uncommitted, and the
     outputs, distinct values, duplicates and missing values are counted.

Why the duplicates are committed (checked by patching Faust's Producer.send): under
exactly_once Faust picks the transactional producer from the *output* partition via
its consumer's metadata; the output topic is not subscribed, so that lookup returns
None and every `out.send` goes through the plain, non-transactional producer. Only the
offset commit is transactional, so a crash replays the uncommitted input and its
outputs are written again, visible even to read_committed readers.

Writes bench/results/faust_eos_crash.json (one entry per guarantee under `runs`)
and prints one summary line.

    PYTHONPATH=/work/main .venv/bin/python -m bench.faust_eos_crash \
        [--guarantee exactly_once|at_least_once] [--n 8000] [--kills 4] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiokafka
import faust
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka import TopicPartition as Tp
from confluent_kafka.admin import AdminClient, NewTopic

from bench.machine import KAFKA_BROKER, machine
from quantum.polling import wait_until

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"


class Offsets:
    """End offsets of the input and the relay group's committed offsets, for polling."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, group: str) -> None:
        self.tps = [Tp(topic, p) for p in range(partitions)]
        self._watermarks = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"wm-{group}", "enable.auto.commit": False}
        )
        self._group = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )

    def end(self) -> int:
        return sum(self._watermarks.get_watermark_offsets(tp, timeout=10)[1] for tp in self.tps)

    def committed(self) -> int:
        return sum(max(tp.offset, 0) for tp in self._group.committed(self.tps, timeout=10))

    def close(self) -> None:
        self._watermarks.close()
        self._group.close()


class Feeder(threading.Thread):
    """Produces the N input records at a steady pace from a background thread."""

    def __init__(self, bootstrap: str, topic: str, n: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.n, self.seconds = bootstrap, topic, n, seconds
        self.produced = 0
        self.done_at: float | None = None
        self.error: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5}
        )
        start = time.monotonic()
        try:
            for i in range(self.n):
                if self.stop.is_set():
                    return
                due = start + self.seconds * i / self.n
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the load, not synchronisation
                producer.produce(self.topic, key=str(i % 8).encode(), value=str(i).encode())
                producer.poll(0)
                self.produced = i + 1
            if producer.flush(60) != 0:
                self.error = "input records left unflushed"
        except Exception as exc:  # reported in the result, not swallowed
            self.error = repr(exc)
        finally:
            self.done_at = time.monotonic()


class Worker:
    """One Faust relay worker process; its output goes to a per-incarnation log file."""

    def __init__(self, env: dict[str, str], log_dir: Path, index: int) -> None:
        self.log_path = log_dir / f"worker-{index}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "faust",
                "-A",
                "bench.faust_relay_app",
                "worker",
                "-l",
                "warn",
            ],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no transaction abort, no offset commit."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def terminate(self, timeout_s: float = 30) -> int:
        """Graceful stop for the last worker, SIGKILL if it does not stop in time."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=30)
        self._log.close()
        return code

    def alive(self) -> bool:
        return self.proc.poll() is None


def read_output(bootstrap: str, topic: str, partitions: int, isolation: str) -> list[int]:
    """All values in the output topic under one isolation level, up to the high watermark.

    The high watermark comes from a read_uncommitted handle: a read_committed consumer's
    watermark query returns the last stable offset instead.
    """
    probe = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"probe-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_uncommitted",
        }
    )
    highs = {p: probe.get_watermark_offsets(Tp(topic, p), timeout=10)[1] for p in range(partitions)}
    probe.close()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([Tp(topic, p, 0) for p in range(partitions)])
    values: list[int] = []
    pending = {p for p, high in highs.items() if high > 0}
    deadline = time.monotonic() + 120
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{isolation} reader stuck before the end of {sorted(pending)}")
        for msg in consumer.consume(num_messages=1000, timeout=1.0):
            err = msg.error()
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(f"{isolation} reader: {err}")
            if err is None:
                values.append(int(msg.value()))
        # Control records (commit/abort markers) are never delivered, so check positions.
        for tp in consumer.position([Tp(topic, p) for p in pending]):
            if tp.offset >= highs[tp.partition]:
                pending.discard(tp.partition)
    consumer.close()
    return values


def count(values: list[int], n: int) -> dict[str, Any]:
    """Outputs, distinct values, duplicates (outputs - distinct) and missing inputs."""
    seen = Counter(values)
    missing = n - len(seen.keys() & set(range(n)))
    return {
        "outputs": len(values),
        "distinct": len(seen),
        "duplicates": len(values) - len(seen),
        "values_seen_more_than_once": sum(1 for c in seen.values() if c > 1),
        "max_copies": max(seen.values(), default=0),
        "missing": missing,
        "unexpected_values": sum(1 for v in seen if not 0 <= v < n),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One full crash experiment; always deletes its topics and kills its workers."""
    bootstrap = args.bootstrap
    rng = random.Random(args.seed)
    run_id = uuid.uuid4().hex[:8]
    topic_in, topic_out = f"{run_id}.faust-eos.in", f"{run_id}.faust-eos.out"
    app_id = f"{run_id}-faust-eos-relay"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [
            NewTopic(t, num_partitions=args.partitions, replication_factor=1)
            for t in (topic_in, topic_out)
        ]
    )
    for f in futures.values():
        f.result(timeout=30)
    log_dir = Path(tempfile.mkdtemp(prefix=f"faust-eos-{run_id}-"))
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "FAUST_RELAY_APP_ID": app_id,
            "FAUST_RELAY_BOOTSTRAP": bootstrap,
            "FAUST_RELAY_IN": topic_in,
            "FAUST_RELAY_OUT": topic_out,
            "FAUST_RELAY_GUARANTEE": args.guarantee,
            "FAUST_RELAY_DATADIR": str(log_dir / "data"),
        }
    )
    offsets = Offsets(bootstrap, topic_in, args.partitions, app_id)
    feeder = Feeder(bootstrap, topic_in, args.n, args.seconds)
    workers: list[Worker] = []
    kills: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        workers.append(Worker(env, log_dir, 0))
        feeder.start()
        for k in range(args.kills):
            worker = workers[-1]
            before = offsets.committed()
            # Kill only a worker that is demonstrably relaying: its committed offset moved.
            waited = wait_until(
                lambda b=before, w=worker: offsets.committed() > b or not w.alive(),
                args.progress_timeout,
                f"worker {k} to commit progress",
            )
            if not worker.alive():
                raise RuntimeError(f"worker {k} exited on its own; see {worker.log_path}")
            delay = rng.uniform(args.min_delay, args.max_delay)
            time.sleep(delay)  # the random kill moment itself, not a synchronisation
            committed_at_kill = offsets.committed()
            worker.kill()
            kills.append(
                {
                    "at_s": round(time.monotonic() - t0, 2),
                    "waited_for_progress_s": round(waited, 2),
                    "random_delay_s": round(delay, 2),
                    "produced_at_kill": feeder.produced,
                    "committed_at_kill": committed_at_kill,
                    "input_still_flowing": feeder.done_at is None,
                }
            )
            print(f"kill {k + 1}: {kills[-1]}", flush=True)
            workers.append(Worker(env, log_dir, k + 1))
        feeder.join(timeout=args.seconds * 3 + 60)
        if feeder.error or feeder.is_alive():
            raise RuntimeError(f"feeder failed: {feeder.error or 'still running'}")
        end = offsets.end()
        drained = wait_until(
            lambda: offsets.committed() >= end or not workers[-1].alive(),
            args.drain_timeout,
            "the last worker to commit the input's end offsets",
        )
        if not workers[-1].alive():
            raise RuntimeError(f"last worker exited on its own; see {workers[-1].log_path}")
        exit_code = workers[-1].terminate()
        committed_view = count(
            read_output(bootstrap, topic_out, args.partitions, "read_committed"), args.n
        )
        uncommitted_view = count(
            read_output(bootstrap, topic_out, args.partitions, "read_uncommitted"), args.n
        )
        return {
            "machine": machine(
                faust_streaming=faust.__version__,
                aiokafka=aiokafka.__version__,
                kafka_broker=KAFKA_BROKER,
            ),
            "settings": {
                "guarantee": args.guarantee,
                "n": args.n,
                "kills": args.kills,
                "partitions_in": args.partitions,
                "partitions_out": args.partitions,
                "seed": args.seed,
                "feed_seconds": args.seconds,
                "kill_delay_after_progress_s": [args.min_delay, args.max_delay],
                "faust_commit_interval_s": 2.8,
                "bootstrap": bootstrap,
                "run_id": run_id,
            },
            "kills": kills,
            "input_end_offset": end,
            "drain_s": round(drained, 2),
            "last_worker_exit_code": exit_code,
            "total_s": round(time.monotonic() - t0, 2),
            "read_committed": committed_view,
            "read_uncommitted": uncommitted_view,
            "worker_logs": str(log_dir),
        }
    finally:
        feeder.stop.set()
        for worker in workers:
            if worker.alive():
                worker.proc.kill()
                worker.proc.wait(timeout=30)
        offsets.close()
        for f in admin.delete_topics([topic_in, topic_out]).values():
            try:
                f.result(timeout=30)
            except Exception as exc:  # cleanup must not hide the run's own error
                print(f"warning: topic cleanup: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--guarantee", choices=["exactly_once", "at_least_once"], default="exactly_once"
    )
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:29092"))
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=45.0, help="time to feed the input")
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=1, help="input and output partitions")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--min-delay", type=float, default=0.2)
    parser.add_argument("--max-delay", type=float, default=3.0)
    parser.add_argument("--progress-timeout", type=float, default=90.0)
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "faust_eos_crash.json")
    args = parser.parse_args(argv)
    result = run(args)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    # One file, one entry per guarantee, so the exactly_once run and its baseline sit together.
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc["machine"] = result.pop("machine")
    doc.setdefault("runs", {})[args.guarantee] = result
    out.write_text(json.dumps(doc, indent=2) + "\n")
    rc, ru = result["read_committed"], result["read_uncommitted"]
    print(
        f"faust {args.guarantee}: n={args.n} kills={len(result['kills'])} "
        f"partitions={args.partitions} seed={args.seed} | read_committed: "
        f"outputs={rc['outputs']} distinct={rc['distinct']} duplicates={rc['duplicates']} "
        f"missing={rc['missing']} | read_uncommitted: outputs={ru['outputs']} "
        f"duplicates={ru['duplicates']} missing={ru['missing']} -> {out}"
    )


if __name__ == "__main__":
    main()
