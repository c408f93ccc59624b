"""The backtest report's figures, computed from plain records: no I/O, no clock.

Money (PnL, fees, equity, drawdown in quote currency) is exact `Decimal`, summed as the
trades carry it; ratios (return, profit factor, win rate, R multiples, Sharpe, Sortino,
exposure) are `float`, since they are divisions that are read, not booked.
Times are epoch milliseconds (UTC). docs/backtest.md, "The report", defines every figure.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

ZERO = Decimal(0)
MINUTE_MS = 60_000
# Crypto futures trade around the clock: a year is 365 days of periods.
YEAR_MS = 365 * 24 * 60 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class Mark:
    """The PnL a position contributes to equity from `time_ms` on.

    An open position's mark is realized + unrealized PnL - fees so far; a closed trade's
    is its net PnL, which then stays. `key` names the position (its intent id)."""

    time_ms: int
    key: str
    pnl: Decimal


def equity_curve(initial: Decimal, marks: Iterable[Mark]) -> list[tuple[int, Decimal]]:
    """Equity after every distinct time: initial + the latest mark of every position.

    Marks are applied in time order (ties: in the order given), and one point is kept per
    time, after all its marks. A position whose last mark is a closed trade contributes its
    net PnL, so when every position is closed the curve ends at initial + Σ net PnL."""
    current: dict[str, Decimal] = {}
    total = ZERO
    points: list[tuple[int, Decimal]] = []
    for mark in sorted(marks, key=lambda m: m.time_ms):
        total += mark.pnl - current.get(mark.key, ZERO)
        current[mark.key] = mark.pnl
        if points and points[-1][0] == mark.time_ms:
            points[-1] = (mark.time_ms, initial + total)
        else:
            points.append((mark.time_ms, initial + total))
    return points


def drawdowns(equity: Sequence[Decimal]) -> list[Decimal]:
    """Distance below the running peak at every point (0 at a new high), never negative."""
    out: list[Decimal] = []
    peak: Decimal | None = None
    for value in equity:
        peak = value if peak is None or value > peak else peak
        out.append(peak - value)
    return out


def max_drawdown(equity: Sequence[Decimal]) -> tuple[Decimal, float]:
    """Largest fall from a running peak: (absolute, fraction of that peak).

    The fraction is measured against the peak the fall started from (0 when the peak is
    not positive); the absolute figure is at most the highest equity minus the lowest."""
    worst = ZERO
    worst_pct = 0.0
    peak: Decimal | None = None
    for value in equity:
        peak = value if peak is None or value > peak else peak
        fall = peak - value
        if fall > worst:
            worst = fall
        if peak > 0:
            worst_pct = max(worst_pct, float(fall / peak))
    return worst, worst_pct


def profit_factor(results: Iterable[Decimal]) -> float | None:
    """Gross profit / gross loss of the trades' net results; None when there is no loss
    (undefined: infinite with a profit, 0/0 without)."""
    gains = losses = ZERO
    for r in results:
        if r > 0:
            gains += r
        elif r < 0:
            losses -= r
    if losses == 0:
        return None
    return float(gains / losses)


def win_rate(results: Sequence[Decimal]) -> float | None:
    """Share of trades with a positive net result (None without trades)."""
    if not results:
        return None
    return sum(1 for r in results if r > 0) / len(results)


def r_multiple(
    net_pnl: Decimal, entry: Decimal, stop: Decimal | None, quantity: Decimal
) -> float | None:
    """A trade's result in R, R being its initial risk |entry - initial stop| x quantity.

    None when the trade had no stop (no risk was set, so no R is invented) or the stop
    sat at the entry (zero risk)."""
    if stop is None:
        return None
    risk = abs(entry - stop) * quantity
    if risk == 0:
        return None
    return float(net_pnl / risk)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def sample_equity(
    points: Sequence[tuple[int, Decimal]],
    initial: Decimal,
    start_ms: int,
    end_ms: int,
    period_ms: int,
) -> list[Decimal]:
    """Equity at start, start + period, ... up to end: the last point at or before each
    sample time (initial before the first point)."""
    if period_ms <= 0:
        raise ValueError("period_ms must be > 0")
    out: list[Decimal] = []
    i = 0
    value = initial
    t = start_ms
    while t <= end_ms:
        while i < len(points) and points[i][0] <= t:
            value = points[i][1]
            i += 1
        out.append(value)
        t += period_ms
    return out


def period_returns(samples: Sequence[Decimal]) -> list[float]:
    """Simple returns between consecutive samples (a sample at or below 0 ends the series:
    the account is gone, there is nothing left to return on)."""
    out: list[float] = []
    for prev, cur in itertools.pairwise(samples):
        if prev <= 0:
            break
        out.append(float(cur / prev - 1))
    return out


def sharpe(returns: Sequence[float], periods_per_year: float) -> float | None:
    """mean / sample standard deviation x sqrt(periods per year); risk-free rate 0.
    None with fewer than two returns or no variation."""
    if len(returns) < 2:
        return None
    m = sum(returns) / len(returns)
    var = sum((r - m) ** 2 for r in returns) / (len(returns) - 1)
    if var <= 0:
        return None
    return m / math.sqrt(var) * math.sqrt(periods_per_year)


def sortino(returns: Sequence[float], periods_per_year: float) -> float | None:
    """mean / downside deviation x sqrt(periods per year); downside deviation is
    sqrt(mean(min(r, 0)^2)) over every period, target 0. None with fewer than two returns
    or no period below 0."""
    if len(returns) < 2:
        return None
    downside = sum(min(r, 0.0) ** 2 for r in returns) / len(returns)
    if downside <= 0:
        return None
    m = sum(returns) / len(returns)
    return m / math.sqrt(downside) * math.sqrt(periods_per_year)


def open_count_steps(intervals: Iterable[tuple[int, int | None]]) -> list[tuple[int, int]]:
    """How many positions are open from each change on: [(time, count)], one per time.

    An interval is [open, close); None = still open at the end. A close at t frees
    before an open at t takes."""
    deltas: dict[int, int] = {}
    for start, end in intervals:
        deltas[start] = deltas.get(start, 0) + 1
        if end is not None:
            deltas[end] = deltas.get(end, 0) - 1
    level = 0
    steps: list[tuple[int, int]] = []
    for t in sorted(deltas):
        level += deltas[t]
        steps.append((t, level))
    return steps


def max_concurrent(intervals: Iterable[tuple[int, int | None]]) -> int:
    """Most intervals open at once (a close at t frees before an open at t takes)."""
    return max((level for _, level in open_count_steps(intervals)), default=0)


def exposure(intervals: Iterable[tuple[int, int | None]], start_ms: int, end_ms: int) -> float:
    """Fraction of [start, end) with at least one position open (0 for an empty span)."""
    if end_ms <= start_ms:
        return 0.0
    spans = sorted(
        (max(s, start_ms), min(end_ms if e is None else e, end_ms)) for s, e in intervals
    )
    covered = 0
    cur_s: int | None = None
    cur_e = 0
    for s, e in spans:
        if e <= s:
            continue
        if cur_s is None or s > cur_e:
            if cur_s is not None:
                covered += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_s is not None:
        covered += cur_e - cur_s
    return covered / (end_ms - start_ms)


def month_of(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).strftime("%Y-%m")


def monthly_returns(
    points: Sequence[tuple[int, Decimal]], initial: Decimal
) -> list[tuple[str, float]]:
    """Return of every UTC calendar month with equity points: its last equity over the
    previous month's last (the first month's base is the initial equity)."""
    last: dict[str, Decimal] = {}
    for t, value in sorted(points, key=lambda p: p[0]):
        last[month_of(t)] = value
    out: list[tuple[str, float]] = []
    base = initial
    for month in sorted(last):
        out.append((month, float(last[month] / base - 1) if base > 0 else 0.0))
        base = last[month]
    return out


def histogram(values: Sequence[float], width: float) -> list[tuple[float, int]]:
    """Counts per bin [k*width, (k+1)*width), as (bin start, count), bins in order."""
    if width <= 0:
        raise ValueError("width must be > 0")
    counts: dict[int, int] = {}
    for v in values:
        k = math.floor(v / width)
        counts[k] = counts.get(k, 0) + 1
    return [(k * width, counts[k]) for k in sorted(counts)]
