"""The rule models and the shared model interface (no training needed)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.ai_engine.config import (
    AIEngineConfig,
    FeatureConfig,
    MACrossoverConfig,
    MeanReversionConfig,
    MomentumConfig,
)
from agents.ai_engine.model import Direction, direction_of
from agents.ai_engine.models import MissingWeights, build_models
from agents.ai_engine.models.base import Scaler, sequence_inputs, sigmoid
from agents.ai_engine.models.rules import MACrossover, MeanReversion, Momentum

NAMES = FeatureConfig().names()


def _exact_crossings(closes: list[int], fast: int, slow: int) -> dict[int, Direction]:
    """Bars where the fast SMA crosses the slow one, in exact rational arithmetic."""

    def rel(t: int) -> int:
        f = Fraction(sum(closes[t - fast + 1 : t + 1]), fast)
        s = Fraction(sum(closes[t - slow + 1 : t + 1]), slow)
        return (f > s) - (f < s)

    out: dict[int, Direction] = {}
    for t in range(slow, len(closes)):
        now, before = rel(t), rel(t - 1)
        if now > 0 and before <= 0:
            out[t] = Direction.LONG
        elif now < 0 and before >= 0:
            out[t] = Direction.SHORT
    return out


@given(
    st.lists(st.integers(1, 60), min_size=2, max_size=160),
    st.integers(1, 6),
    st.integers(2, 12),
)
def test_ma_crossover_fires_on_the_crossing_bar_and_nowhere_else(
    closes: list[int], fast: int, extra: int
) -> None:
    slow = fast + extra
    cfg = MACrossoverConfig(fast=fast, slow=slow)
    model = MACrossover(cfg)
    expected = _exact_crossings(closes, fast, slow)
    arr = np.asarray(closes, dtype=np.float64)
    features = np.zeros(len(NAMES))
    fired: dict[int, Direction] = {}
    for t in range(slow, len(closes)):
        vote = model.predict(features, arr[t - slow : t + 1])  # slow + 1 closes, as live
        if vote.direction is not Direction.HOLD:
            fired[t] = vote.direction
            assert vote.probability == (
                cfg.probability if vote.direction is Direction.LONG else 1 - cfg.probability
            )
        else:
            assert vote.probability == 0.5
    assert fired == expected


def test_ma_crossover_on_a_hand_made_series() -> None:
    model = MACrossover(MACrossoverConfig(fast=2, slow=4))
    closes = np.array([10, 10, 10, 10, 9, 8, 9, 12, 13, 13, 11, 9, 8], dtype=float)
    dirs = [
        model.predict(np.zeros(1), closes[t - 4 : t + 1]).direction for t in range(4, len(closes))
    ]
    # t=4: fast 9.5 < slow 9.75 (t=3: equal) -> SHORT; t=7: 10.5 > 9.5 -> LONG;
    # t=10: 12 < 12.25 -> SHORT; every other bar keeps its side -> HOLD
    assert dirs == [
        Direction.SHORT,
        Direction.HOLD,
        Direction.HOLD,
        Direction.LONG,
        Direction.HOLD,
        Direction.HOLD,
        Direction.SHORT,
        Direction.HOLD,
        Direction.HOLD,
    ]


def test_ma_crossover_needs_slow_plus_one_closes() -> None:
    with pytest.raises(ValueError, match="needs 31"):
        MACrossover(MACrossoverConfig()).predict(np.zeros(1), np.ones(30))
    with pytest.raises(ValueError, match="fast"):
        MACrossoverConfig(fast=30, slow=30)


def _features(**values: float) -> np.ndarray:
    x = np.zeros(len(NAMES))
    for k, v in values.items():
        x[NAMES.index(k)] = v
    return x


def test_momentum_follows_and_mean_reversion_fades_the_move() -> None:
    mom = Momentum(NAMES, MomentumConfig(), band=0.02)
    rev = MeanReversion(NAMES, MeanReversionConfig(), band=0.02)
    closes = np.ones(64)
    up = _features(ret_15=0.01, vol_60=0.001, dist_sma_20=0.01)
    down = _features(ret_15=-0.01, vol_60=0.001, dist_sma_20=-0.01)
    flat = _features(ret_15=0.0, vol_60=0.001)
    assert mom.predict(up, closes).direction is Direction.LONG
    assert mom.predict(down, closes).direction is Direction.SHORT
    assert rev.predict(up, closes).direction is Direction.SHORT
    assert rev.predict(down, closes).direction is Direction.LONG
    assert mom.predict(flat, closes).direction is Direction.HOLD
    # z = 0.01 / (0.001 * sqrt(15)) = 2.582
    assert mom.predict(up, closes).probability == pytest.approx(1 / (1 + math.exp(-2.5820)), 1e-4)
    # zero volatility: no score, no direction (instead of a division by zero)
    assert mom.predict(_features(ret_15=0.01), closes).probability == 0.5


@given(st.floats(0, 1), st.floats(0, 0.49))
def test_direction_band(p: float, band: float) -> None:
    d = direction_of(p, band)
    if d is Direction.LONG:
        assert p > 0.5 and p >= 0.5 + band
    elif d is Direction.SHORT:
        assert p < 0.5 and p <= 0.5 - band
    else:
        assert abs(p - 0.5) < band or p == 0.5


def test_sigmoid_is_stable_and_sequence_inputs_are_scale_free() -> None:
    x = np.array([-1000.0, -1.0, 0.0, 1.0, 1000.0])
    assert np.all(np.isfinite(sigmoid(x)))
    assert sigmoid(x)[2] == 0.5 and sigmoid(x)[0] < 1e-200 and sigmoid(x)[4] == 1.0
    assert sigmoid(np.array([2.0]))[0] == pytest.approx(1 / (1 + math.exp(-2.0)), rel=1e-15)
    rng = np.random.default_rng(3)
    closes = np.exp(np.cumsum(rng.normal(0, 0.01, (4, 40)), axis=1))
    a = sequence_inputs(closes, 32)
    b = sequence_inputs(closes * 1000.0, 32)
    assert a.shape == (4, 32)
    np.testing.assert_allclose(a, b, atol=1e-9)
    assert np.all(sequence_inputs(np.ones((2, 40)), 32) == 0)  # flat: zeros, not NaN
    scaler = Scaler(np.zeros(2), np.array([1.0, 0.0]))
    assert scaler.transform(np.array([[100.0, 3.0]])).tolist() == [[5.0, 3.0]]  # clipped


def test_models_are_chosen_by_name_and_trained_ones_need_weights() -> None:
    cfg = AIEngineConfig(models=("ma_crossover", "momentum"), weights=(2.0, 1.0))
    assert [m.name for m in build_models(cfg, None)] == ["ma_crossover", "momentum"]
    with pytest.raises(MissingWeights, match="mlp"):
        build_models(AIEngineConfig(), None)
    with pytest.raises(ValueError, match="models"):
        AIEngineConfig(models=("nope",), weights=(1.0,))
    with pytest.raises(ValueError, match="weights"):
        AIEngineConfig(models=("momentum",), weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="momentum"):
        AIEngineConfig(models=("momentum",), weights=(1.0,), momentum=MomentumConfig(horizon=7))
