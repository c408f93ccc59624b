"""Logistic regression on the standardised features, fitted by Newton's method (numpy only)."""

from __future__ import annotations

import numpy as np

from agents.ai_engine.models.base import Model, Scaler, sigmoid


class Logistic(Model):
    """P(up) = sigmoid(w . standardise(x) + b)."""

    name = "logistic"

    def __init__(self, w: np.ndarray, b: float, scaler: Scaler, band: float) -> None:
        super().__init__(band)
        self.w = np.asarray(w, dtype=np.float64)
        self.b = float(b)
        self.scaler = scaler

    def predict_proba(self, features: np.ndarray, closes: np.ndarray) -> np.ndarray:
        return sigmoid(self.scaler.transform(features) @ self.w + self.b)


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float, *, max_iter: int = 50, tol: float = 1e-10
) -> tuple[np.ndarray, float]:
    """(w, b) minimising the summed log loss + l2/2 * |w|^2 (bias unpenalised), by Newton
    steps (IRLS). Deterministic: no randomness, a fixed iteration order."""
    n, k = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros(k + 1)
    penalty = np.full(k + 1, l2)
    penalty[-1] = 0.0
    for _ in range(max_iter):
        p = sigmoid(design @ theta)
        grad = design.T @ (p - y) + penalty * theta
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if float(np.max(np.abs(step))) < tol:
            break
    return theta[:-1].copy(), float(theta[-1])
