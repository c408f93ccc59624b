"""One event sequence for both designs: the same signals, at the same times, with the
same fill, close and holding delays, so a difference in outcome is the design's.

All randomness comes from the `random.Random` passed in; times are event time (ms).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agents.governor.model import Regime


@dataclass(frozen=True, slots=True)
class Signal:
    """An AI-engine prediction, plus the market's answer to an order on it."""

    signal_id: str
    t_ms: int
    symbol: str
    confidence: float
    fill_delay_ms: int  # order sent -> filled
    close_delay_ms: int  # close sent -> position flat ("closes take seconds")
    hold_ms: int  # filled -> its own exit (stop/target) fires


@dataclass(frozen=True, slots=True)
class InitialPosition:
    symbol: str
    score: float
    close_delay_ms: int
    hold_ms: int


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    duration_ms: int
    regime: Regime
    initial: tuple[InitialPosition, ...]
    signals: tuple[Signal, ...]


def _delays(rng: random.Random) -> tuple[int, int, int]:
    fill = rng.randint(200, 1_500)
    close = rng.randint(2_000, 8_000)
    hold = rng.randint(10 * 60_000, 60 * 60_000)
    return fill, close, hold


def audit_like(
    rng: random.Random,
    *,
    initial_open: int = 9,
    burst: int = 15,
    regime: Regime = Regime.TREND_STRONG,
    universe: int = 40,
    background_per_s: float = 1.0,
    duration_ms: int = 120_000,
) -> Scenario:
    """The audit's §1.5 timeline: `initial_open` positions at T+0, a burst of `burst`
    high-confidence signals on other symbols at T+1 s, and a steady background of
    mixed-confidence predictions across the universe for the rest of the run."""
    symbols = [f"C{n:02d}USDT" for n in range(universe)]
    initial = []
    for symbol in symbols[:initial_open]:
        _, close, hold = _delays(rng)
        initial.append(InitialPosition(symbol, round(rng.uniform(0.56, 0.70), 3), close, hold))
    signals: list[Signal] = []
    others = symbols[initial_open:]
    for n, symbol in enumerate(rng.sample(others, min(burst, len(others)))):
        fill, close, hold = _delays(rng)
        conf = round(rng.uniform(0.75, 0.95), 3)
        signals.append(Signal(f"burst-{n}", 1_000 + n * 37, symbol, conf, fill, close, hold))
    t = 0.0
    n = 0
    while True:
        t += rng.expovariate(background_per_s) * 1000
        if t >= duration_ms:
            break
        fill, close, hold = _delays(rng)
        conf = round(rng.uniform(0.40, 0.95), 3)
        signals.append(Signal(f"bg-{n}", int(t), rng.choice(symbols), conf, fill, close, hold))
        n += 1
    signals.sort(key=lambda s: (s.t_ms, s.signal_id))
    return Scenario(
        name=f"audit-like(initial={initial_open}, burst={burst}, {regime})",
        duration_ms=duration_ms,
        regime=regime,
        initial=tuple(initial),
        signals=tuple(signals),
    )
