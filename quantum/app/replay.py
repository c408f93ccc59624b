"""`quantum replay`: what would another configuration have done with recorded market data?

Reads the bars a run recorded (`market.ticks` under `--from-prefix`: a live deployment's,
a paper run's, or an earlier backtest's kept with `--keep-topics`), optionally a time range
of them, and replays them through every agent under a new prefix with another config,
with either engine, then writes the same report as `quantum backtest`.

The recorded bars are put in event-time order (close time, then symbol) and each bar
(`event_id`: symbol, interval, open time) is taken once: a live feed that reconnected may
have written one twice, and a replay must not trade it twice. Markers are left out; the
replay ends with its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from quantum.app.backtest.cli import config_echo, progress_printer
from quantum.app.backtest.report import write_report
from quantum.app.backtest.run import ENGINES, Backtest, run_record, run_settings
from quantum.end_of_stream import marker_of
from quantum.errors import CliError, PoisonRecord
from quantum.kafka_util import end_offsets, read_range
from quantum.marketdata import Kline
from quantum.marketdata.files import parse_time_ms
from quantum.serde import AvroSerde
from quantum.validation import validate
from topologies.apply import delete_run_topics
from topologies.declaration import MARKET_TICKS, PORTFOLIO, TOPOLOGY

TICK_SCHEMA = TOPOLOGY.topic(MARKET_TICKS).schema or ""


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="re-run a recorded run's bars (a time range) under a new prefix with another config",
        description="Reads market.ticks under --from-prefix, replays it through every agent "
        "under --to-prefix (which must be new) with the configuration of --config, and writes "
        "summary.json and trades.csv as `quantum backtest` does. Compare two runs with "
        "`quantum backtest --compare A B`.",
    )
    p.add_argument("--from-prefix", required=True, help="topic prefix of the recorded run")
    p.add_argument("--to-prefix", required=True, help="new topic prefix for the replay")
    p.add_argument("--config", type=Path, help="TOML configuration of the replay (QT_CONFIG)")
    p.add_argument("--from", dest="start", help="first bar: open time (ISO-8601 or epoch ms)")
    p.add_argument("--to", dest="end", help="end of the range (exclusive, by open time)")
    p.add_argument("--engine", choices=ENGINES, default="inprocess", help="default: inprocess")
    p.add_argument("--out", type=Path, default=None, help="report folder (default runs/<prefix>)")
    p.add_argument("--keep-topics", action="store_true", help="leave the replay's topics")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run_replay_command)


def _records_in(settings: Any, topic: str) -> int:
    """How many records `topic` holds (0 if it does not exist)."""
    try:
        return sum(end_offsets(settings.kafka.bootstrap, topic, 30).values())
    except ValueError:
        return 0


def recorded_bars(
    settings: Any, prefix: str, *, start_ms: int | None = None, end_ms: int | None = None
) -> list[Kline]:
    """The bars recorded under `prefix`, in [start_ms, end_ms) by open time, in event-time
    order, each once. A record that does not decode or validate is skipped here: it was
    dead-lettered by the recorded run's readers already."""
    source = settings.with_prefix(prefix)
    topic = source.topic(MARKET_TICKS)
    if not _records_in(settings, topic):
        raise CliError(f"replay: no recorded bars in {topic}")
    serde = AvroSerde.from_settings(settings)
    seen: dict[str, Kline] = {}
    for msg in read_range(settings.kafka.bootstrap, topic, timeout_s=120):
        try:
            value = serde.decode(topic, msg.value() or b"", schema_file=TICK_SCHEMA)
            validate(TICK_SCHEMA, value)
        except PoisonRecord:
            continue
        if marker_of(value) is not None:
            continue
        bar = Kline.from_record(value)
        if start_ms is not None and bar.open_time < start_ms:
            continue
        if end_ms is not None and bar.open_time >= end_ms:
            continue
        seen.setdefault(bar.event_id, bar)
    return sorted(seen.values(), key=lambda b: (b.close_time, b.symbol))


def run_replay_command(args: argparse.Namespace, settings: Any) -> int:
    if args.from_prefix == args.to_prefix:
        raise CliError("replay: --to-prefix must differ from --from-prefix")
    env: dict[str, str] = {}
    if args.config is not None:
        if not args.config.is_file():
            raise CliError(f"replay: no config file {args.config}")
        env["QT_CONFIG"] = str(args.config.resolve())
    start = parse_time_ms(args.start) if args.start else None
    end = parse_time_ms(args.end) if args.end else None
    bars = recorded_bars(settings, args.from_prefix, start_ms=start, end_ms=end)
    if not bars:
        raise CliError("replay: no recorded bars in the given range")
    target = settings.with_prefix(args.to_prefix)
    if _records_in(settings, target.topic(PORTFOLIO)):
        raise CliError(f"replay: {args.to_prefix!r} was used before; give a new prefix")
    out = args.out or Path("runs") / f"replay-{args.to_prefix.strip('.')}"
    backtest = Backtest(target, out, env=env, engine=args.engine)
    effective = run_settings(target, env)  # the replay's configuration, echoed in the report
    try:
        progress = None if args.quiet else progress_printer(len(bars))
        stats, wall_s = backtest.run(bars, progress)
        if progress is not None:
            sys.stderr.write("\n")
        config = config_echo(effective)
        summary = write_report(effective, out, feed=vars(stats), config=config)
    finally:
        if not args.keep_topics:
            delete_run_topics(target)
    run = run_record(backtest, stats, wall_s)
    run["replayed_from"] = args.from_prefix
    run["config_file"] = str(args.config) if args.config else None
    run["config"] = config
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"\nreport: {(out / 'report.html').resolve()} ({run['bars_per_s']} bars/s)")
    print(f"        {out}/summary.json, {out}/trades.csv")
    return 0 if summary["governor_audit_ok"] else 1
