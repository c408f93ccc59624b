"""`quantum backtest`: replay bars through every agent on a real broker, then report."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from quantum.app.backtest.compare import compare_command
from quantum.app.backtest.driver import FeedStats
from quantum.app.backtest.report import write_report
from quantum.app.backtest.run import ENGINES, Backtest, run_record, run_settings
from quantum.app.local_broker import local_broker
from quantum.errors import CliError
from quantum.marketdata import replay_files, sample_files
from quantum.marketdata.files import parse_time_ms
from quantum.marketdata.model import KlineSource
from topologies.apply import delete_run_topics


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backtest",
        help="replay klines through every agent on a local real broker; summary + trades",
        description="Replays klines (the bundled sample or Binance/plain CSV files) through "
        "every agent, lock-step by event time, on a run-scoped topic prefix, then writes "
        "summary.json and trades.csv from the committed topics.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sample", action="store_true", help="the bundled 10-symbol sample")
    src.add_argument("--data", nargs="+", type=Path, metavar="FILE", help="kline files")
    src.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("A", "B"),
        help="two report folders: summaries and equity side by side (writes compare.json)",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="lockstep",
        help="lockstep: the agents in worker processes, settled per phase (default); "
        "inprocess: every agent's core in this process, the broker at both ends (fast)",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="a TOML configuration for this run (every agent's settings; QT_CONFIG), "
        "echoed in run.json and the report",
    )
    p.add_argument("--symbols", help="comma-separated symbols to keep (default: all)")
    p.add_argument("--from", dest="start", help="first bar (ISO-8601 or epoch ms)")
    p.add_argument("--to", dest="end", help="end of the range (exclusive)")
    p.add_argument("--out", type=Path, default=None, help="report folder (default runs/<id>)")
    p.add_argument("--keep-topics", action="store_true", help="leave the run's topics")
    p.add_argument("--keep-infra", action="store_true", help="leave the local broker running")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--progress",
        action="store_true",
        help="the progress line even when stderr is not a terminal",
    )
    p.set_defaults(func=run_backtest_command)


def progress_printer(total: int | None, *, force: bool = False) -> Any:
    """A one-line progress report on stderr (bars replayed / total, steps, symbols), or
    None when stderr is not a terminal (a log file gets no carriage returns) unless
    `force`."""
    if not (force or sys.stderr.isatty()):
        return None
    every = 1 if sys.stderr.isatty() else 50

    def show(stats: FeedStats) -> None:
        if stats.steps % every:
            return
        done = f"{stats.bars}" + (f"/{total} ({stats.bars / total:.0%})" if total else "")
        sys.stderr.write(
            f"\rbacktest: {done} bars, {stats.steps} steps, {len(stats.per_symbol)} symbols"
        )
        sys.stderr.flush()

    return show


def config_echo(settings: Any) -> dict[str, Any]:
    """The run's whole configuration as JSON values (secrets stay masked), for run.json
    and the report page."""
    return settings.model_dump(mode="json")


def run_backtest_command(args: argparse.Namespace, settings: Any) -> int:
    if args.compare:
        return compare_command(*args.compare, out=args.out)
    files = sample_files() if args.sample else args.data
    symbols = [s.strip().upper() for s in args.symbols.split(",")] if args.symbols else None
    start = parse_time_ms(args.start) if args.start else None
    end = parse_time_ms(args.end) if args.end else None
    source = KlineSource.SAMPLE if args.sample else KlineSource.REPLAY
    items = list(replay_files(files, symbols=symbols, start_ms=start, end_ms=end, source=source))
    if not items:
        raise CliError("backtest: no bars in the given files and range")
    env: dict[str, str] = {}
    if args.config is not None:
        if not args.config.is_file():
            raise CliError(f"backtest: no config file {args.config}")
        env["QT_CONFIG"] = str(args.config.resolve())
    run_id = uuid.uuid4().hex[:8]
    out = args.out or Path("runs") / f"backtest-{run_id}"
    with local_broker(settings, keep=args.keep_infra) as settings:
        if not settings.kafka.topic_prefix:
            settings = settings.with_prefix(f"bt-{run_id}.")
        backtest = Backtest(settings, out, env=env, engine=args.engine)
        try:
            settings = run_settings(settings, env)  # what the workers read: echoed below
        except ValueError as exc:  # a config file with a bad value: say which
            raise CliError(f"backtest: --config {args.config}: {exc}") from exc
        try:
            total = sum(1 for i in items if not hasattr(i, "error"))
            progress = None if args.quiet else progress_printer(total, force=args.progress)
            stats, wall_s = backtest.run(items, progress)
            if progress is not None:
                sys.stderr.write("\n")
            config = config_echo(settings)
            summary = write_report(settings, out, feed=vars(stats), config=config)
        except TimeoutError as exc:
            raise CliError(f"backtest: {exc} (worker logs in {out / 'logs'})") from exc
        finally:
            if not args.keep_topics:
                delete_run_topics(settings)
    run = run_record(backtest, stats, wall_s)
    run["config_file"] = str(args.config) if args.config else None
    run["config"] = config
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"\nreport: {(out / 'report.html').resolve()} ({run['bars_per_s']} bars/s)")
    print(f"        {out}/summary.json, {out}/trades.csv, {out}/equity.png")
    return 0 if summary["governor_audit_ok"] else 1
