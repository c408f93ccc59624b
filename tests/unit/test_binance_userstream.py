"""User-data stream: exact parsing, fill dedup under replay, the listen-key lifecycle."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.binance.userstream import (
    CONNECTION_LIFETIME_MS,
    KEEPALIVE_EVERY_MS,
    KEY_LIFETIME_MS,
    RECONNECT_MARGIN_MS,
    AccountUpdate,
    AlgoStatus,
    AlgoUpdate,
    ExecutionType,
    FillDeduplicator,
    KeyAction,
    KeyState,
    ListenKey,
    ListenKeyExpired,
    OrderUpdate,
    OtherEvent,
    parse_event,
)
from quantum.errors import InvalidRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "userstream"


def load(name: str):
    return json.loads((FIXTURES / name).read_text())


def test_order_trade_update_fill_is_exact() -> None:
    events = [parse_event(e) for e in load("fill_sequence.json")]
    new, part, acct, fill, _ = events
    assert isinstance(new, OrderUpdate) and not new.is_fill
    assert new.execution_type is ExecutionType.NEW and new.commission_asset is None
    assert isinstance(part, OrderUpdate) and part.is_fill
    assert part.last_filled_quantity == Decimal("0.004")
    assert part.last_filled_price == Decimal("95000.10")
    assert part.commission == Decimal("0.19000020") and part.commission_asset == "USDT"
    assert part.trade_id == 6251138922 and part.order_id == 4611875134427365377
    assert isinstance(fill, OrderUpdate) and fill.status == "FILLED"
    assert fill.cumulative_filled_quantity == part.last_filled_quantity + fill.last_filled_quantity
    assert isinstance(acct, AccountUpdate) and acct.reason == "ORDER"
    (pos,) = acct.positions
    assert pos.position_amount == Decimal("0.004") and pos.margin_type == "isolated"
    assert pos.isolated_wallet == Decimal("38.00004000")
    assert acct.balances[0].wallet_balance == Decimal("9999.80999980")


def test_algo_update_lifecycle_links_to_the_triggered_order() -> None:
    new, triggered, fill, finished = (parse_event(e) for e in load("algo_stop.json"))
    assert isinstance(new, AlgoUpdate) and new.status is AlgoStatus.NEW and new.is_open
    assert new.client_algo_id == "qt-s-7f3a9c2d41b8-0" and new.algo_id == 2148719
    assert new.trigger_price == Decimal("93100.00") and new.reduce_only
    assert isinstance(triggered, AlgoUpdate) and triggered.status is AlgoStatus.TRIGGERED
    assert isinstance(fill, OrderUpdate) and fill.is_fill and fill.original_type == "STOP_MARKET"
    # the plain order the stop became is found by `ai`, not by client id
    assert int(triggered.actual_order_id) == fill.order_id
    assert fill.realized_pnl == Decimal("-19.04760000")
    assert isinstance(finished, AlgoUpdate) and not finished.is_open
    assert finished.actual_filled_quantity == Decimal("0.01000")


def test_listen_key_expired_in_a_combined_stream_envelope() -> None:
    event = parse_event(load("listen_key_expired.json"))
    assert isinstance(event, ListenKeyExpired)
    assert event.event_time_ms == 1736996475556  # a string in the payload


def test_unknown_event_types_are_kept_not_dropped() -> None:
    event = parse_event({"e": "MARGIN_CALL", "E": 5, "cw": "3.1"})
    assert event == OtherEvent("MARGIN_CALL", 5)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e["o"].pop("l"),  # a TRADE without last quantity
        lambda e: e["o"].pop("t"),  # a TRADE without trade id
        lambda e: e["o"].update(L=95000.1),  # a float: digits already lost
        lambda e: e["o"].update(x="EXPLODED"),
        lambda e: e["o"].update(L="NaN"),
        lambda e: e.pop("o"),
    ],
)
def test_bad_payloads_raise_invalid_record(mutate) -> None:
    event = copy.deepcopy(load("fill_sequence.json")[1])
    mutate(event)
    with pytest.raises(InvalidRecord):
        parse_event(event)


# --- dedup ------------------------------------------------------------------------------------


def make_fill(i: int, symbol: str = "BTCUSDT") -> dict:
    base = copy.deepcopy(load("fill_sequence.json")[1])
    base["o"].update(s=symbol, t=1_000 + i, l=f"0.00{i % 9 + 1}", T=1767225600000 + i)
    return base


def test_a_reconnect_mid_fill_replays_without_doubling() -> None:
    events = load("fill_sequence.json")
    dedup = FillDeduplicator()
    before = [dedup.accept(parse_event(e)) for e in events[:2] if e["e"] == "ORDER_TRADE_UPDATE"]
    # the socket drops after the partial fill; the resync replays everything
    after = [dedup.accept(parse_event(e)) for e in events if e["e"] == "ORDER_TRADE_UPDATE"]
    fills = [f for f in before + after if f is not None]
    assert [f.quantity for f in fills] == [Decimal("0.004"), Decimal("0.006")]
    assert sum(f.quantity for f in fills) == Decimal("0.010")


def test_self_trade_keeps_both_fills() -> None:
    buy = make_fill(1)
    sell = copy.deepcopy(buy)
    sell["o"].update(S="SELL", i=buy["o"]["i"] + 1)
    dedup = FillDeduplicator()
    assert dedup.accept(parse_event(buy)) and dedup.accept(parse_event(sell))


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.integers(0, n - 1), max_size=3 * n),  # duplicated deliveries
            st.randoms(use_true_random=False),
        )
    )
)
def test_any_interleaving_yields_each_fill_once(case) -> None:
    n, extra, rnd = case
    symbols = ("BTCUSDT", "ETHUSDT")
    originals = [make_fill(i, symbols[i % 2]) for i in range(n)]
    deliveries = [*range(n), *extra]
    rnd.shuffle(deliveries)
    dedup = FillDeduplicator()
    got = [dedup.accept(parse_event(copy.deepcopy(originals[i]))) for i in deliveries]
    fills = [f for f in got if f is not None]
    expected = {(e["o"]["s"], e["o"]["t"], Decimal(e["o"]["l"])) for e in originals}
    assert len(fills) == n
    assert {(f.symbol, f.trade_id, f.quantity) for f in fills} == expected


def test_prune_forgets_old_fills_only() -> None:
    dedup = FillDeduplicator(horizon_ms=1_000)
    dedup.accept(parse_event(make_fill(1)))
    assert dedup.prune(1767225600001 + 999) == 0
    assert dedup.prune(1767225600001 + 1_001) == 1 and len(dedup) == 0


# --- listen key -------------------------------------------------------------------------------


def test_listen_key_lifecycle() -> None:
    t0 = 1_000_000
    key = ListenKey()
    assert key.due(t0) is KeyAction.CREATE
    key = key.created("abcdefgh", t0)
    assert key.state is KeyState.ACTIVE and key.due(t0 + KEEPALIVE_EVERY_MS - 1) is KeyAction.WAIT
    assert key.due(t0 + KEEPALIVE_EVERY_MS) is KeyAction.KEEPALIVE
    key = key.kept_alive(t0 + KEEPALIVE_EVERY_MS)
    assert key.due(t0 + KEEPALIVE_EVERY_MS + 1) is KeyAction.WAIT
    # a keep-alive that never happened: the key lapsed on Binance's side
    assert key.due(t0 + KEEPALIVE_EVERY_MS + KEY_LIFETIME_MS) is KeyAction.CREATE
    # listenKeyExpired for our key -> new key
    expired = key.on_event(ListenKeyExpired(t0 + 5, "abcdefgh"))
    assert expired.state is KeyState.EXPIRED and expired.due(t0 + 6) is KeyAction.CREATE
    # someone else's key (an old connection) does not kill ours
    assert key.on_event(ListenKeyExpired(t0 + 5, "zzzz")).state is KeyState.ACTIVE


def test_connection_is_renewed_before_the_24h_cut() -> None:
    key = ListenKey().created("k", 0)
    at = CONNECTION_LIFETIME_MS - RECONNECT_MARGIN_MS
    t = 0
    while t + KEEPALIVE_EVERY_MS < at:
        t += KEEPALIVE_EVERY_MS
        assert key.due(t) is KeyAction.KEEPALIVE
        key = key.kept_alive(t)
    assert key.due(at) is KeyAction.RECONNECT
    key = key.reconnected(at)
    assert key.due(at + 1) in (KeyAction.WAIT, KeyAction.KEEPALIVE)


def test_repr_hides_the_listen_key() -> None:
    key = ListenKey().created("pqia91ma19a5s61cv6a81va65sdf19v8a65a1", 0)
    assert "pqia91ma19a5s61cv6a81va65sdf19v8a65a1" not in repr(key)
