"""Pooling the votes into one probability, calibrating it, and measuring the calibration.

Pooling is a weighted mean of the models' log-odds (logarithmic opinion pooling): a model
at P(up) = 0.5 adds nothing, two confident models agreeing add up. The pooled number is
a score, not yet a probability anyone measured; the calibrator (fitted on held-out data
by `quantum train`, stored with the weights) maps it to the frequency with which prices
actually went up, which the reliability table then checks on a third, unseen part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.ai_engine.models.base import logit, sigmoid


def pool(probabilities: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Pooled P(up) per row of `probabilities` (n, m): sigmoid(sum w_i logit p_i / sum w_i)."""
    w = np.asarray(weights, dtype=np.float64)
    return sigmoid(logit(probabilities) @ w / w.sum())


class Calibrator:
    """Identity: the pooled probability is used as it is."""

    kind = "none"

    def apply(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(p, dtype=np.float64)

    def params(self) -> dict[str, list[float]]:
        return {}


class Platt(Calibrator):
    """p' = sigmoid(a * logit(p) + b): two parameters, sturdy on little data."""

    kind = "platt"

    def __init__(self, a: float, b: float) -> None:
        self.a, self.b = float(a), float(b)

    def apply(self, p: np.ndarray) -> np.ndarray:
        return sigmoid(self.a * logit(np.asarray(p, dtype=np.float64)) + self.b)

    def params(self) -> dict[str, list[float]]:
        return {"ab": [self.a, self.b]}

    @classmethod
    def fit(cls, p: np.ndarray, y: np.ndarray, *, iters: int = 100) -> Platt:
        """Maximum likelihood by Newton's method, with Platt's smoothed targets."""
        n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
        t = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
        x = np.column_stack([logit(p), np.ones(len(p))])
        theta = np.array([1.0, 0.0])
        for _ in range(iters):
            q = sigmoid(x @ theta)
            grad = x.T @ (q - t)
            hess = (x * (q * (1 - q))[:, None]).T @ x + np.eye(2) * 1e-9
            step = np.linalg.solve(hess, grad)
            theta -= step
            if float(np.max(np.abs(step))) < 1e-12:
                break
        return cls(theta[0], theta[1])


class Isotonic(Calibrator):
    """A non-decreasing step map fitted by pool-adjacent-violators, interpolated linearly
    between the centres of its blocks and held flat beyond the ends."""

    kind = "isotonic"

    def __init__(self, x: Sequence[float], y: Sequence[float]) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)

    def apply(self, p: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(p, dtype=np.float64), self.x, self.y)

    def params(self) -> dict[str, list[float]]:
        return {"x": self.x.tolist(), "y": self.y.tolist()}

    @classmethod
    def fit(cls, p: np.ndarray, y: np.ndarray, *, smoothing: float = 1.0) -> Isotonic:
        """PAV on (p, y) sorted by p (ties merged); each block's value is its label mean,
        pulled towards 0.5 by `smoothing` pseudo-counts so a block of three is not 0 or 1."""
        order = np.argsort(p, kind="stable")
        xs, ys = p[order], y[order].astype(np.float64)
        uniq, start = np.unique(xs, return_index=True)
        counts = np.diff(np.append(start, len(xs))).astype(np.float64)
        sums = np.add.reduceat(ys, start)
        xsum = uniq * counts
        blocks: list[list[float]] = []  # [label sum, count, x sum]
        for s, c, xv in zip(sums, counts, xsum, strict=True):
            blocks.append([s, c, xv])
            while (
                len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]
            ):
                s2, c2, x2 = blocks.pop()
                blocks[-1][0] += s2
                blocks[-1][1] += c2
                blocks[-1][2] += x2
        bx = [b[2] / b[1] for b in blocks]
        # Smoothing can reorder a tiny block against a big neighbour: keep it non-decreasing.
        by = np.maximum.accumulate([(b[0] + 0.5 * smoothing) / (b[1] + smoothing) for b in blocks])
        by = by.tolist()
        if len(bx) == 1:
            bx, by = [0.0, 1.0], [by[0], by[0]]
        return cls(bx, by)


def calibrator_from(kind: str, params: dict[str, Any]) -> Calibrator:
    if kind == "none":
        return Calibrator()
    if kind == "platt":
        a, b = params["ab"]
        return Platt(a, b)
    if kind == "isotonic":
        return Isotonic(params["x"], params["y"])
    raise ValueError(f"unknown calibrator {kind!r}")


def fit_calibrator(kind: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
    if kind == "platt":
        return Platt.fit(p, y)
    if kind == "isotonic":
        return Isotonic.fit(p, y)
    return Calibrator()


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """Predictions in [lo, hi): how many, their mean, and how often the price went up."""

    lo: float
    hi: float
    count: int
    mean_predicted: float | None
    observed: float | None


def reliability_table(
    p: np.ndarray, y: np.ndarray, bins: int = 10, *, strategy: str = "uniform"
) -> list[ReliabilityBin]:
    """Predicted vs observed frequency of up-moves, per bin of the predicted P(up).

    uniform: equal-width bins over [0, 1] (the last one closed), empty ones included with
    None means. quantile: bins holding equal numbers of predictions (edges at the deciles
    for 10), which shows resolution when the predictions sit in a narrow band.
    """
    p = np.asarray(p, dtype=np.float64)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, bins + 1)
    elif strategy == "quantile":
        edges = (
            np.unique(np.quantile(p, np.linspace(0.0, 1.0, bins + 1)))
            if len(p)
            else np.array([0.0, 1.0])
        )
        if len(edges) < 2:
            edges = np.array([edges[0], edges[0]])
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    n_bins = len(edges) - 1
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    out: list[ReliabilityBin] = []
    for i in range(n_bins):
        mask = idx == i
        n = int(mask.sum())
        out.append(
            ReliabilityBin(
                lo=float(edges[i]),
                hi=float(edges[i + 1]),
                count=n,
                mean_predicted=float(p[mask].mean()) if n else None,
                observed=float(y[mask].mean()) if n else None,
            )
        )
    return out


def expected_calibration_error(table: Sequence[ReliabilityBin]) -> float:
    """Count-weighted mean |predicted - observed| over the bins."""
    total = sum(b.count for b in table)
    if total == 0:
        return 0.0
    return (
        sum(
            b.count * abs((b.mean_predicted or 0.0) - (b.observed or 0.0)) for b in table if b.count
        )
        / total
    )


def metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Log loss, Brier score, accuracy at 0.5, ROC AUC (rank form) and the base rate."""
    q = np.clip(p, 1e-12, 1 - 1e-12)
    n = len(y)
    pos = y > 0
    n_pos, n_neg = int(pos.sum()), int(n - pos.sum())
    if n_pos and n_neg:
        ranks = _average_ranks(p)
        auc = (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    else:
        auc = float("nan")
    return {
        "n": float(n),
        "log_loss": float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))) if n else float("nan"),
        "brier": float(np.mean((p - y) ** 2)) if n else float("nan"),
        "accuracy": float(np.mean((p > 0.5) == pos)) if n else float("nan"),
        "auc": float(auc),
        "base_rate": float(pos.mean()) if n else float("nan"),
    }


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    uniq, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    if len(uniq) < len(x):  # ties share their mean rank
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / counts)[inverse]
    return ranks
