"""`quantum demo`: the main job on its embedded default, start to finish, on a real broker.

1. starts the local broker and schema registry (unless KAFKA_BOOTSTRAP is set);
2. replays the first hours of the bundled sample (10 symbols, 1-minute bars) through every
   agent — features and the signal model, selector, sizing, the exactly-once governor,
   execution on the paper exchange, positions and exits — lock-step by event time, on a
   run-scoped topic prefix, with two damaged rows that go to the dead-letter topic.
   The signal model is the moving-average crossover by default: the bundled sample is a
   seeded random walk, on which the trained 5-model ensemble (`--models ensemble`) rightly
   finds no edge and asks for nothing (6 h: 0 slot requests, every signal below the
   confidence floor or a flat-regime sell), which leaves the report empty. Its brackets
   are 0.5 % / 1 % (`DEMO_ENV`) so that positions close within hours of 1-minute bars;
3. writes the report (summary.json, trades.csv, charts and one self-contained report.html)
   from the committed topics and re-audits the governor's decisions log (open + reserved
   <= the cap at every offset);
4. prints the audit's race, simulated on one event sequence, beside ours;
5. stops what it started.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from quantum.app.backtest.cli import config_echo, progress_printer
from quantum.app.backtest.report import write_report
from quantum.app.backtest.run import Backtest, run_settings
from quantum.app.local_broker import local_broker
from quantum.errors import CliError, InvalidRecord
from quantum.marketdata import Kline, RowError, replay_files, sample_files
from quantum.marketdata.model import KlineSource
from topologies.apply import delete_run_topics

HOUR_MS = 3_600_000


def add_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the main job end to end on a local real broker")
    parser.add_argument("--hours", type=float, default=6.0, help="hours of the sample to replay")
    parser.add_argument("--out", type=Path, default=None, help="report folder")
    parser.add_argument(
        "--models",
        default="ma_crossover",
        help="signal models, comma-separated, or 'ensemble' for the trained five "
        "(default: ma_crossover, which trades on the random-walk sample)",
    )
    parser.add_argument("--keep-infra", action="store_true", help="leave the broker running")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to settle a bar")
    parser.add_argument(
        "--progress", action="store_true", help="progress line even when stderr is no terminal"
    )
    parser.set_defaults(func=run_demo)


def _stage(title: str) -> None:
    print(f"\n== {title}", flush=True)


def demo_items(hours: float) -> list[Kline | RowError]:
    """The sample's first `hours`, plus two damaged rows the feed must dead-letter."""
    items = list(replay_files(sample_files(), source=KlineSource.SAMPLE))
    start = next(i.open_time for i in items if isinstance(i, Kline))
    cut = [i for i in items if isinstance(i, Kline) and i.open_time < start + hours * HOUR_MS]
    bad = [
        RowError("demo", 1, "not,a,kline", InvalidRecord("MALFORMED_ROW", "3 cols"), "BTCUSDT"),
        RowError("demo", 2, "1,2,1,2,NaN,5", InvalidRecord("INVALID_VALUE", "NaN"), "ETHUSDT"),
    ]
    return [*cut[:30], *bad, *cut[30:]]


def run_demo(args: argparse.Namespace, settings: Any) -> int:
    run_id = uuid.uuid4().hex[:8]
    out = args.out or Path("runs") / f"demo-{run_id}"
    with local_broker(settings, keep=args.keep_infra) as settings:
        if not settings.kafka.topic_prefix:
            settings = settings.with_prefix(f"demo-{run_id}.")
        settings, env = _with_models(settings, args.models)
        items = demo_items(args.hours)
        bars = sum(isinstance(i, Kline) for i in items)
        _stage(f"backtest: {bars} sample bars through every agent (prefix {run_id})")
        backtest = Backtest(settings, out, env=env, settle_timeout_s=args.timeout)
        try:
            t0 = time.monotonic()
            progress = progress_printer(bars, force=args.progress)
            stats, _ = backtest.run(items, progress)
            if progress is not None:
                sys.stderr.write("\n")
            summary = write_report(settings, out, feed=vars(stats), config=config_echo(settings))
            wall = time.monotonic() - t0
        except (TimeoutError, RuntimeError) as exc:
            raise CliError(f"demo: {exc}") from exc
        finally:
            delete_run_topics(settings)
    print(json.dumps(summary, indent=2))
    print(
        f"\n{stats.bars} bars in {wall:.0f} s ({stats.bars / wall:.0f} bars/s); "
        f"{stats.row_errors} damaged rows dead-lettered; report in {out}/"
    )
    _stage("the audit's race, simulated on one event sequence (docs/audit-race.md)")
    _race_comparison()
    verdict = "OK" if summary["governor_audit_ok"] else "VIOLATED"
    print(f"\ngovernor audit of the committed decisions log: {verdict}")
    print(f"\nthe report (open it in a browser): {(out / 'report.html').resolve()}")
    return 0 if summary["governor_audit_ok"] else 1


# The demo's brackets: hours of 1-minute bars, so tighter than the defaults (1.5 % / 2.5 %,
# sized for longer holds) or few positions would close within the run. `quantum backtest`
# runs the defaults, or any `--config`.
DEMO_ENV = {"QT_EXECUTION__STOP_LOSS_PCT": "0.005", "QT_EXECUTION__TAKE_PROFIT_PCT": "0.01"}


def _with_models(settings: Any, models: str) -> tuple[Any, dict[str, str]]:
    """The workers' env for the demo (its brackets, `--models`) and the settings they will
    read (for the report's config echo)."""
    env = dict(DEMO_ENV)
    if models != "ensemble":
        chosen = [m.strip() for m in models.split(",") if m.strip()]
        env["QT_AI_ENGINE__MODELS"] = json.dumps(chosen)
        env["QT_AI_ENGINE__WEIGHTS"] = json.dumps([1.0] * len(chosen))
    try:
        return run_settings(settings, env), env
    except ValueError as exc:
        raise CliError(f"demo: --models {models}: {exc}") from exc


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
