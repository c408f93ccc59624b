"""The user-data stream client against a real local websockets server that drops the
connection mid-fill and replays events, with REST (listen key, userTrades) replayed
through python-binance's real code path by `responses`. No broker: the records go to
an in-memory sink and then through the binance_exchange core, which must report every
fill exactly once."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import responses

from agents.binance_exchange.core import BinanceVenueCore
from agents.binance_exchange.model import CallKind, Done, Found, UserEventRecord
from agents.binance_exchange.userstream_client import UserStreamClient
from exchange.binance.credentials import Credentials
from exchange.binance.rest import BinanceFutures
from quantum.errors import InvalidRecord
from quantum.records import from_avro
from tests.integration.ws_fakes import DROP, HOLD, MemorySink, Script, ScriptedServer
from tests.unit.test_binance_venue_core import ENTRY, ORDER_ID, entry, fills_of, run
from topologies.declaration import BINANCE_USER_EVENTS

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "binance"
TESTNET = "https://testnet.binancefuture.com/fapi"
T0 = 1_767_225_600_000
KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"


def rest(name: str) -> dict:
    return json.loads((FIX / "rest" / name).read_text())


def stream(name: str) -> list[dict]:
    return json.loads((FIX / "userstream" / name).read_text())


def add(rsps: responses.RequestsMock, method: str, path: str, body, status: int = 200) -> None:
    rsps.add(method, f"{TESTNET}{path}", json=body, status=status)


def venue() -> BinanceFutures:
    creds = Credentials.load({"QT_BINANCE__API_KEY": "k" * 20, "QT_BINANCE__API_SECRET": "s" * 20})
    return BinanceFutures(creds, clock_ms=lambda: T0)


async def play(client: UserStreamClient, sink: MemorySink, want: int) -> None:
    """Run the client until the sink holds `want` records (or fail after 20 s)."""
    await asyncio.wait_for(
        client.run_async(lambda: len(sink.records) >= want), timeout=20
    )  # fmt: skip


def through_the_agent(sink: MemorySink) -> list:
    core = BinanceVenueCore()
    run(
        core,
        entry(),
        lambda c: Found("NEW", Decimal(0), None, ORDER_ID) if c.kind is CallKind.PLACE else (
            None if c.kind is CallKind.LOOKUP else Done()
        ),
    )  # fmt: skip
    outs = [
        core.on_user_event(from_avro(UserEventRecord, v)) for v in sink.values(BINANCE_USER_EVENTS)
    ]
    return fills_of(outs)


def test_a_reconnect_in_the_middle_of_a_fill_loses_and_doubles_nothing() -> None:
    new, fill1, _, fill2, account2 = stream("fill_sequence.json")
    rows = rest("user_trades.json")["body"]
    sink = MemorySink()

    async def main() -> list[str]:
        async with ScriptedServer(
            [
                Script([new, fill1], DROP),  # cut after the first fill
                Script([fill1, fill2, account2], HOLD),  # Binance re-sends, then the rest
            ]
        ) as server:
            client = UserStreamClient(
                venue(), sink, ["BTCUSDT"], base_url=server.url, backoff_s=0.01,
                recv_timeout_s=0.05, clock_ms=lambda: T0,
            )  # fmt: skip
            # first connect: no fills yet (0 rows); after the cut: both fills (2 rows)
            # records: 2 (conn 1) + 2 resync rows + 3 (conn 2)
            await play(client, sink, want=7)
            return server.paths

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        add(rsps, "POST", "/v1/listenKey", {"listenKey": KEY})
        add(rsps, "GET", "/v1/userTrades", [])
        add(rsps, "GET", "/v1/userTrades", rows)
        paths = asyncio.run(main())
        starts = [
            int(parse_qs(urlparse(c.request.url).query)["startTime"][0])
            for c in rsps.calls
            if "userTrades" in c.request.url
        ]
    assert paths == [f"/private/ws/{KEY}"] * 2  # same key, reconnected
    assert starts == [T0 - 86_400_000, fill1["o"]["T"]]  # the resync starts at the last fill
    fills = through_the_agent(sink)
    assert [f.trade_id for f in fills] == ["6251138922", "6251138923"]
    assert [f.filled_quantity for f in fills] == [Decimal("0.004"), Decimal("0.010")]
    assert fills[-1].client_order_id == ENTRY


def test_a_fill_that_happened_while_disconnected_comes_from_the_resync_once() -> None:
    new, fill1, *_ = stream("fill_sequence.json")
    rows = rest("user_trades.json")["body"]
    sink = MemorySink()

    async def main() -> None:
        async with ScriptedServer([Script([new, fill1], DROP), Script([], HOLD)]) as server:
            client = UserStreamClient(
                venue(), sink, ["BTCUSDT"], base_url=server.url, backoff_s=0.01,
                recv_timeout_s=0.05, clock_ms=lambda: T0,
            )  # fmt: skip
            await play(client, sink, want=4)  # the second fill never comes on the stream

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        add(rsps, "POST", "/v1/listenKey", {"listenKey": KEY})
        add(rsps, "GET", "/v1/userTrades", [])
        add(rsps, "GET", "/v1/userTrades", rows)
        asyncio.run(main())
    fills = through_the_agent(sink)
    assert [f.trade_id for f in fills] == ["6251138922", "6251138923"]
    assert fills[-1].status.value == "FILLED"


def test_keepalive_every_30_minutes_of_event_time_and_a_new_key_on_expiry() -> None:
    new = stream("fill_sequence.json")[0]
    later = {**new, "E": T0 + 31 * 60_000}  # 31 minutes of event time later
    expired = stream("listen_key_expired.json")
    expired = expired[0] if isinstance(expired, list) else expired
    expired = {**expired, "E": T0 + 32 * 60_000, "listenKey": KEY}
    other = "second" + KEY[6:]
    sink = MemorySink()

    async def main() -> list[str]:
        async with ScriptedServer(
            [Script([new, later, expired], HOLD), Script([new], HOLD)]
        ) as server:
            client = UserStreamClient(
                venue(), sink, [], base_url=server.url, backoff_s=0.01,
                recv_timeout_s=0.05, clock_ms=lambda: T0,
            )  # fmt: skip
            await play(client, sink, want=4)
            assert client.stats.keepalives == 1 and client.stats.keys_created == 2
            return server.paths

    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        add(rsps, "POST", "/v1/listenKey", {"listenKey": KEY})
        add(rsps, "PUT", "/v1/listenKey", {})
        add(rsps, "POST", "/v1/listenKey", {"listenKey": other})
        paths = asyncio.run(main())
    assert paths == [f"/private/ws/{KEY}", f"/private/ws/{other}"]


@pytest.mark.parametrize("garbage", ["not json", json.dumps({"e": "ORDER_TRADE_UPDATE"})])
def test_a_message_that_does_not_parse_is_written_for_the_agent_to_dead_letter(garbage) -> None:
    sink = MemorySink()

    async def main() -> None:
        async with ScriptedServer([Script([garbage], HOLD)]) as server:
            client = UserStreamClient(
                venue(), sink, [], base_url=server.url, recv_timeout_s=0.05, clock_ms=lambda: T0
            )
            await play(client, sink, want=1)

    with responses.RequestsMock() as rsps:
        add(rsps, "POST", "/v1/listenKey", {"listenKey": KEY})
        asyncio.run(main())
    (record,) = sink.values(BINANCE_USER_EVENTS)
    assert record["payload"] == garbage
    with pytest.raises(InvalidRecord):
        BinanceVenueCore().on_user_event(from_avro(UserEventRecord, record))
