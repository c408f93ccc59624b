"""Exit guard rules: TP, SL, margin-PnL%, liquidation proximity, time stop, missing stop-loss,
switches, marks, gaps, priorities, redelivery, state round trip; plus properties."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.exit_guard.config import ExitGuardConfig
from agents.exit_guard.core import GuardState, on_bar, on_position
from agents.exits.model import Bar, ExitReason, PositionView, Side
from quantum.errors import InvalidRecord

T0 = 5_000_000
ENTRY = D(100)
# defaults: TP +2.5 %, SL from the position, margin loss 50 %, liquidation buffer 1 %
CFG = ExitGuardConfig()
ONLY = dict(take_profit_pct=None, stop_loss_enabled=False, margin_loss_pct=None)
ONLY_NONE = dict(**ONLY, liquidation_buffer_pct=None)


def position(
    side: Side = Side.LONG,
    qty: str = "3",
    stop: str | None = "98.5",
    updated: int = T0,
    margin: str = "10",
    liq: str | None = None,
    mark: str | None = None,
    leverage: int = 30,
) -> PositionView:
    return PositionView(
        intent_id="pos-9",
        symbol="ETHUSDT",
        side=side,
        entry_price=ENTRY,
        quantity=D(qty),
        stop_loss=None if stop is None else D(stop),
        opened_at_ms=T0,
        updated_at_ms=updated,
        leverage=leverage,
        margin=D(margin),
        liquidation_price=None if liq is None else D(liq),
        mark_price=None if mark is None else D(mark),
    )


def bar(k: int, o: str, h: str, low: str, c: str) -> Bar:
    return Bar("ETHUSDT", T0 + 60_000 * k, T0 + 60_000 * (k + 1) - 1, D(o), D(h), D(low), D(c))


def start(cfg: ExitGuardConfig = CFG, **kw: object) -> GuardState:
    st_, exits, _ = on_position(cfg, None, position(**kw))  # type: ignore[arg-type]
    assert st_ is not None and exits == []
    return st_


def test_take_profit_and_stop_loss_on_price() -> None:
    s, ex = on_bar(CFG, start(), bar(0, "100", "102.6", "99.9", "102"))
    assert [(e.exit_id, e.reason, e.quantity, e.reference_price) for e in ex] == [
        ("pos-9:tp", ExitReason.TAKE_PROFIT, D(3), D("102.5"))
    ]
    assert s.closed and ex[0].reduce_only
    s, ex = on_bar(CFG, start(), bar(0, "100", "100.1", "98.4", "99"))
    assert [(e.exit_id, e.reason, e.reference_price) for e in ex] == [
        ("pos-9:sl", ExitReason.STOP_LOSS, D("98.5"))
    ]
    short = start(side=Side.SHORT, stop="101.5")
    _, ex = on_bar(CFG, short, bar(0, "100", "100.1", "97.4", "98"))
    assert [(e.reason, e.reference_price) for e in ex] == [(ExitReason.TAKE_PROFIT, D("97.5"))]


def test_margin_pnl_exit() -> None:
    """3 units, margin 10, X = 50 %: close when 3 * (p - 100) <= -5, i.e. p <= 98.333..."""
    cfg = ExitGuardConfig(
        take_profit_pct=None, stop_loss_enabled=False, liquidation_buffer_pct=None
    )
    s, ex = on_bar(cfg, start(cfg), bar(0, "100", "100", "98.34", "98.5"))
    assert ex == []
    s, ex = on_bar(cfg, s, bar(1, "98.5", "98.5", "98.3", "98.4"))
    assert [(e.exit_id, e.reason) for e in ex] == [("pos-9:pnl", ExitReason.PNL_PCT)]
    pnl = 3 * (ex[0].reference_price - ENTRY)
    assert abs(pnl - D(-5)) < D("1e-20")
    # unknown margin (0): entry notional / leverage = 300 / 30 = 10, the same level
    _, ex = on_bar(cfg, start(cfg, margin="0"), bar(0, "100", "100", "98.3", "98.4"))
    assert [e.reason for e in ex] == [ExitReason.PNL_PCT]


def test_liquidation_proximity_guard_long_and_short() -> None:
    cfg = ExitGuardConfig(**ONLY)
    # long, liq 97: close when (p - 97) / p <= 1 %, i.e. p <= 97.9798...
    s, ex = on_bar(cfg, start(cfg, liq="97"), bar(0, "100", "100", "98", "98.5"))
    assert ex == []
    _, ex = on_bar(cfg, s, bar(1, "98.5", "98.5", "97.9", "98"))
    assert [(e.exit_id, e.reason) for e in ex] == [("pos-9:liq", ExitReason.LIQUIDATION_GUARD)]
    p = ex[0].reference_price
    assert abs((p - 97) / p - D("0.01")) < D("1e-20")
    # short, liq 103: close when (103 - p) / p <= 1 %, i.e. p >= 101.98...
    short = start(cfg, side=Side.SHORT, stop="101.5", liq="103")
    _, ex = on_bar(cfg, short, bar(0, "100", "102", "99.5", "101.5"))
    assert [e.reason for e in ex] == [ExitReason.LIQUIDATION_GUARD]
    # liquidation price 0 or missing: the guard has nothing to watch
    _, ex = on_bar(cfg, start(cfg, liq="0"), bar(0, "100", "100", "50", "60"))
    assert ex == []


def test_the_mark_in_a_position_record_is_evaluated() -> None:
    cfg = ExitGuardConfig(**ONLY)
    s = start(cfg, liq="97")
    s, ex, _ = on_position(cfg, s, position(liq="97", mark="97.5", updated=T0 + 1))
    assert [(e.reason, e.reference_price, e.event_time_ms) for e in ex] == [
        (ExitReason.LIQUIDATION_GUARD, D("97.5"), T0 + 1)
    ]
    cfg = ExitGuardConfig(**ONLY, evaluate_marks=False)
    s = start(cfg, liq="97")
    _, ex, _ = on_position(cfg, s, position(liq="97", mark="97.5", updated=T0 + 1))
    assert ex == []


def test_time_stop_at_the_close_after_price_rules() -> None:
    cfg = ExitGuardConfig(max_hold_ms=100_000)  # bar 1 closes 119.999 s after the open
    s, ex = on_bar(cfg, start(cfg), bar(0, "100", "100.5", "99.5", "100.2"))
    assert ex == []
    s, ex = on_bar(cfg, s, bar(1, "100.2", "100.5", "99.5", "100.3"))
    assert [(e.exit_id, e.reason, e.reference_price) for e in ex] == [
        ("pos-9:time", ExitReason.TIME_STOP, D("100.3"))
    ]
    s, ex = on_bar(cfg, start(cfg), bar(0, "100", "100.5", "99.5", "100.2"))
    s, ex = on_bar(cfg, s, bar(1, "100.2", "100.5", "98", "99"))  # the stop comes first
    assert [e.reason for e in ex] == [ExitReason.STOP_LOSS]


def test_missing_stop_gets_the_default_and_a_warning_once() -> None:
    s, ex, warnings = on_position(CFG, None, position(stop=None))
    assert s is not None and s.stop == D("98.5") and s.stop_defaulted and ex == []
    assert [(w.processor, w.position_intent_id, w.stop_price) for w in warnings] == [
        ("exit_guard", "pos-9", D("98.5"))
    ]
    s2, _, warnings = on_position(CFG, s, position(stop=None, updated=T0 + 1))
    assert warnings == [] and s2 is not None and s2.stop_defaulted
    s3, _, _ = on_position(CFG, s2, position(stop="99", updated=T0 + 2))
    assert s3 is not None and s3.stop == D(99) and not s3.stop_defaulted
    _, ex = on_bar(CFG, s2, bar(0, "100", "100", "98.4", "98.6"))
    assert [e.reason for e in ex] == [ExitReason.STOP_LOSS]


@pytest.mark.parametrize(
    ("switch", "bar_"),
    [
        (dict(take_profit_pct=None), ("100", "110", "100", "110")),
        (dict(stop_loss_enabled=False, margin_loss_pct=None), ("100", "100", "98.4", "98.6")),
        (dict(**ONLY_NONE), ("100", "100", "50", "60")),
        (dict(enabled=False), ("100", "100", "50", "60")),
    ],
)
def test_every_rule_can_be_switched_off(switch: dict, bar_: tuple[str, ...]) -> None:
    cfg = ExitGuardConfig(**switch)
    s = start(CFG, liq="97")
    _, ex = on_bar(cfg, s, bar(0, *bar_))
    assert ex == []


def test_disabled_guard_keeps_no_state() -> None:
    assert on_position(ExitGuardConfig(enabled=False), None, position()) == (None, [], [])


def test_gap_fills_at_the_open_and_the_first_level_crossed_wins() -> None:
    s, _ = on_bar(CFG, start(liq="97"), bar(0, "100", "100.2", "99.8", "100"))
    # gap from 100 to 96: SL 98.5, PnL level 98.33, liq level 97.98 all crossed: SL is first
    _, ex = on_bar(CFG, s, bar(1, "96", "96.5", "95", "96"))
    assert [(e.reason, e.reference_price) for e in ex] == [(ExitReason.STOP_LOSS, D(96))]
    # without a price stop the margin rule is crossed first
    cfg = ExitGuardConfig(stop_loss_enabled=False)
    _, ex = on_bar(cfg, s, bar(1, "99", "99", "95", "96"))
    assert [e.reason for e in ex] == [ExitReason.PNL_PCT]


def test_equal_levels_priority_sl_then_pnl_then_liq() -> None:
    # margin 10, 3 units, X 0.45 -> level 98.5, the same as the stop
    cfg = ExitGuardConfig(margin_loss_pct=D("0.45"))
    _, ex = on_bar(cfg, start(cfg), bar(0, "100", "100", "98", "98.2"))
    assert [e.reason for e in ex] == [ExitReason.STOP_LOSS]


def test_redelivery_stale_records_and_closed_positions() -> None:
    s = start()
    b = bar(0, "100", "100.5", "99.5", "100")
    s, _ = on_bar(CFG, s, b)
    again, ex = on_bar(CFG, s, b)
    assert again == s and ex == []
    s2, _, _ = on_position(CFG, s, position(qty="2", updated=T0 + 10))
    assert s2 is not None and s2.quantity == 2
    stale, ex, _ = on_position(CFG, s2, position(qty="3", updated=T0 + 5))
    assert stale == s2 and ex == []
    closed, _, _ = on_position(CFG, s2, position(qty="0", updated=T0 + 11))
    assert closed is not None and closed.closed
    _, ex = on_bar(CFG, closed, bar(1, "100", "200", "1", "50"))
    assert ex == []
    # the entry bar (opened before the position) is not evaluated
    entry_bar = Bar("ETHUSDT", T0 - 1, T0 + 59_998, D(100), D(110), D(90), D(100))
    _, ex = on_bar(CFG, start(), entry_bar)
    assert ex == []


def test_invalid_inputs_are_typed_errors() -> None:
    with pytest.raises(InvalidRecord):
        on_position(CFG, None, position(margin="-1"))
    with pytest.raises(InvalidRecord):
        on_bar(CFG, start(), Bar("BTCUSDT", T0, T0 + 1, ENTRY, ENTRY, ENTRY, ENTRY))
    with pytest.raises(InvalidRecord):
        on_position(CFG, start(), PositionView("other", "ETHUSDT", Side.LONG, ENTRY, D(1),
                                               None, T0, T0 + 1))  # fmt: skip


def test_state_round_trips_through_json() -> None:
    s = start(liq="97")
    s, _ = on_bar(CFG, s, bar(0, "100", "100.5", "99.5", "100.25"))
    assert GuardState.from_json(json.loads(json.dumps(s.to_json()))) == s


prices = st.integers(8_000, 12_000).map(lambda n: D(n) / 100)


@given(
    side=st.sampled_from([Side.LONG, Side.SHORT]),
    qty=st.sampled_from(["1", "3", "0.5"]),
    liq=st.sampled_from([None, "70", "97", "103", "130"]),
    hold=st.sampled_from([None, 60_000, 600_000]),
    path=st.lists(st.tuples(prices, prices, prices, prices), min_size=1, max_size=20),
    marks=st.lists(st.one_of(st.none(), prices), min_size=20, max_size=20),
)
def test_the_guard_closes_at_most_once_never_more_than_is_open(side, qty, liq, hold, path, marks):
    cfg = ExitGuardConfig(max_hold_ms=hold)
    stop = "98.5" if side is Side.LONG else "101.5"
    s = start(cfg, side=side, qty=qty, stop=stop, liq=liq)
    exits = []
    for k, quad in enumerate(path):
        o, c = quad[0], quad[3]
        h, low = max(quad), min(quad)
        s, ex = on_bar(cfg, s, bar(k, str(o), str(h), str(low), str(c)))
        exits += ex
        if marks[k] is not None:
            pos = position(side, qty, stop, T0 + 60_000 * (k + 1), liq=liq, mark=str(marks[k]))
            new, ex, _ = on_position(cfg, s, pos)
            assert new is not None
            s, exits = new, exits + ex
        s = GuardState.from_json(json.loads(json.dumps(s.to_json())))
    assert len(exits) <= 1
    for e in exits:
        assert e.quantity == D(qty) and e.reduce_only
        assert e.exit_id == f"pos-9:{e.exit_id.split(':')[1]}"
    assert s.closed == bool(exits)


def test_on_halt_closes_the_rest_once_with_reason_halt() -> None:
    from agents.exit_guard.core import on_halt

    st_ = start()
    st_, exits = on_halt(CFG, st_, T0 + 7)
    [x] = exits
    assert (x.exit_id, x.reason, x.quantity, x.event_time_ms) == (
        "pos-9:halt",
        ExitReason.HALT,
        D(3),
        T0 + 7,
    )
    assert st_.closed and on_halt(CFG, st_, T0 + 8) == (st_, [])
    assert on_halt(ExitGuardConfig(enabled=False), start(), T0)[1] == []
