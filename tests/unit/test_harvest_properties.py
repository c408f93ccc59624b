"""Property tests of the harvest core over random configs, bar paths, redeliveries, restarts
(state through JSON) and position updates:

- a ladder step fires at most once, steps fire in order, and none is skipped: while the
  position is open, every step whose level the bars reached has fired;
- the open quantity never goes negative and exits never exceed what is open;
- redeliveries and restarts change nothing (same exits as one clean pass);
- a short is the exact mirror of a long.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_DOWN
from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from agents.exits.model import Bar, ExitIntent, PositionView, Side
from agents.harvest.config import HarvestConfig
from agents.harvest.core import HarvestState, on_bar, on_position

ENTRY = D(100)
T0 = 10_000
LADDERS = ["0.5:0.25,1.0:0.25,1.5:0.25", "none", "0.5:0.5,1:0.5", "0.3:0.1,0.6:0.2,0.9:0.3,2:0.4"]
LOSS = [None, "0.25:0.5", "0.3:0.2,0.6:0.3"]

configs = st.builds(
    HarvestConfig,
    ladder=st.sampled_from(LADDERS),
    break_even_r=st.sampled_from([None, D("0.5"), D(1)]),
    trailing_enabled=st.booleans(),
    trail_start_r=st.sampled_from([None, D(0), D(1)]),
    symmetric=st.booleans(),
    loss_ladder=st.sampled_from(LOSS),
    stop_enabled=st.booleans(),
    trail_atr_mult=st.sampled_from([D(1), D(2)]),
    atr_period=st.sampled_from([1, 3, 14]),
)


@dataclass
class Step:
    kind: str  # bar | redeliver | restart | update
    bar: Bar | None = None
    cut: D = D(0)  # update: share of the open quantity filled elsewhere


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[HarvestConfig, Side, D, D | None, list[Bar], list[Step]]:
    cfg = draw(configs)
    side = draw(st.sampled_from([Side.LONG, Side.SHORT]))
    qty = draw(st.sampled_from([D(1), D(8), D("0.75")]))
    step = draw(st.sampled_from([None, D("0.001")]))
    n = draw(st.integers(1, 25))
    bars: list[Bar] = []
    steps: list[Step] = []
    close = ENTRY
    for k in range(n):
        gap = draw(st.sampled_from([0, 0, 0, 0, -150, 150, -400, 400]))
        move = draw(st.integers(-250, 250))
        up, down = draw(st.integers(0, 150)), draw(st.integers(0, 150))
        o = close + D(gap) / 100
        c = o + D(move) / 100
        h, low = max(o, c) + D(up) / 100, min(o, c) - D(down) / 100
        atr = draw(st.sampled_from([None, D(0), D("0.5"), D(1), D(2)]))
        b = Bar("SYM", T0 + 10 * k, T0 + 10 * k + 9, o, h, low, c, atr)
        bars.append(b)
        steps.append(Step("bar", b))
        extra = draw(st.sampled_from(["", "", "", "redeliver", "restart", "update"]))
        if extra == "redeliver":
            steps.append(Step("redeliver", draw(st.sampled_from(bars))))
        elif extra == "restart":
            steps.append(Step("restart"))
        elif extra == "update":
            steps.append(Step("update", cut=draw(st.sampled_from([D(0), D("0.5"), D(1)]))))
        close = c
    return cfg, side, qty, step, bars, steps


def _position(side: Side, qty: D, step: D | None, updated: int = T0, q: D | None = None):
    stop = ENTRY - 2 if side is Side.LONG else ENTRY + 2
    return PositionView(
        "p", "SYM", side, ENTRY, qty if q is None else q, stop, T0, updated, qty_step=step
    )


def _mirror(b: Bar) -> Bar:
    m = 2 * ENTRY
    atr = b.atr
    return Bar(b.symbol, b.open_time_ms, b.close_time_ms, m - b.open, m - b.low, m - b.high,
               m - b.close, atr)  # fmt: skip


def _clean_run(cfg: HarvestConfig, side: Side, qty: D, step: D | None, bars: list[Bar]):
    state, _ = on_position(cfg, None, _position(side, qty, step))
    assert state is not None
    out: list[ExitIntent] = []
    for b in bars:
        state, ex = on_bar(cfg, state, b)
        out += ex
    return state, out


@given(scenarios())
def test_steps_once_in_order_never_skipped_and_quantities_bounded(data) -> None:
    cfg, side, qty, step, bars, steps = data
    state, _ = on_position(cfg, None, _position(side, qty, step))
    assert state is not None
    exits: list[ExitIntent] = []
    open_qty = qty  # the test's own account of what is open
    updated = T0
    for s in steps:
        if s.kind in ("bar", "redeliver"):
            assert s.bar is not None
            state, ex = on_bar(cfg, state, s.bar)
            for e in ex:
                assert 0 < e.quantity <= open_qty, "an exit never exceeds what is open"
                assert e.reduce_only and e.position_intent_id == "p"
                open_qty -= e.quantity
            exits += ex
        elif s.kind == "restart":
            state = HarvestState.from_json(json.loads(json.dumps(state.to_json())))
        else:  # an exit filled elsewhere: the position shrinks
            updated += 1
            new_q = open_qty - (open_qty * s.cut).quantize(D("0.001"), rounding=ROUND_DOWN)
            new_state, _ = on_position(cfg, state, _position(side, qty, step, updated, new_q))
            assert new_state is not None
            state, open_qty = new_state, new_q
        assert state.open_qty >= 0
        assert state.open_qty == open_qty or state.closed
    ids = [e.exit_id for e in exits]
    assert len(ids) == len(set(ids)), "no step fires twice"
    for prefix in ("p:tp", "p:sl"):
        fired = [int(i.removeprefix(prefix)) for i in ids if i.startswith(prefix)]
        assert fired == sorted(fired), "steps fire in order"
    assert sum(e.quantity for e in exits) <= qty
    # never skipped: while open, every step whose level was reached has fired
    if not state.closed:
        sgn = 1 if side is Side.LONG else -1
        best = max(sgn * (b.high if sgn > 0 else b.low) for b in bars)
        worst = min(sgn * (b.low if sgn > 0 else b.high) for b in bars)
        reached = sum(1 for g in cfg.rungs if sgn * ENTRY + g.r * 2 <= best)
        assert state.tp_fired >= reached
        reached_loss = sum(1 for g in cfg.loss_rungs if sgn * ENTRY - g.r * 2 >= worst)
        assert state.sl_fired >= reached_loss


@given(scenarios())
def test_redeliveries_and_restarts_change_nothing(data) -> None:
    cfg, side, qty, step, bars, steps = data
    state, _ = on_position(cfg, None, _position(side, qty, step))
    assert state is not None
    exits: list[ExitIntent] = []
    for s in steps:
        if s.kind in ("bar", "redeliver"):
            assert s.bar is not None
            state, ex = on_bar(cfg, state, s.bar)
            exits += ex
        elif s.kind == "restart":
            state = HarvestState.from_json(json.loads(json.dumps(state.to_json())))
    clean_state, clean = _clean_run(cfg, side, qty, step, bars)
    assert exits == clean and state == clean_state


@given(scenarios())
def test_a_short_is_the_mirror_of_a_long(data) -> None:
    cfg, _, qty, step, bars, _ = data
    _, long_exits = _clean_run(cfg, Side.LONG, qty, step, bars)
    _, short_exits = _clean_run(cfg, Side.SHORT, qty, step, [_mirror(b) for b in bars])
    assert [(e.exit_id, e.quantity, e.reason) for e in long_exits] == [
        (e.exit_id, e.quantity, e.reason) for e in short_exits
    ]
    assert [e.reference_price - ENTRY for e in long_exits] == [
        ENTRY - e.reference_price for e in short_exits
    ]
