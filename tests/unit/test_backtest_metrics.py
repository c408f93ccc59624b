"""The backtest report's figures (quantum/app/backtest/metrics.py), by hand and as properties."""

from __future__ import annotations

import math
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from quantum.app.backtest import metrics as m

D = Decimal
money = st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False)
positive = st.decimals(min_value=1, max_value=100000, places=2, allow_nan=False)


# ---- by hand ----------------------------------------------------------------------------


def test_equity_curve_marks_then_close() -> None:
    marks = [
        m.Mark(10, "a", D("5")),  # a open, +5 unrealized
        m.Mark(10, "b", D("-2")),
        m.Mark(20, "a", D("-3")),  # a marked down
        m.Mark(30, "a", D("-4")),  # a closed at -4 net
        m.Mark(40, "b", D("7")),
    ]
    assert m.equity_curve(D(100), marks) == [
        (10, D(103)),
        (20, D(95)),
        (30, D(94)),
        (40, D(103)),
    ]


def test_max_drawdown_by_hand() -> None:
    equity = [D(100), D(120), D(90), D(110), D(130), D(117)]
    assert m.drawdowns(equity) == [D(0), D(0), D(30), D(10), D(0), D(13)]
    assert m.max_drawdown(equity) == (D(30), 0.25)


def test_profit_factor_and_win_rate() -> None:
    results = [D(10), D(-5), D(20), D(-10), D(0)]
    assert m.profit_factor(results) == 2.0
    assert m.win_rate(results) == 0.4
    assert m.profit_factor([D(3)]) is None  # no loss: undefined, not invented
    assert m.win_rate([]) is None


def test_r_multiple() -> None:
    # long 2 @ 100, stop 95: risk 10; net +15 -> 1.5 R
    assert m.r_multiple(D(15), D(100), D(95), D(2)) == 1.5
    # short 1 @ 50, stop 52: risk 2; net -2.2 -> -1.1 R
    assert m.r_multiple(D("-2.2"), D(50), D(52), D(1)) == -1.1
    assert m.r_multiple(D(5), D(100), None, D(1)) is None
    assert m.r_multiple(D(5), D(100), D(100), D(1)) is None


def test_sample_equity_and_returns() -> None:
    points = [(60_000, D(110)), (180_000, D(99))]
    samples = m.sample_equity(points, D(100), 0, 240_000, 60_000)
    assert samples == [D(100), D(110), D(110), D(99), D(99)]
    assert m.period_returns(samples) == [0.1, 0.0, -0.1, 0.0]


def test_sharpe_and_sortino_by_hand() -> None:
    r = [0.01, -0.01, 0.02, 0.0]
    mean = 0.005
    sd = math.sqrt(sum((x - mean) ** 2 for x in r) / 3)
    assert math.isclose(m.sharpe(r, 4), mean / sd * 2)
    down = math.sqrt(0.0001 / 4)
    assert math.isclose(m.sortino(r, 4), mean / down * 2)
    assert m.sharpe([0.01], 4) is None
    assert m.sharpe([0.01, 0.01], 4) is None  # no variation
    assert m.sortino([0.01, 0.02], 4) is None  # no downside


def test_open_counts_and_exposure() -> None:
    intervals = [(0, 10), (5, 15), (10, 20), (30, None)]
    assert m.open_count_steps(intervals) == [(0, 1), (5, 2), (10, 2), (15, 1), (20, 0), (30, 1)]
    assert m.max_concurrent(intervals) == 2
    # open over [0, 20) and [30, 40) of [0, 40)
    assert m.exposure(intervals, 0, 40) == 0.75
    assert m.exposure([], 0, 40) == 0.0


def test_monthly_returns() -> None:
    jan = 1767225600000  # 2026-01-01T00:00Z
    feb = jan + 31 * 86_400_000
    points = [(jan + 1, D(110)), (jan + 2, D(121)), (feb, D("108.9"))]
    assert m.monthly_returns(points, D(100)) == [
        ("2026-01", 0.21),
        ("2026-02", -0.1),
    ]


def test_histogram() -> None:
    assert m.histogram([-1.2, -0.1, 0.2, 0.4, 2.0], 0.5) == [
        (-1.5, 1),
        (-0.5, 1),
        (0.0, 2),
        (2.0, 1),
    ]


# ---- properties ---------------------------------------------------------------------------


@given(st.lists(positive, min_size=1, max_size=60))
def test_max_drawdown_bounds(equity: list[Decimal]) -> None:
    dd, pct = m.max_drawdown(equity)
    assert dd >= 0
    assert dd <= max(equity) - min(equity)
    assert dd == max(m.drawdowns(equity))
    # never more than the whole peak it fell from
    assert 0.0 <= pct <= 1.0
    # a rising curve has none
    assert m.max_drawdown(sorted(equity)) == (D(0), 0.0)


@given(st.lists(money, max_size=60))
def test_profit_factor_definition(results: list[Decimal]) -> None:
    gains = sum((r for r in results if r > 0), D(0))
    losses = -sum((r for r in results if r < 0), D(0))
    pf = m.profit_factor(results)
    if losses == 0:
        assert pf is None
    else:
        assert pf == float(gains / losses)
        assert pf >= 0
        # above 1 exactly when the trades made money
        assert (pf > 1) == (sum(results, D(0)) > 0)


@given(
    positive,
    st.lists(
        st.tuples(st.integers(0, 50), st.integers(0, 5), money, st.booleans()),
        max_size=40,
    ),
)
def test_equity_ends_at_start_plus_net_pnl(initial: Decimal, raw: list) -> None:
    """Whatever the marks on the way, once every position has its closing trade the
    curve ends at initial + the sum of the trades' net PnL."""
    marks = [m.Mark(t, f"p{k}", pnl) for t, k, pnl, _ in raw]
    keys = sorted({f"p{k}" for _, k, _, _ in raw})
    closes = {key: D(len(key)) * D("1.5") - D(3) for key in keys}
    end = max((t for t, *_ in raw), default=0) + 1
    marks += [m.Mark(end, key, pnl) for key, pnl in closes.items()]
    curve = m.equity_curve(initial, marks)
    if keys:
        assert curve[-1] == (end, initial + sum(closes.values(), D(0)))
    # one point per distinct time, in time order
    times = [t for t, _ in curve]
    assert times == sorted(set(times))


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), max_size=30))
def test_open_counts_never_negative_and_exposure_in_unit_range(pairs: list) -> None:
    intervals = [(min(a, b), max(a, b)) for a, b in pairs]
    steps = m.open_count_steps(intervals)
    assert all(level >= 0 for _, level in steps)
    if steps:
        assert steps[-1][1] == 0
    best = m.max_concurrent(intervals)
    # brute force over every instant
    brute = max(
        (sum(1 for s, e in intervals if s <= t < e) for t in range(0, 101)),
        default=0,
    )
    assert best == brute
    assert 0.0 <= m.exposure(intervals, 0, 100) <= 1.0


@given(st.lists(st.floats(-0.5, 0.5, allow_nan=False), min_size=2, max_size=50))
def test_sortino_sharpe_sign_follows_the_mean(returns: list[float]) -> None:
    mean = sum(returns) / len(returns)
    for value in (m.sharpe(returns, 365), m.sortino(returns, 365)):
        if value is not None and abs(mean) > 1e-12:
            assert math.copysign(1, value) == math.copysign(1, mean)
