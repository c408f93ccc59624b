"""The harvest and exit-guard processors behind the Faust shells, without a broker: routing
of positions and bars to per-position cores, the entry-bar and stop-loss races, all-or-
nothing records, restart from the table keys, expiry, the equity book and the breaker."""

from __future__ import annotations

import contextlib
from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.exit_guard.agent import BREAKER_KEY, EQUITY_KEY, GuardProcessor
from agents.exit_guard.config import BreakerConfig, ExitGuardConfig
from agents.governor.codec import command_from_avro, command_to_avro
from agents.governor.model import Halt, Resume
from agents.harvest.agent import HarvestProcessor
from agents.harvest.config import HarvestConfig
from agents.stateful import Out, Record
from exchange.rules import ExchangeRules
from quantum.errors import InvalidRecord
from topologies.declaration import (
    EXIT_INTENTS,
    MARKET_TICKS,
    PORTFOLIO,
    POSITIONS,
    RISK_WARNINGS,
)

T0 = 1_767_225_600_000  # a minute boundary
MIN = 60_000
SYMBOL = "BTCUSDT"


def position(
    pid: str = "p1",
    *,
    qty: str = "0.008",
    entry: str = "100",
    stop: str | None = "98",
    status: str = "OPEN",
    opened: int = T0,
    updated: int = T0,
    mark: str = "100",
    unrealized: str = "0",
    realized: str = "0",
    fees: str = "0",
    margin: str = "0.8",
    liq: str | None = None,
    symbol: str = SYMBOL,
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "intent_id": pid,
        "side": "LONG",
        "quantity": qty,
        "entry_price": entry,
        "mark_price": mark,
        "leverage": 1,
        "isolated_margin": margin,
        "liquidation_price": liq,
        "stop_loss": stop,
        "status": status,
        "realized_pnl": realized,
        "opened_at": opened,
        "updated_at": updated,
        "take_profit": None,
        "unrealized_pnl": unrealized,
        "fees": fees,
        "entry_quantity": qty,
        "closed_at": None if status == "OPEN" else updated,
        "exit_reason": None,
    }


def kline(k: int, o: str, h: str, low: str, c: str, symbol: str = SYMBOL) -> dict[str, Any]:
    return {
        "event_id": f"{symbol}:1m:{T0 + k * MIN}",
        "symbol": symbol,
        "interval": "1m",
        "open_time": T0 + k * MIN,
        "close_time": T0 + (k + 1) * MIN - 1,
        "open": o,
        "high": h,
        "low": low,
        "close": c,
        "volume": "1",
        "trades": 1,
        "source": "REPLAY",
        "end_of_stream": None,
    }


_offsets: dict[str, int] = {}


def rec(topic: str, value: dict[str, Any]) -> Record:
    _offsets[topic] = _offsets.get(topic, -1) + 1
    return Record(topic, 0, _offsets[topic], None, value, None)


def ids(outs: list[Out], topic: str = EXIT_INTENTS) -> list[str]:
    key = "exit_id" if topic == EXIT_INTENTS else "warning_id"
    return [o.value[key] for o in outs if o.topic == topic]


def harvest(cfg: HarvestConfig | None = None, entries: dict | None = None) -> HarvestProcessor:
    return HarvestProcessor(cfg or HarvestConfig(), entries or {}, ExchangeRules.bundled())


def guard(
    cfg: ExitGuardConfig | None = None,
    bcfg: BreakerConfig | None = None,
    entries: dict | None = None,
) -> GuardProcessor:
    return GuardProcessor(cfg or ExitGuardConfig(), bcfg or BreakerConfig(), entries or {})


def test_the_entry_bar_seen_before_the_position_is_evaluated_against_it() -> None:
    # R = 2: the entry bar (opened when the position did) went to +0.5R and +1R
    p = harvest()
    assert p.on_record(rec(MARKET_TICKS, kline(0, "100", "102.2", "99.9", "101"))) == []
    outs = p.on_record(rec(POSITIONS, position()))
    assert ids(outs) == ["p1:tp1", "p1:tp2"]
    assert [o.value["quantity"] for o in outs] == ["0.002", "0.002"]  # lot step 0.001
    assert all(o.value["reduce_only"] and o.key == SYMBOL.encode() for o in outs)
    # a bar that closed before the position opened is not evaluated
    q = harvest()
    q.on_record(rec(MARKET_TICKS, kline(-1, "100", "110", "90", "100")))
    assert q.on_record(rec(POSITIONS, position())) == []


def test_a_position_without_stop_waits_for_it_until_the_next_bar() -> None:
    p = harvest()
    assert p.on_record(rec(POSITIONS, position(stop=None))) == []
    assert "pending:p1" in p.dirty_parts()
    assert p.states == {}
    # the protective stop arrives: no warning, the position's own stop (R = 2)
    assert p.on_record(rec(POSITIONS, position(stop="98", updated=T0 + 5))) == []
    assert p.dirty_parts()["pending:p1"] is None
    assert p.states["p1"].stop == D(98) and p.states["p1"].risk == D(2)


def test_without_a_stop_by_the_next_bar_the_default_applies_with_a_warning() -> None:
    p = harvest()
    p.on_record(rec(POSITIONS, position(stop=None)))
    outs = p.on_record(rec(MARKET_TICKS, kline(0, "100", "100.8", "99.9", "100.5")))
    assert ids(outs, RISK_WARNINGS) == ["harvest:p1:STOP_LOSS_DEFAULTED"]
    warning = outs[0].value
    assert warning["stop_price"] == "98.500" and warning["stop_pct"] == "0.015"
    assert warning["kind"] == "STOP_LOSS_DEFAULTED" and warning["processor"] == "harvest"
    # default R = 1.5: +0.5R = 100.75 was reached in that very bar
    assert ids(outs) == ["p1:tp1"]
    assert p.pending == {}
    # the same for the guard, and at once with wait_for_stop off
    g = guard(ExitGuardConfig(wait_for_stop=False))
    outs = g.on_record(rec(POSITIONS, position(stop=None)))
    assert ids(outs, RISK_WARNINGS) == ["exit_guard:p1:STOP_LOSS_DEFAULTED"]


def test_a_failing_record_changes_nothing() -> None:
    g = guard()
    g.on_record(rec(POSITIONS, position()))
    g.dirty_parts()
    before = (dict(g.states), g.book, g.breaker)
    bad = position(updated=T0 + MIN, mark="90", realized="not a number")
    with pytest.raises(InvalidRecord):
        g.on_record(rec(POSITIONS, bad))  # the guard core ran first, then the PnL failed
    assert (dict(g.states), g.book, g.breaker) == before
    assert g.dirty_parts() == {}
    with pytest.raises(InvalidRecord):  # a stop on the winning side of entry
        harvest().on_record(rec(POSITIONS, position(stop="101")))
    with pytest.raises(InvalidRecord):  # high below low
        harvest().on_record(rec(MARKET_TICKS, kline(0, "100", "99", "101", "100")))


def test_closed_states_are_kept_for_the_retention_then_forgotten() -> None:
    p = harvest(HarvestConfig(closed_retention_ms=10 * MIN))
    p.on_record(rec(POSITIONS, position()))
    p.on_record(rec(POSITIONS, position(qty="0", status="CLOSED", updated=T0 + 1)))
    assert p.states["p1"].closed
    # a redelivered OPEN record cannot start it again
    assert p.on_record(rec(POSITIONS, position(updated=T0))) == []
    p.on_record(rec(MARKET_TICKS, kline(8, "100", "101", "99", "100")))
    assert "p1" in p.states
    p.dirty_parts()
    p.on_record(rec(MARKET_TICKS, kline(10, "100", "101", "99", "100")))  # 10 min after close
    assert "p1" not in p.states and p.dirty_parts()["pos:p1"] is None


def test_switched_off_processors_keep_nothing_and_send_nothing() -> None:
    p = harvest(HarvestConfig(enabled=False))
    g = guard(ExitGuardConfig(enabled=False), BreakerConfig(enabled=False))
    for proc in (p, g):
        out = proc.on_record(rec(POSITIONS, position(stop=None)))
        out += proc.on_record(rec(MARKET_TICKS, kline(0, "100", "140", "50", "60")))
        assert [o for o in out if o.topic != MARKET_TICKS] == []
        assert proc.states == {} and proc.pending == {}


def _guard_path() -> list[Record]:
    """Two positions; equity falls with the marks until the breaker halts."""
    return [
        rec(POSITIONS, position("a", qty="10", margin="1000", stop="90")),
        rec(POSITIONS, position("b", qty="10", margin="1000", stop="90", symbol="ETHUSDT")),
        rec(POSITIONS, position("a", qty="10", updated=T0 + MIN, mark="95", unrealized="-50")),
        rec(
            POSITIONS,
            position(
                "b", qty="10", updated=T0 + MIN, mark="1", unrealized="-990", symbol="ETHUSDT"
            ),
        ),
    ]


def test_the_breaker_halts_on_the_drawdown_of_the_positions_equity() -> None:
    g = guard(ExitGuardConfig(evaluate_marks=False, wait_for_stop=False))
    outs = [o for r in _guard_path() for o in g.on_record(r)]
    halts = [command_from_avro(o.value) for o in outs if o.topic == PORTFOLIO]
    assert halts == [Halt(f"breaker:halt:{T0 + MIN}", halts[0].reason, T0 + MIN)]
    assert "10.40 %" in halts[0].reason  # (10000 - 8960) / 10000
    assert g.account_equity == D(10000 - 50 - 990)
    assert outs[-1].key == b"portfolio"
    assert ids(outs) == []  # reduce-only mode, nothing flattened by default
    # an operator's Resume, read back from the portfolio topic, lifts it
    g.on_record(rec(PORTFOLIO, command_to_avro(Resume("ops-1", T0 + 2 * MIN))))
    assert not g.breaker.halted and g.breaker.peak == D(8960)
    assert BREAKER_KEY in g.dirty_parts()


def test_flatten_on_halt_closes_every_open_position_with_reason_halt() -> None:
    cfg = ExitGuardConfig(evaluate_marks=False, wait_for_stop=False)
    g = guard(cfg, BreakerConfig(flatten_on_halt=True))
    outs = [o for r in _guard_path() for o in g.on_record(r)]
    exits = [o.value for o in outs if o.topic == EXIT_INTENTS]
    assert [(x["exit_id"], x["reason"], x["quantity"]) for x in exits] == [
        ("a:halt", "HALT", "10"),
        ("b:halt", "HALT", "10"),
    ]
    assert all(s.closed for s in g.states.values())


def test_a_closed_position_settles_its_pnl_once() -> None:
    g = guard(ExitGuardConfig(wait_for_stop=False))
    g.on_record(rec(POSITIONS, position("a", unrealized="-30", mark="97")))
    assert g.account_equity == D(9970)
    closed = position("a", qty="0", status="CLOSED", realized="-20", fees="1", updated=T0 + 1)
    g.on_record(rec(POSITIONS, closed))
    assert g.account_equity == D(9979)
    g.on_record(rec(POSITIONS, position("a", unrealized="-30", mark="97")))  # late OPEN
    g.on_record(rec(POSITIONS, closed))
    assert g.account_equity == D(9979)
    assert EQUITY_KEY in g.dirty_parts()


# ---- restart: the table keys rebuild a processor that goes on identically ---------------


def _session() -> list[tuple[str, dict[str, Any]]]:
    """Two positions walking up the ladder, one without a stop, bars in between."""
    items: list[tuple[str, dict[str, Any]]] = [
        (MARKET_TICKS, kline(0, "100", "100.5", "99.8", "100.2")),
        (POSITIONS, position("p1", opened=T0 + MIN, updated=T0 + MIN)),
        (POSITIONS, position("p2", stop=None, opened=T0 + MIN, updated=T0 + MIN, symbol="ETHUSDT")),
    ]
    closes = ["100.8", "101.2", "102.1", "102.9", "103.4", "101.0", "99.0", "97.5"]
    for k, c in enumerate(closes, start=1):
        hi = str(D(c) + D("0.3"))
        lo = str(D(c) - D("0.4"))
        for sym in (SYMBOL, "ETHUSDT"):
            items.append((MARKET_TICKS, kline(k, c, hi, lo, c, symbol=sym)))
        items.append(
            (POSITIONS, position("p1", opened=T0 + MIN, updated=T0 + (k + 1) * MIN - 1, mark=c))
        )
    return items


def _table_after(proc: Any, table: dict[str, Any]) -> None:
    for key, value in proc.dirty_parts().items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def _run(make: Any, items: list, cut: int | None, redeliver: bool) -> list[str]:
    table: dict[str, Any] = {}
    proc = make({})
    out: list[str] = []
    for i, (topic, value) in enumerate(items):
        if i == cut:
            proc = make(dict(table))  # a restart from what the table holds
            if redeliver and i > 0:  # the record before came again (offset not committed)
                t, v = items[i - 1]
                out += [f"again {x}" for x in _ids(proc.on_record(rec(t, v)))]
                _table_after(proc, table)
        out += _ids(proc.on_record(rec(topic, value)))
        _table_after(proc, table)
    return out


def _ids(outs: list[Out]) -> list[str]:
    return ids(outs) + ids(outs, RISK_WARNINGS)


@given(cut=st.integers(0, 30), redeliver=st.booleans())
def test_a_restart_from_the_table_goes_on_as_if_nothing_happened(cut: int, redeliver: bool) -> None:
    items = _session()
    for make in (
        lambda e: HarvestProcessor(HarvestConfig(), e, ExchangeRules.bundled()),
        lambda e: GuardProcessor(ExitGuardConfig(), BreakerConfig(), e),
    ):
        whole = _run(make, items, None, False)
        assert whole, "the session fires exits"
        restarted = _run(make, items, cut, redeliver)
        # a redelivered record finds its effect in the table: no exit fires again
        assert [x for x in restarted if x.startswith("again")] == []
        assert restarted == whole


_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(("open", "close", "bad open", "bar", "bad bar")),
            st.integers(0, 5),  # position id
            st.integers(0, 2),  # symbol
        ),
        max_size=40,
    )
)
def test_the_symbol_index_is_exact_after_every_record(
    steps: list[tuple[str, int, int]],
) -> None:
    """A bar visits only its symbol's states through `_by_symbol`; after any record, failed
    ones too (rolled back), the index is the states grouped by symbol, and so after a
    restart from the table."""
    makers = (
        lambda entries: harvest(HarvestConfig(closed_retention_ms=3 * MIN), entries),
        lambda entries: guard(entries=entries),
    )
    for make in makers:
        p = make({})
        entries: dict[str, Any] = {}
        for k, (kind, n, s) in enumerate(steps):
            symbol = _SYMBOLS[s]
            pid = f"{symbol}-p{n}"  # a position's symbol never changes
            t = T0 + k * MIN
            if kind == "bar":
                r = rec(MARKET_TICKS, kline(k, "100", "101", "99", "100", symbol=symbol))
            elif kind == "bad bar":  # high below low: refused, rolled back
                r = rec(MARKET_TICKS, kline(k, "100", "99", "101", "100", symbol=symbol))
            else:  # a bad open fails in the guard after its core ran: rolled back
                status = "CLOSED" if kind == "close" else "OPEN"
                realized = "not a number" if kind == "bad open" else "0"
                value = position(pid, updated=t, status=status, symbol=symbol, realized=realized)
                r = rec(POSITIONS, value)
            with contextlib.suppress(InvalidRecord):
                p.on_record(r)
            entries.update(p.dirty_parts())
            expected: dict[str, set[str]] = {}
            for pid_, state in p.states.items():
                expected.setdefault(p.describe(state)[0], set()).add(pid_)
            assert _index_of(p) == expected
        again = make({key: v for key, v in entries.items() if v is not None})
        assert again.states.keys() == p.states.keys()
        assert _index_of(again) == _index_of(p)


def _index_of(p: HarvestProcessor | GuardProcessor) -> dict[str, set[str]]:
    return {symbol: pids for symbol, pids in p._by_symbol.items() if pids}
