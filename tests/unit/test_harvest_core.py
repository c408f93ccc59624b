"""Harvest core rules: ladder, break-even, trailing, stop, symmetric partial stops, intrabar
rule, redelivery, position updates, state round trip."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from agents.exits.model import Bar, ExitReason, PositionView, Side
from agents.harvest.config import HarvestConfig, parse_ladder
from agents.harvest.core import HarvestState, on_bar, on_position
from quantum.errors import InvalidRecord

ENTRY = D(100)
T0 = 1_000_000


def position(
    side: Side = Side.LONG,
    qty: str = "8",
    stop: str | None = "98",
    updated: int = T0,
    **kw: object,
) -> PositionView:
    return PositionView(
        intent_id="pos-1",
        symbol="BTCUSDT",
        side=side,
        entry_price=ENTRY,
        quantity=D(qty),
        stop_loss=None if stop is None else D(stop),
        opened_at_ms=T0,
        updated_at_ms=updated,
        **kw,  # type: ignore[arg-type]
    )


def bar(k: int, o: str, h: str, low: str, c: str, atr: str | None = "1") -> Bar:
    return Bar(
        symbol="BTCUSDT",
        open_time_ms=T0 + 60_000 * k,
        close_time_ms=T0 + 60_000 * (k + 1) - 1,
        open=D(o),
        high=D(h),
        low=D(low),
        close=D(c),
        atr=None if atr is None else D(atr),
    )


def start(cfg: HarvestConfig, **kw: object) -> HarvestState:
    st, _ = on_position(cfg, None, position(**kw))  # type: ignore[arg-type]
    assert st is not None
    return st


def run(cfg: HarvestConfig, st: HarvestState, *bars: Bar) -> tuple[HarvestState, list]:
    out = []
    for b in bars:
        st, ex = on_bar(cfg, st, b)
        out += ex
    return st, out


CFG = HarvestConfig()  # audit defaults: R = 2 (entry 100, stop 98)


def test_ladder_steps_fire_in_order_with_ids_reasons_and_quantities() -> None:
    st = start(CFG)
    st, ex = run(CFG, st, bar(0, "100", "101.2", "99.8", "101"))  # +0.6R
    assert [(e.exit_id, e.quantity, e.reason, e.reference_price) for e in ex] == [
        ("pos-1:tp1", D(2), ExitReason.HARVEST, D(101))
    ]
    assert ex[0].reduce_only and ex[0].event_time_ms == T0 + 59_999
    assert st.open_qty == 6 and st.tp_fired == 1
    # one bar jumping over the next two steps fires both, in order, at their levels
    st, ex = run(CFG, st, bar(1, "101", "103.5", "100.5", "103"))
    assert [(e.exit_id, e.quantity, e.reference_price) for e in ex] == [
        ("pos-1:tp2", D(2), D(102)),
        ("pos-1:tp3", D(2), D(103)),
    ]
    assert st.open_qty == 2


def test_gap_over_several_steps_fills_them_all_at_the_open() -> None:
    st = start(CFG)
    st, ex = run(CFG, st, bar(0, "100", "100.5", "99.5", "100"))
    st, ex = run(CFG, st, bar(1, "102.4", "102.6", "102.2", "102.5"))
    assert [(e.exit_id, e.reference_price) for e in ex] == [
        ("pos-1:tp1", D("102.4")),
        ("pos-1:tp2", D("102.4")),
    ]


def test_break_even_move_then_stop_at_entry() -> None:
    st = start(CFG)
    st, ex = run(CFG, st, bar(0, "100", "101.1", "100", "101"))
    assert st.stop == ENTRY and st.stop_kind is ExitReason.BREAK_EVEN and len(ex) == 1
    st, ex = run(CFG, st, bar(1, "101", "101", "99", "99.5"))
    assert [(e.exit_id, e.reason, e.quantity, e.reference_price) for e in ex] == [
        ("pos-1:stop", ExitReason.BREAK_EVEN, D(6), ENTRY)
    ]
    assert st.closed and st.open_qty == 0


def test_break_even_offset_and_switch_off() -> None:
    cfg = HarvestConfig(break_even_offset_r=D("0.1"))
    st, _ = run(cfg, start(cfg), bar(0, "100", "101.1", "100", "101"))
    assert st.stop == D("100.2")
    cfg = HarvestConfig(break_even_r=None)
    st, _ = run(cfg, start(cfg), bar(0, "100", "101.1", "100", "101"))
    assert st.stop == D(98) and st.stop_kind is ExitReason.STOP_LOSS


def test_initial_stop_is_an_emergency_full_close_and_can_be_switched_off() -> None:
    st, ex = run(CFG, start(CFG), bar(0, "100", "100.2", "97", "97.5"))
    assert [(e.exit_id, e.reason, e.quantity, e.reference_price) for e in ex] == [
        ("pos-1:stop", ExitReason.STOP_LOSS, D(8), D(98))
    ]
    cfg = HarvestConfig(stop_enabled=False)
    st, ex = run(cfg, start(cfg), bar(0, "100", "100.2", "97", "97.5"))
    assert ex == [] and not st.closed


def test_gap_through_the_stop_fills_at_the_open() -> None:
    st = start(CFG)
    st, _ = run(CFG, st, bar(0, "100", "100.5", "99.5", "99.6"))
    st, ex = run(CFG, st, bar(1, "96", "96.5", "95", "96"))
    assert ex[0].reason is ExitReason.STOP_LOSS and ex[0].reference_price == D(96)


def test_intrabar_rule_is_adverse_extreme_first() -> None:
    """A bar that touches both the stop and +1R: the stop wins (open -> low -> high)."""
    _, ex = run(CFG, start(CFG), bar(0, "100", "102.5", "97.9", "101"))
    assert [e.exit_id for e in ex] == ["pos-1:stop"]
    # for a short the adverse extreme is the high
    short = start(CFG, side=Side.SHORT, stop="102")
    _, ex = run(CFG, short, bar(0, "100", "102.1", "97.5", "99"))
    assert [e.exit_id for e in ex] == ["pos-1:stop"] and ex[0].reference_price == D(102)


def test_favourable_then_close_back_through_the_moved_stop_in_one_bar() -> None:
    """open -> low -> high -> close: the trailing stop set at the high is hit on the way
    to the close of the same bar."""
    st = start(CFG)
    st, ex = run(CFG, st, bar(0, "100", "107", "99.5", "104"))  # peak +3.5R, trail 2*1
    assert [e.exit_id for e in ex] == ["pos-1:tp1", "pos-1:tp2", "pos-1:tp3", "pos-1:stop"]
    assert ex[-1].reason is ExitReason.TRAILING_STOP and ex[-1].reference_price == D(105)
    assert sum(e.quantity for e in ex) == D(8)


def test_trailing_arms_only_after_the_last_step_by_default() -> None:
    st = start(CFG)
    st, _ = run(CFG, st, bar(0, "100", "102.9", "100", "102.8"))  # +1.45R, two steps
    assert not st.trailing and st.stop == ENTRY
    st, _ = run(CFG, st, bar(1, "102.8", "104", "102.8", "103.9"))  # past +1.5R
    assert st.trailing and st.stop == D(102) and st.stop_kind is ExitReason.TRAILING_STOP
    cfg = HarvestConfig(trail_start_r=D("0.75"))
    st, _ = run(cfg, start(cfg), bar(0, "100", "102.9", "100", "102.8"))
    assert st.trailing and st.stop == D("100.9")


def test_trailing_never_loosens_and_can_be_switched_off() -> None:
    st = start(CFG)
    st, _ = run(CFG, st, bar(0, "100", "106", "100", "106"), bar(1, "106", "106", "105", "105.5"))
    assert st.stop == D(104)
    st, _ = run(CFG, st, bar(2, "105.5", "105.8", "105.2", "105.6", atr="0.5"))
    assert st.stop == D(105)  # a smaller ATR tightens it: peak 106 - 2 * 0.5
    st, _ = run(CFG, st, bar(3, "105.6", "105.9", "105.5", "105.7", atr="3"))
    assert st.stop == D(105) and not st.closed  # a wider ATR never loosens it
    cfg = HarvestConfig(trailing_enabled=False)
    st, _ = run(cfg, start(cfg), bar(0, "100", "110", "100", "110"))
    assert st.stop == ENTRY and not st.trailing


def test_incremental_atr_when_bars_carry_none() -> None:
    """Simple mean while warming up, then Wilder's smoothing; used from the next bar on."""
    cfg = HarvestConfig(atr_period=2, ladder="none", break_even_r=None)
    st = start(cfg)
    st, _ = run(cfg, st, bar(0, "100", "101", "99", "100.5", atr=None))
    assert st.atr == D(2) and st.atr_n == 1
    st, _ = run(cfg, st, bar(1, "100.5", "101.5", "100.5", "101", atr=None))
    assert st.atr == D("1.5")  # TR 1 -> mean (2 + 1) / 2
    st, _ = run(cfg, st, bar(2, "101", "104", "101", "103", atr=None))
    assert st.atr == D("2.25")  # TR 3, Wilder: (1.5 * 1 + 3) / 2
    # trailing from entry (no ladder) used the ATR known before bar 2: 104 - 2 * 1.5
    assert st.stop == D(101) and st.stop_kind is ExitReason.TRAILING_STOP


def test_no_trailing_before_any_atr_is_known() -> None:
    cfg = HarvestConfig(ladder="none", break_even_r=None)
    st, _ = run(cfg, start(cfg), bar(0, "100", "105", "100", "105", atr=None))
    assert st.trailing and st.stop == D(98)


def test_symmetric_mode_partial_stops_on_the_loss_side() -> None:
    cfg = HarvestConfig(symmetric=True, break_even_r=None)
    st, ex = run(cfg, start(cfg), bar(0, "100", "100", "98.9", "99.5"))
    assert [(e.exit_id, e.reason, e.quantity, e.reference_price) for e in ex] == [
        ("pos-1:sl1", ExitReason.PARTIAL_STOP, D(2), D(99))
    ]
    st, ex = run(cfg, st, bar(1, "99.5", "99.6", "97", "97.5"))
    # -1R: the mirrored step 2 (25 %) and the stop (the rest) at the same level, in that order
    assert [(e.exit_id, e.reason, e.quantity) for e in ex] == [
        ("pos-1:sl2", ExitReason.PARTIAL_STOP, D(2)),
        ("pos-1:stop", ExitReason.STOP_LOSS, D(4)),
    ]
    cfg = HarvestConfig(symmetric=True, loss_ladder="0.25:0.5")
    assert cfg.loss_rungs == parse_ladder("0.25:0.5")
    assert HarvestConfig(loss_ladder="0.25:0.5").loss_rungs == ()


def test_missing_stop_gets_the_default_and_one_warning() -> None:
    st, warnings = on_position(CFG, None, position(stop=None))
    assert st is not None and st.stop == D("98.5") and st.risk == D("1.5")
    assert [(w.processor, w.stop_price, w.stop_pct) for w in warnings] == [
        ("harvest", D("98.5"), D("0.015"))
    ]
    st2, warnings = on_position(CFG, st, position(stop=None, updated=T0 + 5))
    assert warnings == [] and st2 is not None
    short, _ = on_position(CFG, None, position(side=Side.SHORT, stop=None))
    assert short is not None and short.stop == D("101.5")


def test_stop_on_the_wrong_side_and_bad_bars_are_invalid_records() -> None:
    with pytest.raises(InvalidRecord):
        on_position(CFG, None, position(stop="101"))
    with pytest.raises(InvalidRecord):
        on_position(CFG, None, position(side=Side.SHORT, stop="99"))
    st = start(CFG)
    with pytest.raises(InvalidRecord):
        on_bar(CFG, st, bar(0, "100", "99", "98", "99"))  # high below open
    with pytest.raises(InvalidRecord):
        on_bar(CFG, st, bar(0, "100", "101", "0", "99"))
    with pytest.raises(InvalidRecord):
        on_bar(CFG, st, Bar("ETHUSDT", T0, T0 + 1, ENTRY, ENTRY, ENTRY, ENTRY))
    with pytest.raises(InvalidRecord):
        on_position(CFG, None, position(qty="-1"))


def test_redelivered_older_and_entry_bars() -> None:
    st = start(CFG)
    b0 = bar(0, "100", "101.2", "100", "101")
    st, ex = run(CFG, st, b0)
    assert len(ex) == 1
    same, ex = run(CFG, st, b0)
    assert ex == [] and same == st
    entry_bar = Bar("BTCUSDT", T0 - 30_000, T0 + 29_999, D(95), D(110), D(90), D(100))
    fresh, ex = on_bar(CFG, start(CFG), entry_bar)
    assert ex == [] and fresh.atr == D(20) and fresh.last_bar_ms == T0 + 29_999


def test_position_updates_follow_quantity_down_and_close() -> None:
    st = start(CFG)
    st, _ = on_position(CFG, st, position(qty="5", updated=T0 + 10))
    assert st is not None and st.open_qty == 5 and st.initial_qty == 8
    st, ex = run(CFG, st, bar(0, "100", "103.1", "100", "103"))
    assert [e.quantity for e in ex] == [D(2), D(2), D(1)]  # capped by what is open
    assert st.closed
    stale, _ = on_position(CFG, st, position(qty="8", updated=T0 + 5))
    assert stale == st
    st2 = start(CFG)
    st2, _ = on_position(CFG, st2, position(qty="0", updated=T0 + 10))
    assert st2 is not None and st2.closed
    _, ex = run(CFG, st2, bar(0, "100", "110", "90", "100"))
    assert ex == []


def test_entry_still_filling_restarts_from_the_new_average() -> None:
    st = start(CFG, qty="4")
    st, _ = on_position(CFG, st, position(qty="8", updated=T0 + 10))
    assert st is not None and st.initial_qty == 8 and st.open_qty == 8


def test_lot_step_rounds_steps_down_and_leaves_no_dust() -> None:
    cfg = HarvestConfig(ladder="0.5:0.3,1.0:0.3")
    st = start(cfg, qty="1", qty_step=D("0.25"))
    st, ex = run(cfg, st, bar(0, "100", "101.1", "100", "101"))
    assert [e.quantity for e in ex] == [D("0.25")]
    st, ex = run(cfg, st, bar(1, "101", "102.1", "101", "102"))
    assert [e.quantity for e in ex] == [D("0.25")]
    # 0.9 of 1 leaves 0.1, less than a lot: the step takes it all
    cfg = HarvestConfig(ladder="0.5:0.9")
    st, ex = run(cfg, start(cfg, qty="1", qty_step=D("0.3")), bar(0, "100", "101.1", "100", "101"))
    assert [e.quantity for e in ex] == [D(1)] and st.closed
    # a step that rounds down to nothing sends nothing but counts as fired
    cfg = HarvestConfig(ladder="0.5:0.1,1.0:0.5")
    st, ex = run(cfg, start(cfg, qty="1", qty_step=D("0.2")), bar(0, "100", "102.1", "100", "102"))
    assert [(e.exit_id, e.quantity) for e in ex] == [("pos-1:tp2", D("0.4"))]
    assert st.tp_fired == 2 and st.open_qty == D("0.6")


def test_short_mirrors_long_exactly() -> None:
    long_ = start(CFG)
    short = start(CFG, side=Side.SHORT, stop="102")
    path = [("100", "103.4", "99.6", "103"), ("103", "106.5", "102.5", "104.2")]
    _, ex_l = run(CFG, long_, *(bar(k, *p) for k, p in enumerate(path)))
    mirrored = [tuple(str(2 * ENTRY - D(x)) for x in (o, low, h, c)) for o, h, low, c in path]
    _, ex_s = run(CFG, short, *(bar(k, o, h, low, c) for k, (o, h, low, c) in enumerate(mirrored)))
    assert [(e.exit_id, e.quantity, e.reason) for e in ex_l] == [
        (e.exit_id, e.quantity, e.reason) for e in ex_s
    ]
    assert [e.reference_price - ENTRY for e in ex_l] == [ENTRY - e.reference_price for e in ex_s]


def test_disabled_keeps_no_state() -> None:
    cfg = HarvestConfig(enabled=False)
    assert on_position(cfg, None, position()) == (None, [])
    st = start(CFG)
    assert on_bar(cfg, st, bar(0, "100", "110", "100", "110")) == (st, [])


def test_state_round_trips_through_json() -> None:
    st = start(CFG, qty_step=D("0.001"))
    st, _ = run(CFG, st, bar(0, "100", "102.3", "99", "102"), bar(1, "102", "102", "101", "101"))
    again = HarvestState.from_json(json.loads(json.dumps(st.to_json())))
    assert again == st
    with pytest.raises(ValueError):
        HarvestState.from_json({**st.to_json(), "v": 99})


@pytest.mark.parametrize(
    "bad",
    ["0.5", "0.5:0", "0:0.25", "1:0.5,0.5:0.25", "0.5:0.6,1:0.6", "a:b", "0.5:1.5"],
)
def test_bad_ladders_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_ladder(bad)
    with pytest.raises(ValueError):
        HarvestConfig(ladder=bad)


def test_ladder_parsing() -> None:
    rungs = parse_ladder(" 0.5:0.25, 1.0:0.25 ,1.5:0.25")
    assert [(g.r, g.fraction) for g in rungs] == [
        (D("0.5"), D("0.25")),
        (D("1.0"), D("0.25")),
        (D("1.5"), D("0.25")),
    ]
    assert parse_ladder("none") == () == parse_ladder("")
    with pytest.raises(ValueError):
        HarvestConfig(break_even_r=D("0.5"), break_even_offset_r=D("0.5"))
