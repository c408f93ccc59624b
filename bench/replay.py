"""Replay speed, end to end through the broker (issue 10 item 7): bench/results/replay.json.

    python bench/replay.py                      # 10 symbols x 10,080 bars, 3 runs per engine
    python bench/replay.py --minutes 1440 --runs 1 --lockstep-steps 10   # a quick look

Data: the platform's random-walk generator (quantum/marketdata/generator.py, fixed seed),
10 symbols x `--minutes` one-minute bars, merged in event-time order.
Configuration: the crossover baseline (rule model, SMA 10/30, no regime, fixed notional,
no fees or slippage), the anchor's strategy.

Measured, each run in its own process (peak RSS is the process's; the lock-step workers'
is their own, as children):
* `inprocess`: `quantum backtest --engine inprocess` on every bar: bars/s over the replay
  (writing the bars, reading them back, every agent, every output written and flushed),
  time to the first bar (from the process start and from the replay's start);
* `lockstep`: the worker processes on the first `--lockstep-steps` event times only (its
  per-step cost does not depend on the data's length); its figure for the whole data set
  is an extrapolation and labelled so;
* baselines in the same run: a bare Python loop over the same bars doing the SMA
  crossover (floats, deques, running sums, a position and its PnL), and the Avro
  encode-only and decode-only rates of the same bars (`AvroSerde`, compiled codec).
Medians over `--runs` runs. The machine (cores, model, load average) goes in the file.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEED = 20_261_126
SYMBOLS = 10


def bench_env() -> dict[str, str]:
    """The crossover baseline (tests/e2e/test_pipeline.py's crossover_env, every symbol)."""
    return {
        "QT_SELECTOR__SKIP_FLAT_SELL": "false",
        "QT_EXECUTION__STOP_LOSS_PCT": "0.004",
        "QT_EXECUTION__TAKE_PROFIT_PCT": "0.006",
        "QT_AI_ENGINE__MODELS": '["ma_crossover"]',
        "QT_AI_ENGINE__WEIGHTS": "[1.0]",
        "QT_REGIME__ENABLED": "false",
        "QT_SIZING__MODE": "FIXED_NOTIONAL",
        "QT_SIZING__FIXED_NOTIONAL": "500",
        "QT_PAPER_EXCHANGE__TAKER_FEE_RATE": "0",
        "QT_PAPER_EXCHANGE__MAKER_FEE_RATE": "0",
        "QT_PAPER_EXCHANGE__MARKET_SLIPPAGE_BPS": "0",
    }


def dataset(minutes: int) -> list:
    """10 symbols x `minutes` bars of the generator, in event-time order."""
    from quantum.marketdata.generator import DEFAULT_SYMBOLS, SAMPLE_START_MS, generate

    market = generate(start_ms=SAMPLE_START_MS, minutes=minutes, seed=SEED)
    symbols = [s.symbol for s in DEFAULT_SYMBOLS][:SYMBOLS]
    streams = [market.klines(s) for s in symbols]
    return list(heapq.merge(*streams, key=lambda b: (b.close_time, b.symbol)))


# ------------------------------------------------------------------ baselines


def bare_loop(bars: list, fast: int = 10, slow: int = 30) -> dict[str, float]:
    """The SMA crossover in plain Python over the same bars: per symbol, running sums of
    the last `fast` and `slow` closes; long on a cross up, flat on a cross down."""
    t0 = time.perf_counter()
    state: dict[str, list] = {}
    pnl = 0.0
    trades = 0
    for bar in bars:
        close = float(bar.close)
        s = state.get(bar.symbol)
        if s is None:
            s = state[bar.symbol] = [deque(), deque(), 0.0, 0.0, None, None]
        qf, qs = s[0], s[1]
        qf.append(close)
        qs.append(close)
        s[2] += close
        s[3] += close
        if len(qf) > fast:
            s[2] -= qf.popleft()
        if len(qs) > slow:
            s[3] -= qs.popleft()
        if len(qs) < slow:
            continue
        above = s[2] / fast > s[3] / slow
        if s[4] is not None and above != s[4]:
            if above and s[5] is None:
                s[5] = close
            elif not above and s[5] is not None:
                pnl += close - s[5]
                trades += 1
                s[5] = None
        s[4] = above
    wall = time.perf_counter() - t0
    return {"bars_per_s": len(bars) / wall, "wall_s": wall, "trades": trades, "pnl": pnl}


def codec_rates(bars: list) -> dict[str, float]:
    """Avro encode-only and decode-only rates of the bars' market.ticks records."""
    from quantum.app.settings import Settings
    from quantum.serde import AvroSerde
    from topologies.declaration import MARKET_TICKS, TOPOLOGY

    serde = AvroSerde.from_settings(Settings())
    topic = f"bench-replay.{MARKET_TICKS}"
    schema = TOPOLOGY.topic(MARKET_TICKS).schema or ""
    records = [b.to_record() for b in bars]
    t0 = time.perf_counter()
    data = [serde.encode(topic, r, schema_file=schema) for r in records]
    t1 = time.perf_counter()
    for d in data:
        serde.decode(topic, d, schema_file=schema)
    t2 = time.perf_counter()
    return {"encode_per_s": len(bars) / (t1 - t0), "decode_per_s": len(bars) / (t2 - t1)}


# ------------------------------------------------------------------ one engine run (child)


def child(args: argparse.Namespace) -> None:
    started = float(args.spawned)
    from quantum.app.backtest.report import write_report
    from quantum.app.backtest.run import Backtest
    from quantum.app.settings import Settings
    from topologies.apply import delete_run_topics

    imported = time.time()
    bars = dataset(args.minutes)
    if args.steps:
        times = sorted({b.close_time for b in bars})[: args.steps]
        bars = [b for b in bars if b.close_time <= times[-1]]
    settings = Settings().with_prefix(f"bench-replay-{uuid.uuid4().hex[:8]}.")
    out = Path(args.out_dir)
    first: list[float] = []
    last: list[tuple[float, int, int]] = []  # (time, steps, bars) of the latest step

    def progress(stats) -> None:
        now = time.time()
        if not first:
            first.append(now)
            first.append(stats.bars)
        last[:] = [(now, stats.steps, stats.bars)]

    backtest = Backtest(settings, out, env=bench_env(), engine=args.child)
    try:
        t_run = time.time()
        stats, wall = backtest.run(bars, progress)
        t_report = time.time()
        summary = write_report(settings, out, feed=vars(stats))
        report_s = time.time() - t_report
    finally:
        delete_run_topics(settings)
    es = backtest.engine_stats
    result = {
        "engine": args.child,
        "bars": stats.bars,
        "steps": stats.steps,
        "wall_s": wall,
        "bars_per_s": stats.bars / wall,
        "import_s": imported - started,
        "first_bar_from_process_start_s": first[0] - started if first else None,
        # after the first step: the steady rate, start-up (workers, imports) left out
        "steady_s": last[0][0] - first[0],
        "steady_steps": last[0][1] - 1,
        "steady_bars_per_s": (last[0][2] - first[1]) / (last[0][0] - first[0]),
        "first_bar_from_replay_start_s": first[0] - t_run if first else None,
        "report_s": report_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "trades": summary["trades"],
        "net_pnl": summary["net_pnl"],
    }
    if es is not None:
        result["feed_write_s"] = es.write_s
        result["feed_read_s"] = es.read_s
        result["records_out"] = es.records_out
        result["agent_s"] = dict(sorted(es.agent_s.items()))
        result["deliveries"] = dict(sorted(es.deliveries.items()))
    print("RESULT " + json.dumps(result))


def run_child(engine: str, minutes: int, steps: int | None, py_spy: Path | None = None) -> dict:
    out = Path("/tmp") / f"bench-replay-{engine}-{uuid.uuid4().hex[:6]}"
    cmd = [sys.executable, __file__, "--child", engine, "--minutes", str(minutes)]
    cmd += ["--out-dir", str(out), "--spawned", repr(time.time())]
    if steps:
        cmd += ["--steps", str(steps)]
    if py_spy is not None:
        spy = REPO.parent.parent / "main" / ".venv" / "bin" / "py-spy"
        spy = spy if spy.exists() else Path("/work/main/.venv/bin/py-spy")
        cmd = [str(spy), "record", "--format", "raw", "-r", "50", "-o", str(py_spy), "--", *cmd]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{engine} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=int, default=10_080, help="bars per symbol (default 7 days)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--lockstep-steps", type=int, default=30, help="event times for lockstep")
    p.add_argument("--lockstep-runs", type=int, default=None, help="default: --runs")
    p.add_argument("--profile", type=Path, help="also record one in-process run with py-spy")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "replay.json")
    p.add_argument("--child", choices=("inprocess", "lockstep"))
    p.add_argument("--out-dir")
    p.add_argument("--spawned")
    p.add_argument("--steps", type=int)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    from bench.machine import machine

    load_before = os.getloadavg()
    bars = dataset(args.minutes)
    bare = [bare_loop(bars) for _ in range(max(args.runs, 3))]
    codec = [codec_rates(bars) for _ in range(max(args.runs, 3))]
    inprocess = [run_child("inprocess", args.minutes, None) for _ in range(args.runs)]
    lock_runs = args.lockstep_runs or args.runs
    lockstep = [run_child("lockstep", args.minutes, args.lockstep_steps) for _ in range(lock_runs)]
    if args.profile:
        run_child("inprocess", args.minutes, None, py_spy=args.profile)
    bare_rate = median_of(bare, "bars_per_s")
    in_rate = median_of(inprocess, "bars_per_s")
    lock_rate = median_of(lockstep, "bars_per_s")
    steps_per_s = statistics.median(r["steady_steps"] / r["steady_s"] for r in lockstep)
    total_steps = len({b.close_time for b in bars})
    result = {
        "benchmark": "bench/replay.py",
        "machine": machine(load_average_before=load_before, load_average_after=os.getloadavg()),
        "settings": {
            "symbols": SYMBOLS,
            "bars_per_symbol": args.minutes,
            "bars": len(bars),
            "seed": SEED,
            "config": bench_env(),
            "runs": args.runs,
            "lockstep_steps": args.lockstep_steps,
            "broker": "shared single-node KRaft broker on the same machine",
        },
        "median": {
            "bare_loop_bars_per_s": bare_rate,
            "avro_encode_per_s": median_of(codec, "encode_per_s"),
            "avro_decode_per_s": median_of(codec, "decode_per_s"),
            "inprocess_bars_per_s": in_rate,
            "inprocess_first_bar_from_process_start_s": median_of(
                inprocess, "first_bar_from_process_start_s"
            ),
            "inprocess_first_bar_from_replay_start_s": median_of(
                inprocess, "first_bar_from_replay_start_s"
            ),
            "inprocess_peak_rss_mb": median_of(inprocess, "peak_rss_mb"),
            "inprocess_to_bare_loop": in_rate / bare_rate if in_rate and bare_rate else None,
            "lockstep_bars_per_s_on_slice": lock_rate,
            "lockstep_steady_bars_per_s_on_slice": median_of(lockstep, "steady_bars_per_s"),
            "inprocess_steady_bars_per_s": median_of(inprocess, "steady_bars_per_s"),
            "lockstep_first_bar_from_process_start_s": median_of(
                lockstep, "first_bar_from_process_start_s"
            ),
            "lockstep_peak_rss_mb_feed": median_of(lockstep, "peak_rss_mb"),
            "lockstep_peak_rss_mb_worker": median_of(lockstep, "workers_peak_rss_mb"),
            "lockstep_to_bare_loop": lock_rate / bare_rate if lock_rate and bare_rate else None,
            "anchor_nautilus_bars_per_s": 36_000,
        },
        "extrapolated": {
            "lockstep_whole_dataset_s": total_steps / steps_per_s,
            "lockstep_whole_dataset_bars_per_s": len(bars) / (total_steps / steps_per_s),
            "note": "EXTRAPOLATION: lockstep ran only the first "
            f"{args.lockstep_steps} event times; its steady time per event time "
            f"({1 / steps_per_s:.3f} s, after the first) times the data set's "
            f"{total_steps} event times (worker start-up left out)",
        },
        "runs": {"bare_loop": bare, "codec": codec, "inprocess": inprocess, "lockstep": lockstep},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median"], indent=2))
    print(json.dumps(result["extrapolated"], indent=2))


if __name__ == "__main__":
    main()
