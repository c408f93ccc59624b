"""The whole pipeline with the Binance adapter in place of the paper exchange (issue 11),
lock-step on the real broker, against a local Binance over real HTTP and websockets on
127.0.0.1 (no other network):

* REST (tests/integration/binance_fake.py): placements, queries, algo orders, leverage,
  margin type, listen keys and userTrades answered from the recorded response templates,
  echoing the client ids it was sent;
* the user-data websocket: an ORDER_TRADE_UPDATE fill for every accepted market order, at
  the close of the last bar the driver fed for that symbol;
* `quantum binance userstream` running as in production, relaying the stream into
  binance.user-events.

Every grant has at most one entry order (one client id), the fake saw exactly one
placement per client id, the fills reached positions and the governor's audit is clean.
Garbage bytes on both topics the Binance agent reads (orders, binance.user-events) go to
their dead-letter topics, and the agent goes on."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from websockets.asyncio.server import ServerConnection, serve

from quantum.app.backtest.report import read_values, write_report
from quantum.app.backtest.run import REPO, Backtest
from quantum.marketdata import Kline
from quantum.polling import wait_until
from quantum.serde import AvroSerde
from tests.e2e.test_pipeline import _poison_every_input, crossover_env, sample_hours
from tests.integration.binance_fake import FakeBinance
from topologies.declaration import (
    BINANCE_USER_EVENTS,
    EXECUTION_RESULTS,
    ORDERS,
    POSITIONS,
    dlq_topic,
)

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT"]


class UserDataStream:
    """A websockets server on 127.0.0.1 in its own thread; `push` sends a message to every
    connected client (the user stream client connects to /private/ws/<listenKey>)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clients: set[ServerConnection] = set()
        self.connections = 0
        self.url = ""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10), "websocket server did not start"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self._server = await serve(self._handler, "127.0.0.1", 0)
            self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            self.clients.discard(ws)

    def push(self, message: dict[str, Any]) -> None:
        async def send() -> int:
            for ws in list(self.clients):
                await ws.send(json.dumps(message))
            return len(self.clients)

        sent = asyncio.run_coroutine_threadsafe(send(), self.loop).result(10)
        assert sent, "no user stream client connected to receive a fill"

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class FillingBinance(FakeBinance):
    """The replayed REST venue that also fills: an accepted MARKET order is filled whole at
    the close of the symbol's last fed bar, answered so and streamed as ORDER_TRADE_UPDATE."""

    def __init__(self, stream: UserDataStream) -> None:
        super().__init__()
        self.stream = stream
        self.last_bar: dict[str, Kline] = {}
        self.fills: list[dict[str, Any]] = []
        self._trade_id = 700_000
        self.routes.update(
            {
                ("POST", "/v1/listenKey"): lambda p: self._replay("listen_key_created.json"),
                ("PUT", "/v1/listenKey"): lambda p: self._replay("listen_key_keepalive_ok.json"),
                ("DELETE", "/v1/listenKey"): lambda p: (200, {}, "{}"),
                ("GET", "/v1/userTrades"): self._user_trades,
            }
        )

    def bars(self, items: Iterable[Kline]) -> Iterator[Kline]:
        """The driver's bars, noting each symbol's last one as the driver takes it."""
        for bar in items:
            self.last_bar[bar.symbol] = bar
            yield bar

    def _user_trades(self, p: dict[str, str]) -> tuple[int, dict[str, str], str]:
        """The fills of the symbol from `startTime` on (the client's resync)."""
        since = int(p.get("startTime", "0"))
        rows = [
            _trade_row(f)
            for f in self.fills
            if f["o"]["s"] == p.get("symbol") and f["o"]["T"] >= since
        ]
        return self._replay("user_trades.json", rows)

    def _new_order(self, p: dict[str, str]) -> tuple[int, dict[str, str], str]:
        status, headers, text = super()._new_order(p)
        if status != 200 or p.get("type") != "MARKET":
            return status, headers, text
        order = self.orders[p["newClientOrderId"]]
        bar = self.last_bar[p["symbol"]]
        order["avgPrice"] = str(bar.close)
        order["cumQuote"] = str(bar.close * Decimal(order["origQty"]))
        self._trade_id += 1
        fill = self.fill_event(order["clientOrderId"], self._trade_id, bar.close_time)
        self.fills.append(fill)
        self.stream.push(fill)
        return status, headers, json.dumps(order)


def _trade_row(fill: dict[str, Any]) -> dict[str, Any]:
    """The userTrades row of a streamed fill."""
    o = fill["o"]
    return {
        "symbol": o["s"], "id": o["t"], "orderId": o["i"], "side": o["S"], "price": o["L"],
        "qty": o["l"], "realizedPnl": "0", "quoteQty": "0", "commission": o["n"],
        "commissionAsset": "USDT", "time": o["T"], "positionSide": "BOTH",
        "buyer": o["S"] == "BUY", "maker": False,
    }  # fmt: skip


def test_pipeline_on_binance_one_order_per_grant(settings, tmp_path: Path) -> None:
    bars = sample_hours(2, SYMBOLS)
    stream = UserDataStream()
    fake = FillingBinance(stream)
    server, rest_url = fake.serve()
    keys = {
        "QT_BINANCE__API_KEY": "qtTESTkey" + "A" * 24,
        "QT_BINANCE__API_SECRET": "qtTESTsecret" + "B" * 24,
        "QT_BINANCE_EXCHANGE__REST_URL": rest_url,
        "QT_BINANCE_EXCHANGE__WS_URL": stream.url,
        "QT_BINANCE_EXCHANGE__LOOKUP_BACKOFF_MS": "10",
    }
    env = {**crossover_env(), "QT_SELECTOR__UNIVERSE": json.dumps(SYMBOLS), **keys}
    bt = Backtest(settings, tmp_path, env=env, venue="binance")
    userstream: subprocess.Popen | None = None
    symbols = ",".join(SYMBOLS)
    log = (tmp_path / "userstream.log").open("wb")
    try:
        quiescence = bt.start()
        userstream = subprocess.Popen(
            [sys.executable, "-m", "quantum", "binance", "userstream", "--symbols", symbols],
            cwd=REPO,
            env={**bt.processes[0].env, "QT_VENUE__KIND": "binance"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: stream.connections > 0, 60, "the user stream client to connect")
        producer = Producer({"bootstrap.servers": settings.kafka.bootstrap})
        poisoned: set[str] = set()

        def poison(feed_stats: Any) -> None:
            if feed_stats.steps == 20:
                poisoned.update(_poison_every_input(settings, producer, ["binance_exchange"]))

        stats = bt.feed(fake.bars(bars), quiescence, poison)
        # The last fills travel websocket -> userstream -> binance.user-events after the
        # last bar settled: wait for them, then for the pipeline to take them in.
        serde = AvroSerde.from_settings(settings)
        wait_until(
            lambda: len(list(read_values(settings, BINANCE_USER_EVENTS, serde))) >= len(fake.fills),
            60,
            "every fill in binance.user-events",
        )
        quiescence.wait(120, failed=bt.dead_worker)
    finally:
        if userstream is not None:
            userstream.terminate()
            userstream.wait(30)
        bt.stop()
        server.shutdown()
        stream.close()
        log.close()
    summary = write_report(settings, tmp_path, feed=vars(stats))

    assert summary["governor_audit_ok"], summary
    assert poisoned == {ORDERS, BINANCE_USER_EVENTS}
    for logical in poisoned:  # dead-lettered, and the orders after them still placed
        assert summary["dead_letters"].get(dlq_topic(logical), 0) == 1, (logical, summary)
    granted = summary["decisions_by_kind"].get("GRANTED", 0)
    assert granted > 0, "nothing was granted: the test would prove nothing"
    # each grant at most one entry order (one client id)
    entries: dict[str, set[str]] = defaultdict(set)
    closing: dict[str, str] = {}  # client id of a reduce-only market order -> intent
    for order in read_values(settings, ORDERS, serde):
        if order["role"] == "ENTRY" and order["action"] == "NEW":
            entries[order["intent_id"]].add(order["client_order_id"])
        elif order["reduce_only"] and order["order_type"] == "MARKET":
            closing[order["client_order_id"]] = order["intent_id"]
    assert entries and all(len(ids) == 1 for ids in entries.values()), entries
    assert len(entries) <= granted
    # the venue saw exactly one placement per client id, every entry among them
    placed = Counter(p["newClientOrderId"] for p in fake.calls("POST", "/v1/order"))
    assert placed and set(placed.values()) == {1}, placed
    assert {next(iter(ids)) for ids in entries.values()} <= set(placed)
    # the fills came back (stream, once each) and reached positions
    results = list(read_values(settings, EXECUTION_RESULTS, serde))
    traded = {r["trade_id"] for r in results if r["trade_id"] is not None}
    assert traded == {str(f["o"]["t"]) for f in fake.fills}
    # ... at the fake's price: each position opened at its entry fill's price (the close
    # of the bar before the placement), never twice from the stream's and the answer's copy
    price = {f["o"]["c"]: Decimal(f["o"]["L"]) for f in fake.fills}
    qty = {f["o"]["c"]: Decimal(f["o"]["l"]) for f in fake.fills}
    entry_of = {intent: next(iter(ids)) for intent, ids in entries.items()}
    opened = {}
    for position in read_values(settings, POSITIONS, serde):
        if position["status"] == "OPEN" and position["intent_id"] not in opened:
            opened[position["intent_id"]] = position
    assert opened and set(opened) <= set(entries), (opened, entries)
    for intent, position in opened.items():
        coid = entry_of[intent]
        assert Decimal(position["entry_price"]) == price[coid], (position, coid)
        assert Decimal(position["entry_quantity"]) == qty[coid], (position, coid)
    # closes by the exit agents (whole or a scale-out part): filled on the fake, and each
    # position's latest record holds the entry less what was closed (CLOSED at zero)
    closed_qty: dict[str, Decimal] = defaultdict(Decimal)
    for coid in qty:
        if coid in closing:
            closed_qty[closing[coid]] += qty[coid]
    latest = {p["intent_id"]: p for p in read_values(settings, POSITIONS, serde)}
    for intent, done in closed_qty.items():
        last, entered = latest[intent], qty[entry_of[intent]]
        if last["status"] == "CLOSED":
            assert done == entered, (intent, done, last)
        else:
            assert Decimal(last["quantity"]) == entered - done, (intent, done, last)
    closed = sum(1 for p in latest.values() if p["status"] == "CLOSED")
    print(
        f"bars {stats.steps}, granted {granted}, entries {len(entries)}, "
        f"placements {sum(placed.values())}, fills {len(fake.fills)}, opened {len(opened)}, "
        f"closes {len(closed_qty)}, closed {closed}, trades {summary['trades']}"
    )
