"""The user-data stream client: Binance's websocket -> binance.user-events, never losing
a fill across a reconnect.

Lifecycle (`exchange.binance.userstream.ListenKey` decides, this shell acts):

- CREATE (start, `listenKeyExpired`, a keep-alive answered -1125, or 60 min without one):
  `POST /fapi/v1/listenKey`, connect to `<base>/private/ws/<listenKey>`;
- KEEPALIVE every 30 min: `PUT /fapi/v1/listenKey`, timed by the later of the wall clock
  and the newest event time seen (so a replayed sequence drives it too);
- RECONNECT 5 min before Binance's 24 h cut, and after any dropped connection, with
  exponential backoff (`backoff_s` doubling up to `max_backoff_s`, reset by a message).

After every (re)connect it **resyncs**: `GET /fapi/v1/userTrades` for each symbol from the
trade time of the last fill it saw (inclusive; at the first connect `lookback_ms` back),
page by page, each row a RESYNC record. The stream's own copies and the rows overlap on
purpose; the binance_exchange agent passes each (symbol, trade id, order id) once
(`FillDeduplicator`), so a fill that happened while disconnected arrives once and none
twice. Records are flushed to Kafka before the resync point moves past them.

Messages are written as Binance sent them (the JSON text): parsing and the mapping to
reports happen in the agent, which holds the client-id table. A message that does not
parse is still written (the agent dead-letters it, so it is never silently dropped).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from agents.binance_exchange.model import EventSource, UserEventRecord
from agents.binance_exchange.sink import Sink
from exchange.binance.rest import BinanceFutures, VenueError
from exchange.binance.userstream import (
    KeyAction,
    ListenKey,
    ListenKeyExpired,
    OrderUpdate,
    parse_event,
)
from quantum.errors import InvalidRecord
from quantum.records import to_avro
from topologies.declaration import BINANCE_USER_EVENTS

log = logging.getLogger(__name__)

MAINNET_WS = "wss://fstream.binance.com"
TESTNET_WS = "wss://fstream.binancefuture.com"
DAY_MS = 86_400_000
USER_TRADES_PAGE = 1000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def event_id(message: dict[str, Any]) -> str:
    """`<type>:<E>:<symbol>:<id>`: a re-sent message gets the same id."""
    data = message.get("data", message) if isinstance(message, dict) else {}
    o = data.get("o", {}) if isinstance(data.get("o"), dict) else {}
    ident = o.get("t") or o.get("i") or o.get("aid") or ""
    return f"{data.get('e', '?')}:{data.get('E', 0)}:{o.get('s', '')}:{ident}"


@dataclass
class StreamStats:
    connections: int = 0
    messages: int = 0
    resynced_rows: int = 0
    keepalives: int = 0
    keys_created: int = 0
    drops: int = 0
    last_fill_ms: dict[str, int] = field(default_factory=dict)


class UserStreamClient:
    """One account's user-data stream into `binance.user-events` (module docstring)."""

    def __init__(
        self,
        venue: BinanceFutures,
        sink: Sink,
        symbols: list[str],
        *,
        mainnet: bool = False,
        base_url: str | None = None,
        lookback_ms: int = DAY_MS,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        recv_timeout_s: float = 5.0,
        clock_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self.venue = venue
        self.sink = sink
        self.symbols = list(symbols)
        self.base_url = base_url or (MAINNET_WS if mainnet else TESTNET_WS)
        self._lookback_ms = lookback_ms
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._recv_timeout = recv_timeout_s
        self._clock = clock_ms
        self.key = ListenKey()
        self.stats = StreamStats()
        self._event_ms = 0
        self._since: dict[str, int] = {}

    def now(self) -> int:
        return max(self._clock(), self._event_ms)

    def run(self, stop: Callable[[], bool]) -> StreamStats:
        """Until `stop()`: connect, resync, relay, keep alive, reconnect."""
        return asyncio.run(self.run_async(stop))

    async def run_async(self, stop: Callable[[], bool]) -> StreamStats:
        start = self.now()
        self._since = {s: start - self._lookback_ms for s in self.symbols}
        delay = self._backoff
        while not stop():
            if self.key.due(self.now()) is KeyAction.CREATE:
                try:
                    self.key = self.key.created(self.venue.create_listen_key(), self.now())
                    self.stats.keys_created += 1
                except VenueError as exc:
                    log.warning("user stream: no listen key (%s); retry in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_backoff)
                    continue
            try:
                received = await self._connection(stop)
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                self.stats.drops += 1
                log.warning("user stream: connection lost (%s)", type(exc).__name__)
                received = 0
            if received:
                delay = self._backoff
            elif not stop():
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
        return self.stats

    async def _connection(self, stop: Callable[[], bool]) -> int:
        """One websocket connection: resync, then relay until it ends. Returns messages."""
        assert self.key.key is not None
        url = f"{self.base_url}/private/ws/{self.key.key}"
        received = 0
        async with connect(url, open_timeout=10, close_timeout=2) as ws:
            self.stats.connections += 1
            self.key = self.key.reconnected(self.now())
            self._resync()
            while not stop():
                try:
                    text = await asyncio.wait_for(ws.recv(), timeout=self._recv_timeout)
                except TimeoutError:
                    text = None
                if text is not None:
                    received += 1
                    self._relay(text if isinstance(text, str) else text.decode())
                if not self._lifecycle():
                    break
        return received

    def _relay(self, text: str) -> None:
        self.stats.messages += 1
        try:
            message = json.loads(text)
        except ValueError:
            message = {"e": "UNPARSEABLE"}
        at = message.get("E", 0) if isinstance(message, dict) else 0
        at = at if isinstance(at, int) else 0
        self._event_ms = max(self._event_ms, at)
        record = UserEventRecord(event_id(message), EventSource.STREAM, text, at)
        symbol = ""
        try:
            event = parse_event(message)
        except (InvalidRecord, KeyError, TypeError):
            event = None  # written anyway: the agent dead-letters it with the reason
        if isinstance(event, OrderUpdate):
            symbol = event.symbol
            if event.is_fill:
                last = self.stats.last_fill_ms.get(symbol, 0)
                self.stats.last_fill_ms[symbol] = max(last, event.trade_time_ms)
        self.sink.send(BINANCE_USER_EVENTS, to_avro(record), (symbol or "user").encode())
        if isinstance(event, ListenKeyExpired):
            self.key = self.key.on_event(event)
        self.sink.flush()
        # the resync point moves only past fills that are delivered
        for s, t in self.stats.last_fill_ms.items():
            self._since[s] = max(self._since.get(s, 0), t)

    def _lifecycle(self) -> bool:
        """Act on what the listen key needs; False to end this connection."""
        due = self.key.due(self.now())
        if due is KeyAction.KEEPALIVE:
            try:
                alive = self.venue.keepalive_listen_key(self.key.key or "")
            except VenueError as exc:
                log.warning("user stream: keep-alive failed (%s); retrying next tick", exc)
                return True
            self.stats.keepalives += 1
            if alive:
                self.key = self.key.kept_alive(self.now())
                return True
            self.key = self.key.expired()  # -1125: the key is gone, make a new one
            return False
        return due is KeyAction.WAIT

    def _resync(self) -> None:
        """userTrades since the last fill seen, per symbol, each row a RESYNC record."""
        for symbol in self.symbols:
            since = self._since.get(symbol, self.now() - self._lookback_ms)
            while True:
                rows = self.venue.user_trade_rows(symbol, since)
                for row in rows:
                    rid = f"RESYNC:{row['symbol']}:{row['id']}:{row['orderId']}"
                    record = UserEventRecord(rid, EventSource.RESYNC, json.dumps(row), row["time"])
                    self.sink.send(BINANCE_USER_EVENTS, to_avro(record), symbol.encode())
                self.stats.resynced_rows += len(rows)
                self.sink.flush()
                newest = max((int(r["time"]) for r in rows), default=since)
                if len(rows) < USER_TRADES_PAGE or newest <= since:
                    self._since[symbol] = max(since, newest)
                    break
                since = self._since[symbol] = newest
