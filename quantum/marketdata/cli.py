"""`quantum data generate | inspect`: make synthetic klines, look at kline files.

`generate` writes Binance-format kline CSVs (zipped like Binance's archives by default)
from the seeded generator; `--sample` rewrites the bundled sample in data/sample.
`inspect` replays files exactly as the feed would and prints, per symbol and interval,
bars, time range and row errors by reason: what a replay of them would send and
dead-letter.
"""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from quantum.config import RuntimeSettings
from quantum.errors import CliError
from quantum.marketdata import SAMPLE_DIR
from quantum.marketdata.files import FileSpec, parse_time_ms, replay_files
from quantum.marketdata.generator import (
    DAY_MINUTES,
    DEFAULT_SYMBOLS,
    SAMPLE_SEED,
    SAMPLE_START_MS,
    SPECS_BY_SYMBOL,
    generate,
    write_sample,
)
from quantum.marketdata.model import MarketDataError, RowError


def add_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "data", help="market data: fetch real klines, generate synthetic ones, inspect files"
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    gen = verbs.add_parser(
        "generate", help="seeded synthetic 1-minute klines in Binance's CSV format"
    )
    gen.add_argument("--out", type=Path, default=Path("data/generated"), help="output directory")
    gen.add_argument(
        "--symbols",
        default=",".join(s.symbol for s in DEFAULT_SYMBOLS),
        help=f"comma-separated, from {', '.join(SPECS_BY_SYMBOL)}",
    )
    length = gen.add_mutually_exclusive_group()
    length.add_argument("--days", type=float, default=3.0, help="length in days (default 3)")
    length.add_argument("--minutes", type=int, help="length in minutes")
    gen.add_argument(
        "--start", default="2026-01-01T00:00:00Z", help="first bar's open time (ISO-8601 or epoch)"
    )
    gen.add_argument(
        "--seed", type=int, default=SAMPLE_SEED, help="RNG seed (same seed, same bytes)"
    )
    gen.add_argument("--label", default="synthetic", help="file names: <SYMBOL>-1m-<label>.zip")
    gen.add_argument("--csv", action="store_true", help="plain .csv files instead of .zip")
    gen.add_argument(
        "--sample",
        action="store_true",
        help=f"rewrite the bundled sample in {SAMPLE_DIR} (ignores the other options)",
    )
    gen.set_defaults(func=_generate)

    ins = verbs.add_parser("inspect", help="replay kline files and summarise bars and row errors")
    ins.add_argument("files", nargs="+", type=Path, help="CSV or zip files, or directories")
    ins.add_argument("--symbol", help="symbol of every file (default: from the file name)")
    ins.add_argument("--interval", help="bar interval of every file (default: name or data)")
    ins.add_argument("--from", dest="start", help="first open time (inclusive), ISO-8601 or epoch")
    ins.add_argument("--to", dest="end", help="last open time (exclusive), ISO-8601 or epoch")
    ins.add_argument("--errors", type=int, default=5, help="row errors to print (default 5)")
    ins.set_defaults(func=_inspect)

    fetch = verbs.add_parser(
        "fetch", help="download real Binance USD-M klines (public archives or REST), resumable"
    )
    fetch.add_argument("--symbols", required=True, help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    fetch.add_argument("--start", required=True, help="first day (ISO-8601 or epoch), inclusive")
    fetch.add_argument("--end", required=True, help="end (ISO-8601 or epoch), exclusive")
    fetch.add_argument("--interval", default="1m", help="bar interval (default 1m)")
    fetch.add_argument("--out", type=Path, default=Path("data/klines"), help="output directory")
    fetch.add_argument(
        "--source",
        choices=("archive", "rest"),
        default="archive",
        help="data.binance.vision zips (default; REST for days not yet published) or REST only",
    )
    fetch.add_argument("--quiet", action="store_true", help="no progress lines")
    fetch.set_defaults(func=_fetch)


def _time(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_time_ms(text)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _generate(args: argparse.Namespace, _settings: RuntimeSettings) -> int:
    if args.sample:
        paths = write_sample(SAMPLE_DIR)
    else:
        try:
            specs = [SPECS_BY_SYMBOL[s.strip()] for s in args.symbols.split(",") if s.strip()]
        except KeyError as exc:
            raise CliError(f"no generator profile for symbol {exc}") from None
        minutes = args.minutes if args.minutes is not None else round(args.days * DAY_MINUTES)
        start = _time(args.start) or SAMPLE_START_MS
        market = generate(start_ms=start, minutes=minutes, seed=args.seed, symbols=specs)
        paths = market.write(args.out, args.label, compress=not args.csv)
    total = sum(p.stat().st_size for p in paths)
    for p in paths:
        print(f"{p}  {p.stat().st_size:,} bytes")
    print(f"{len(paths)} files, {total:,} bytes")
    return 0


def _fetch(args: argparse.Namespace, _settings: RuntimeSettings) -> int:
    from quantum.marketdata.fetch import Fetcher, FetchError, Status

    start, end = _time(args.start), _time(args.end)
    assert start is not None and end is not None
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    if not symbols:
        raise CliError("--symbols is empty")
    say = (lambda _line: None) if args.quiet else (lambda line: print(line, flush=True))
    try:
        results = Fetcher(args.out).fetch(
            symbols, args.interval, start, end, source=args.source, progress=say
        )
    except (FetchError, MarketDataError) as exc:
        raise CliError(str(exc)) from None
    missing = [r.name for r in results if r.status is Status.MISSING]
    total = sum(r.size for r in results)
    print(f"{len(results)} files in {args.out}, {total:,} bytes; {len(missing)} not available")
    for name in missing:
        print(f"  missing: {name}")
    return 1 if missing else 0


def _inspect(args: argparse.Namespace, _settings: RuntimeSettings) -> int:
    specs = [FileSpec(p, args.symbol, args.interval) for p in args.files]
    bars: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], int] = {}
    reasons: Counter[str] = Counter()
    shown = 0
    try:
        for item in replay_files(specs, start_ms=_time(args.start), end_ms=_time(args.end)):
            if isinstance(item, RowError):
                reasons[item.reason] += 1
                if shown < args.errors:
                    print(f"error  {item}\n       {item.raw[:160]}")
                    shown += 1
                continue
            series = (item.symbol, item.interval)
            bars[series] += 1
            first.setdefault(series, item.open_time)
            last[series] = item.open_time
    except MarketDataError as exc:
        raise CliError(str(exc)) from None
    for series in sorted(bars):
        symbol, interval = series
        print(
            f"{symbol:<12} {interval:>4}  {bars[series]:>8} bars  "
            f"{_iso(first[series])} .. {_iso(last[series])}"
        )
    print(f"{sum(bars.values())} bars, {sum(reasons.values())} row errors", end="")
    print(f" ({', '.join(f'{r}: {n}' for r, n in sorted(reasons.items()))})" if reasons else "")
    return 1 if reasons else 0
