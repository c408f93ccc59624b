"""Pooling, calibration and the reliability table."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.ai_engine.ensemble import (
    Calibrator,
    Isotonic,
    Platt,
    calibrator_from,
    expected_calibration_error,
    fit_calibrator,
    metrics,
    pool,
    reliability_table,
)
from agents.ai_engine.models.base import logit, sigmoid


def test_pool_is_a_weighted_mean_of_log_odds() -> None:
    p = np.array([[0.8, 0.5], [0.2, 0.5], [0.5, 0.5], [0.9, 0.1]])
    out = pool(p, [1.0, 1.0])
    assert out[0] == pytest.approx(sigmoid(np.array([logit(np.array([0.8]))[0] / 2]))[0])
    assert out[0] == pytest.approx(1 - out[1])  # symmetric
    assert out[2] == 0.5 and out[3] == pytest.approx(0.5)  # neutral and opposed votes cancel
    heavy = pool(np.array([[0.8, 0.3]]), [3.0, 1.0])[0]
    light = pool(np.array([[0.8, 0.3]]), [1.0, 3.0])[0]
    assert heavy > 0.5 > light


def _calibration_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores that are overconfident: the true P(up) is sigmoid(0.5 * logit(score) + 0.2)."""
    rng = np.random.default_rng(seed)
    score = rng.uniform(0.02, 0.98, n)
    truth = sigmoid(0.5 * logit(score) + 0.2)
    return score, (rng.uniform(size=n) < truth).astype(float)


def test_platt_recovers_the_distortion() -> None:
    score, y = _calibration_data(40_000, 1)
    cal = Platt.fit(score, y)
    assert cal.a == pytest.approx(0.5, abs=0.05) and cal.b == pytest.approx(0.2, abs=0.05)


@pytest.mark.parametrize("kind", ["isotonic", "platt"])
def test_calibration_fixes_overconfidence_on_unseen_data(kind: str) -> None:
    score, y = _calibration_data(20_000, 2)
    test_score, test_y = _calibration_data(20_000, 3)
    cal = fit_calibrator(kind, score, y)
    before = expected_calibration_error(reliability_table(test_score, test_y))
    after = expected_calibration_error(reliability_table(cal.apply(test_score), test_y))
    assert before > 0.1 and after < 0.03
    assert metrics(cal.apply(test_score), test_y)["brier"] < metrics(test_score, test_y)["brier"]
    again = calibrator_from(cal.kind, cal.params())
    assert np.array_equal(again.apply(test_score), cal.apply(test_score))


@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=200))
def test_isotonic_is_monotone_and_a_probability(pairs: list[tuple[float, bool]]) -> None:
    p = np.array([a for a, _ in pairs])
    y = np.array([float(b) for _, b in pairs])
    cal = Isotonic.fit(p, y)
    grid = np.linspace(-0.5, 1.5, 101)
    out = cal.apply(grid)
    assert np.all(np.diff(out) >= 0)
    assert np.all((out > 0) & (out < 1))  # smoothed: never a certain 0 or 1


def test_identity_calibrator() -> None:
    p = np.array([0.1, 0.7])
    assert np.array_equal(Calibrator().apply(p), p)
    assert calibrator_from("none", {}).kind == "none"
    with pytest.raises(ValueError):
        calibrator_from("magic", {})


def test_reliability_table_bins_and_counts() -> None:
    p = np.array([0.05, 0.15, 0.12, 0.95, 1.0, 0.5])
    y = np.array([0, 1, 0, 1, 1, 0])
    table = reliability_table(p, y, bins=10)
    assert [b.count for b in table] == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]
    assert table[1].mean_predicted == pytest.approx(0.135) and table[1].observed == 0.5
    assert table[2].mean_predicted is None and table[2].observed is None
    assert table[9].observed == 1.0  # p = 1.0 lands in the last, closed bin
    assert expected_calibration_error(table) == pytest.approx(
        (0.05 + 2 * abs(0.135 - 0.5) + 0.5 + 2 * abs(0.975 - 1)) / 6
    )


def test_metrics() -> None:
    y = np.array([0, 0, 1, 1])
    m = metrics(np.array([0.1, 0.2, 0.8, 0.9]), y)
    assert m["auc"] == 1.0 and m["accuracy"] == 1.0 and m["base_rate"] == 0.5
    assert metrics(np.array([0.5, 0.5, 0.5, 0.5]), y)["auc"] == 0.5  # ties share ranks
    assert metrics(np.array([0.9, 0.8, 0.2, 0.1]), y)["auc"] == 0.0
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.8, 0.9])))


def test_quantile_reliability_bins_hold_equal_counts() -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(0.45, 0.55, 1000)  # a narrow band: one or two uniform bins, ten deciles
    y = (rng.uniform(size=1000) < p).astype(float)
    deciles = reliability_table(p, y, 10, strategy="quantile")
    assert len(deciles) == 10 and all(b.count == 100 for b in deciles)
    assert deciles[0].lo == p.min() and deciles[-1].hi == p.max()
    assert sum(b.count for b in reliability_table(p, y, 10) if b.count) == 1000
    assert len(reliability_table(np.full(5, 0.5), np.ones(5), 10, strategy="quantile")) == 1
    with pytest.raises(ValueError):
        reliability_table(p, y, strategy="magic")
