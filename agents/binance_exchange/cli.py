"""The live venue's verbs: `quantum reconcile`, `quantum binance userstream`,
`quantum feed binance`.

Every verb reads the keys from the environment or the secrets file
(exchange/binance/credentials.py) and talks to the testnet unless
`QT_BINANCE_EXCHANGE__MAINNET=true` (the explicit flag)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import asdict
from typing import Any

from quantum.errors import CliError


def add_commands(sub: argparse._SubParsersAction) -> None:
    rec = sub.add_parser(
        "reconcile",
        help="compare Binance's positions and open orders with ours (exit 0 clean, 1 mismatch)",
    )
    rec.add_argument("--json", action="store_true", help="machine-readable diff")
    rec.add_argument(
        "--loop",
        action="store_true",
        help="check every binance_exchange.reconcile_every_ms until stopped; a mismatch seen "
        "twice in a row sends Halt to the governor and a RECONCILE_MISMATCH alert",
    )
    rec.set_defaults(func=_reconcile)

    binance = sub.add_parser("binance", help="the live Binance USD-M venue's processes")
    verbs = binance.add_subparsers(dest="verb", metavar="VERB", required=True)
    us = verbs.add_parser(
        "userstream",
        help="user-data stream -> binance.user-events (listen key kept alive, resync on "
        "every (re)connect)",
    )
    us.add_argument("--symbols", required=True, help="symbols to resync fills of, e.g. BTCUSDT")
    us.set_defaults(func=_userstream)

    feed = sub.add_parser("feed", help="live market data into market.ticks / market.bars")
    sources = feed.add_subparsers(dest="source", metavar="SOURCE", required=True)
    bf = sources.add_parser(
        "binance", help="USD-M websocket klines (closed bars), gaps filled from REST"
    )
    bf.add_argument("--symbols", required=True, help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    bf.add_argument("--interval", default="1m", help="kline interval (default 1m)")
    bf.set_defaults(func=_feed)


def _symbols(text: str) -> list[str]:
    symbols = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not symbols:
        raise CliError("--symbols names no symbol")
    return symbols


def _config(settings: Any) -> Any:
    from agents.binance_exchange.config import BinanceVenueConfig

    return getattr(settings, "binance_exchange", None) or BinanceVenueConfig()


def _venue(settings: Any) -> Any:
    from agents.binance_exchange.agent import connect
    from exchange.binance.credentials import CredentialsError

    try:
        return connect(_config(settings))
    except CredentialsError as exc:
        raise CliError(str(exc)) from None


def _stop_flag() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _reconcile(args: argparse.Namespace, settings: Any) -> int:
    from agents.binance_exchange.reconcile_shell import reconcile_loop, reconcile_once
    from agents.binance_exchange.sink import KafkaSink
    from quantum.serde import AvroSerde

    venue = _venue(settings)
    serde = AvroSerde.from_settings(settings)
    if args.loop:
        stop = _stop_flag()
        halts = reconcile_loop(
            lambda: reconcile_once(settings, serde, venue),
            KafkaSink(settings, serde),
            every_ms=_config(settings).reconcile_every_ms,
            stop=stop.is_set,
            sleep=lambda s: stop.wait(s),
        )
        print(f"reconcile: stopped after {halts} halt(s)")
        return 0
    diff = reconcile_once(settings, serde, venue)
    if args.json:
        print(json.dumps([asdict(m) for m in diff.mismatches], default=str, indent=2))
    else:
        print(diff.render())
    return 0 if diff.clean else 1


def _userstream(args: argparse.Namespace, settings: Any) -> int:
    from agents.binance_exchange.sink import KafkaSink
    from agents.binance_exchange.userstream_client import UserStreamClient

    venue = _venue(settings)
    stop = _stop_flag()
    client = UserStreamClient(
        venue,
        KafkaSink(settings),
        _symbols(args.symbols),
        mainnet=venue.mainnet,
        base_url=_config(settings).ws_url,
    )
    client.run(stop.is_set)
    return 0


def _feed(args: argparse.Namespace, settings: Any) -> int:
    from agents.binance_exchange.feed import KlineFeed, rest_klines, resume_points
    from agents.binance_exchange.sink import KafkaSink
    from quantum.serde import AvroSerde

    config = _config(settings)
    symbols = _symbols(args.symbols)
    serde = AvroSerde.from_settings(settings)
    stop = _stop_flag()
    feed = KlineFeed(
        KafkaSink(settings, serde),
        symbols,
        args.interval,
        rest=rest_klines(mainnet=config.mainnet),
        mainnet=config.mainnet,
        resume=resume_points(settings, serde, symbols, args.interval),
    )
    feed.run(stop.is_set)
    print(f"feed: {feed.stats}", file=sys.stderr)
    return 0
