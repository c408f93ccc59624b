"""Drawdown circuit breaker: Halt at the threshold, once per episode, operator or automatic
Resume, redelivery, switches, state round trip; properties over random equity curves."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.exit_guard.breaker import BreakerState, EquityPoint, on_equity, on_resume
from agents.exit_guard.config import BreakerConfig
from agents.governor.model import Halt, Resume
from quantum.errors import InvalidRecord

CFG = BreakerConfig()  # 10 %, operator resume


def feed(cfg: BreakerConfig, state: BreakerState, curve: list[tuple[int, str]]):
    out: list[Halt | Resume] = []
    for t, eq in curve:
        state, cmds = on_equity(cfg, state, EquityPoint(t, D(eq)))
        out += cmds
    return state, out


def test_halts_once_when_drawdown_from_peak_reaches_the_limit() -> None:
    state, out = feed(CFG, BreakerState(), [(1, "1000"), (2, "1200"), (3, "1081"), (4, "1080")])
    assert [type(c) for c in out] == [Halt]
    halt = out[0]
    assert isinstance(halt, Halt)
    assert halt.command_id == "breaker:halt:4" and halt.event_time_ms == 4
    assert "10.00 %" in halt.reason and "1200" in halt.reason
    assert state.halted and state.halted_at_ms == 4 and state.peak == 1200
    # deeper still: no second Halt while halted
    state, out = feed(CFG, state, [(5, "900"), (6, "1300")])
    assert out == [] and state.halted


def test_operator_resume_rebases_the_peak() -> None:
    state, _ = feed(CFG, BreakerState(), [(1, "1000"), (2, "850")])
    assert state.halted
    state = on_resume(state, Resume("ops-1", 3))
    assert not state.halted and state.peak == 850
    state, out = feed(CFG, state, [(4, "800")])  # 5.9 % below the new peak
    assert out == []
    state, out = feed(CFG, state, [(5, "765")])  # 10 % below 850
    assert [c.command_id for c in out] == ["breaker:halt:5"]
    # its own Resume, read back from the portfolio topic, changes nothing
    assert on_resume(state, Resume("breaker:resume:9", 9)) == state


def test_auto_resume_after_the_cooling_off_period() -> None:
    cfg = BreakerConfig(auto_resume_after_ms=100)
    state, out = feed(cfg, BreakerState(), [(0, "1000"), (10, "880"), (60, "870")])
    assert [type(c) for c in out] == [Halt]
    state, out = feed(cfg, state, [(109, "875"), (110, "876")])
    assert out == [Resume("breaker:resume:110", 110)]
    assert not state.halted and state.peak == 876


def test_redelivered_or_older_points_change_nothing() -> None:
    state, _ = feed(CFG, BreakerState(), [(1, "1000"), (2, "890")])
    again, out = feed(CFG, state, [(2, "890"), (1, "1")])
    assert again == state and out == []


def test_switched_off_and_invalid_equity() -> None:
    state, out = feed(BreakerConfig(enabled=False), BreakerState(), [(1, "1000"), (2, "1")])
    assert out == [] and not state.halted
    with pytest.raises(InvalidRecord):
        on_equity(CFG, BreakerState(), EquityPoint(1, D(-1)))
    with pytest.raises(InvalidRecord):
        on_equity(CFG, BreakerState(), EquityPoint(1, D("NaN")))
    state, out = feed(CFG, BreakerState(), [(1, "0"), (2, "0")])
    assert out == [] and state.drawdown() is None


def test_state_round_trips_through_json() -> None:
    state, _ = feed(CFG, BreakerState(), [(1, "1000.5"), (2, "850.25")])
    assert BreakerState.from_json(json.loads(json.dumps(state.to_json()))) == state


@given(
    curve=st.lists(st.integers(0, 2000), min_size=1, max_size=60),
    limit=st.sampled_from([D("0.05"), D("0.1"), D("0.3")]),
    auto=st.sampled_from([None, 3, 10]),
    operator_at=st.sets(st.integers(0, 59), max_size=5),
)
def test_halts_and_resumes_alternate_and_halts_are_justified(curve, limit, auto, operator_at):
    cfg = BreakerConfig(max_drawdown_pct=limit, auto_resume_after_ms=auto)
    state = BreakerState()
    halted = False
    for t, eq in enumerate(curve):
        before = state
        state, cmds = on_equity(cfg, state, EquityPoint(t, D(eq)))
        for c in cmds:
            if isinstance(c, Halt):
                assert not halted, "a Halt only after a Resume"
                peak = max(before.peak or D(0), D(eq))
                assert peak > 0 and (peak - eq) / peak >= limit
                halted = True
            else:
                assert halted and auto is not None
                halted = False
        assert state.halted == halted
        if t in operator_at:
            state = on_resume(state, Resume(f"ops-{t}", t))
            halted = False
        state = BreakerState.from_json(json.loads(json.dumps(state.to_json())))


def test_points_at_the_same_event_time_are_each_evaluated() -> None:
    # every symbol's bar closes on the same minute, and each mark moves the equity
    state, out = feed(CFG, BreakerState(), [(1, "1000"), (2, "950"), (2, "900")])
    assert [c.command_id for c in out] == ["breaker:halt:2"]
    again, out = feed(CFG, state, [(2, "900")])  # the same point again changes nothing
    assert again == state and out == []
