"""The three rule models: momentum, mean reversion, and the moving-average crossover baseline.

They learn nothing; their P(up) is a fixed squashing of a score (calibration re-maps the
ensemble's pooled output, so the scale only matters for a rule that runs alone).
"""

from __future__ import annotations

import math

import numpy as np

from agents.ai_engine.config import MACrossoverConfig, MeanReversionConfig, MomentumConfig
from agents.ai_engine.models.base import EPS, Model, column, sigmoid


class Momentum(Model):
    """P(up) = sigmoid(scale * z), z = ret_h / (vol_w * sqrt(h)): recent moves continue."""

    name = "momentum"

    def __init__(self, names: tuple[str, ...], config: MomentumConfig, band: float) -> None:
        super().__init__(band)
        self._ret = column(names, f"ret_{config.horizon}")
        self._vol = column(names, f"vol_{config.vol_window}")
        self._root = math.sqrt(config.horizon)
        self._scale = config.scale

    def predict_proba(self, features: np.ndarray, closes: np.ndarray) -> np.ndarray:
        scale = features[:, self._vol] * self._root
        z = np.divide(features[:, self._ret], scale, out=np.zeros(len(features)), where=scale > EPS)
        return sigmoid(self._scale * z)


class MeanReversion(Model):
    """P(up) = sigmoid(-scale * z), z = dist_sma_n / (vol_w * sqrt(n)): stretched prices return."""

    name = "mean_reversion"

    def __init__(self, names: tuple[str, ...], config: MeanReversionConfig, band: float) -> None:
        super().__init__(band)
        self._dist = column(names, f"dist_sma_{config.sma_window}")
        self._vol = column(names, f"vol_{config.vol_window}")
        self._root = math.sqrt(config.sma_window)
        self._scale = config.scale

    def predict_proba(self, features: np.ndarray, closes: np.ndarray) -> np.ndarray:
        scale = features[:, self._vol] * self._root
        z = np.divide(
            features[:, self._dist], scale, out=np.zeros(len(features)), where=scale > EPS
        )
        return sigmoid(-self._scale * z)


class MACrossover(Model):
    """LONG exactly on the bar where the fast SMA crosses above the slow one, SHORT where it
    crosses below, HOLD on every other bar.

    A cross up at t: fast_t > slow_t and fast_{t-1} <= slow_{t-1} (a cross down mirrors it).
    The comparison is of window sums cross-multiplied by the lengths (slow * sum_fast vs
    fast * sum_slow) with correctly rounded sums, so it has no division rounding: prices on
    an integer grid compare exactly, ties included.
    """

    name = "ma_crossover"

    def __init__(self, config: MACrossoverConfig) -> None:
        super().__init__(band=0.0)
        self._fast = config.fast
        self._slow = config.slow
        self._p = config.probability

    def _relation(self, closes: list[float]) -> int:
        """sign(fast - slow) at the last of `closes`: +1, 0 or -1."""
        f, s = self._fast, self._slow
        a = math.fsum(closes[-f:]) * s
        b = math.fsum(closes[-s:]) * f
        return (a > b) - (a < b)

    def predict_proba(self, features: np.ndarray, closes: np.ndarray) -> np.ndarray:
        if closes.shape[1] < self._slow + 1:
            raise ValueError(f"ma_crossover needs {self._slow + 1} closes, got {closes.shape[1]}")
        # Python floats (exactly the array's float64 values): summing numpy scalars one by
        # one cost two thirds of this model's time per bar in replay.
        up, down = self._p, 1.0 - self._p
        out = []
        for row in closes.tolist():
            now, before = self._relation(row), self._relation(row[:-1])
            out.append(up if now > 0 >= before else down if now < 0 <= before else 0.5)
        return np.array(out, dtype=np.float64)
