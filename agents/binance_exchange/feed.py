"""The live market feed: Binance USD-M websocket klines -> market.ticks and market.bars,
with no holes in event time.

One combined-stream connection (`<base>/market/stream?streams=btcusdt@kline_1m/...`)
carries every symbol's klines; only closed ones (`k.x` true) become records, the same
`Kline` record a replay writes (source LIVE), on both topics (docs/topology.md: live, the
feed writes each kline to market.bars and market.ticks). Per symbol a cursor holds the
next open time expected:

- a closed bar at the cursor is written and moves it on;
- a bar after it means bars were missed (a dropped connection, a slow reconnect): the
  missing ones come from `GET /fapi/v1/klines` first, in order, then this one;
- a bar before it was written already (a re-sent message) and is skipped.

So each symbol's topic partition gets every bar once, in order. A dropped connection is
retried with exponential backoff (`backoff_s` doubling to `max_backoff_s`, reset once
a message arrives). `resume` starts the cursors where a previous run stopped (the CLI
reads the last bar per symbol from market.ticks), so a restart fills its gap too.

The mark price stream is not relayed: market.ticks carries one closed bar per interval,
and its readers (paper exchange, positions, exits) take every record as such a bar.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from agents.binance_exchange.sink import Sink
from quantum.marketdata import Kline
from quantum.marketdata.model import KlineSource, interval_ms
from topologies.declaration import MARKET_BARS, MARKET_TICKS

log = logging.getLogger(__name__)

MAINNET_WS = "wss://fstream.binance.com"
TESTNET_WS = "wss://fstream.binancefuture.com"
MAINNET_REST = "https://fapi.binance.com"
TESTNET_REST = "https://testnet.binancefuture.com"

RestKlines = Callable[[str, str, int, int], Iterable[Kline]]


def kline_of_stream(k: dict[str, Any]) -> Kline:
    """A websocket kline payload (`k` of a kline event) as a LIVE Kline."""
    return Kline(
        symbol=str(k["s"]),
        interval=str(k["i"]),
        open_time=int(k["t"]),
        close_time=int(k["T"]),
        open=Decimal(str(k["o"])),
        high=Decimal(str(k["h"])),
        low=Decimal(str(k["l"])),
        close=Decimal(str(k["c"])),
        volume=Decimal(str(k["v"])),
        trades=int(k.get("n", 0)),
        source=KlineSource.LIVE,
    )


def kline_of_rest(symbol: str, interval: str, row: list[Any]) -> Kline:
    """A `GET /fapi/v1/klines` row ([open time, o, h, l, c, v, close time, _, trades, ...])."""
    return Kline(
        symbol=symbol,
        interval=interval,
        open_time=int(row[0]),
        close_time=int(row[6]),
        open=Decimal(str(row[1])),
        high=Decimal(str(row[2])),
        low=Decimal(str(row[3])),
        close=Decimal(str(row[4])),
        volume=Decimal(str(row[5])),
        trades=int(row[8]),
        source=KlineSource.LIVE,
    )


def rest_klines(
    *, mainnet: bool = False, base: str | None = None, pause_s: float = 0.25
) -> RestKlines:
    """Closed klines start <= open time < end from REST (the data fetcher's pager)."""
    from pathlib import Path

    from quantum.marketdata.fetch import Fetcher

    rest_base = base or (MAINNET_REST if mainnet else TESTNET_REST)
    fetcher = Fetcher(Path("."), rest_base=rest_base, pause_s=pause_s)

    def fetch(symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Kline]:
        rows = fetcher.rest_rows(symbol, interval, start_ms, end_ms)
        return [kline_of_rest(symbol, interval, r) for r in rows]

    return fetch


@dataclass
class FeedStats:
    streamed: int = 0
    filled: int = 0
    skipped: int = 0
    connections: int = 0
    drops: int = 0


class KlineFeed:
    """Closed klines of `symbols` into market.ticks and market.bars (module docstring)."""

    def __init__(
        self,
        sink: Sink,
        symbols: list[str],
        interval: str,
        *,
        rest: RestKlines,
        mainnet: bool = False,
        base_url: str | None = None,
        resume: dict[str, int] | None = None,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        recv_timeout_s: float = 5.0,
    ) -> None:
        self.sink = sink
        self.symbols = [s.upper() for s in symbols]
        self.interval = interval
        self.step = interval_ms(interval)
        self._rest = rest
        self.base_url = base_url or (MAINNET_WS if mainnet else TESTNET_WS)
        self.cursor: dict[str, int] = dict(resume or {})  # symbol -> next open time
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._recv_timeout = recv_timeout_s
        self.stats = FeedStats()

    @property
    def url(self) -> str:
        streams = "/".join(f"{s.lower()}@kline_{self.interval}" for s in self.symbols)
        return f"{self.base_url}/market/stream?streams={streams}"

    def run(self, stop: Callable[[], bool]) -> FeedStats:
        return asyncio.run(self.run_async(stop))

    async def run_async(self, stop: Callable[[], bool]) -> FeedStats:
        delay = self._backoff
        while not stop():
            received = 0
            try:
                async with connect(self.url, open_timeout=10, close_timeout=2) as ws:
                    self.stats.connections += 1
                    while not stop():
                        try:
                            text = await asyncio.wait_for(ws.recv(), timeout=self._recv_timeout)
                        except TimeoutError:
                            continue
                        received += 1
                        delay = self._backoff
                        self.on_message(text if isinstance(text, str) else text.decode())
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                self.stats.drops += 1
                log.warning("feed: connection lost (%s); reconnecting", type(exc).__name__)
            if not stop() and not received:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
        return self.stats

    def on_message(self, text: str) -> None:
        """One websocket message: a closed kline is written (after any gap it reveals)."""
        try:
            message = json.loads(text)
            data = message.get("data", message)
            if data.get("e") != "kline" or not data["k"].get("x"):
                return  # an open bar's update, or another event
            bar = kline_of_stream(data["k"])
        except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
            log.error("feed: unreadable message (%s): %.200s", type(exc).__name__, text)
            return
        if bar.symbol not in self.symbols or bar.interval != self.interval:
            return
        self.on_closed(bar)

    def on_closed(self, bar: Kline) -> None:
        expected = self.cursor.get(bar.symbol)
        if expected is not None and bar.open_time < expected:
            self.stats.skipped += 1
            return
        if expected is not None and bar.open_time > expected:
            missed = [
                b
                for b in self._rest(bar.symbol, self.interval, expected, bar.open_time)
                if expected <= b.open_time < bar.open_time
            ]
            for b in sorted(missed, key=lambda b: b.open_time):
                if b.open_time >= self.cursor[bar.symbol]:
                    self._write(b)
                    self.stats.filled += 1
            if self.cursor[bar.symbol] != bar.open_time:
                log.error(
                    "feed: %s bars %d..%d not available from REST either",
                    bar.symbol,
                    self.cursor[bar.symbol],
                    bar.open_time,
                )
        self._write(bar)
        self.stats.streamed += 1

    def _write(self, bar: Kline) -> None:
        record = bar.to_record()
        key = bar.symbol.encode()
        self.sink.send(MARKET_TICKS, record, key)
        self.sink.send(MARKET_BARS, record, key)
        self.sink.flush()  # the cursor moves only past delivered bars
        self.cursor[bar.symbol] = bar.open_time + self.step


def resume_points(settings: Any, serde: Any, symbols: list[str], interval: str) -> dict[str, int]:
    """Next open time per symbol after the last bar of `interval` in market.ticks (the
    previous run's end), so a restarted feed fills the time it was down."""
    from quantum.kafka_util import read_range
    from topologies.declaration import TOPOLOGY

    topic = settings.topic(MARKET_TICKS)
    schema = TOPOLOGY.topic(MARKET_TICKS).schema or ""
    step = interval_ms(interval)
    wanted = set(symbols)
    points: dict[str, int] = {}
    for msg in read_range(settings.kafka.bootstrap, topic, isolation="read_uncommitted"):
        key = (msg.key() or b"").decode()
        if key not in wanted or msg.value() is None:
            continue
        v = serde.decode(topic, msg.value(), schema_file=schema)
        if v.get("end_of_stream") is None and v["interval"] == interval:
            points[key] = max(points.get(key, 0), int(v["open_time"]) + step)
    return points
