"""The live kline feed against a real local websockets server that drops the connection:
the bars missed meanwhile come from REST (`responses` replays GET /fapi/v1/klines through
the data fetcher's real pager), and each symbol gets every bar once, in order."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import responses
from responses import matchers

from agents.binance_exchange.feed import KlineFeed, rest_klines
from quantum.marketdata import Kline
from tests.integration.ws_fakes import DROP, HOLD, MemorySink, Script, ScriptedServer
from topologies.declaration import MARKET_BARS, MARKET_TICKS

T0 = 1_767_225_600_000
MIN = 60_000
REST = "https://testnet.binancefuture.com/fapi/v1/klines"


def price(symbol: str, i: int) -> Decimal:
    return Decimal(95_000 if symbol == "BTCUSDT" else 3_300) + i


def ws_bar(symbol: str, i: int, closed: bool = True) -> dict:
    p = price(symbol, i)
    k = {
        "t": T0 + i * MIN, "T": T0 + (i + 1) * MIN - 1, "s": symbol, "i": "1m",
        "o": f"{p}", "c": f"{p + 1}", "h": f"{p + 2}", "l": f"{p - 1}", "v": "12.5",
        "n": 40 + i, "x": closed, "q": "0", "V": "0", "Q": "0", "B": "0",
    }  # fmt: skip
    data = {"e": "kline", "E": k["T"] + 5, "s": symbol, "k": k}
    return {"stream": f"{symbol.lower()}@kline_1m", "data": data}


def rest_row(symbol: str, i: int) -> list:
    p = price(symbol, i)
    return [
        T0 + i * MIN, f"{p}", f"{p + 2}", f"{p - 1}", f"{p + 1}", "12.5",
        T0 + (i + 1) * MIN - 1, "0", 40 + i, "0", "0", "0",
    ]  # fmt: skip


def test_a_dropped_connection_s_gap_is_filled_from_rest_every_bar_once_in_order() -> None:
    sink = MemorySink()
    b, e = "BTCUSDT", "ETHUSDT"
    scripts = [
        # connection 1: an open bar's update (not written), bars 0 and 1, then a cut
        Script([ws_bar(b, 0, closed=False), ws_bar(b, 0), ws_bar(e, 0), ws_bar(b, 1)], DROP),
        # connection 2: bar 1 re-sent, then bar 4 (BTC missed 2, 3; ETH missed 1..3)
        Script([ws_bar(b, 1), ws_bar(b, 4), ws_bar(e, 4), ws_bar(b, 5), ws_bar(e, 5)], HOLD),
    ]

    async def main() -> KlineFeed:
        async with ScriptedServer(scripts) as server:
            feed = KlineFeed(
                sink, [b, e], "1m", rest=rest_klines(pause_s=0), base_url=server.url,
                backoff_s=0.01, recv_timeout_s=0.05,
            )  # fmt: skip
            await asyncio.wait_for(
                feed.run_async(lambda: len(sink.values(MARKET_TICKS)) >= 12), timeout=20
            )
            assert server.paths[0] == "/market/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m"
            return feed

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        for symbol, first in ((b, 2), (e, 1)):
            rsps.add(
                "GET",
                REST,
                json=[rest_row(symbol, i) for i in range(first, 4)],
                match=[
                    matchers.query_param_matcher(
                        {"symbol": symbol, "startTime": str(T0 + first * MIN)}, strict_match=False
                    )
                ],
            )
        feed = asyncio.run(main())

    ticks = [Kline.from_record(v) for v in sink.values(MARKET_TICKS)]
    for symbol in (b, e):
        mine = [k for k in ticks if k.symbol == symbol]
        assert [(k.open_time - T0) // MIN for k in mine] == [0, 1, 2, 3, 4, 5]
        assert all(k.close == price(symbol, (k.open_time - T0) // MIN) + 1 for k in mine)
        assert all(k.source.value == "LIVE" for k in mine)
    assert sink.values(MARKET_BARS) == sink.values(MARKET_TICKS)
    assert feed.stats.filled == 5 and feed.stats.skipped == 1 and feed.stats.connections == 2


def test_resume_fills_from_where_the_previous_run_stopped() -> None:
    sink = MemorySink()
    calls: list[tuple] = []

    def rest(symbol: str, interval: str, start: int, end: int) -> list[Kline]:
        calls.append((symbol, start, end))
        return [
            Kline(symbol, interval, t, t + MIN - 1, *(Decimal(1),) * 4, Decimal(1))
            for t in range(start, end, MIN)
        ]

    feed = KlineFeed(sink, ["BTCUSDT"], "1m", rest=rest, resume={"BTCUSDT": T0 + 2 * MIN})
    feed.on_message(json.dumps(ws_bar("BTCUSDT", 6)))
    assert calls == [("BTCUSDT", T0 + 2 * MIN, T0 + 6 * MIN)]
    opens = [(v["open_time"] - T0) // MIN for v in sink.values(MARKET_TICKS)]
    assert opens == [2, 3, 4, 5, 6]
