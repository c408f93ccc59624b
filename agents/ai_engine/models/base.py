"""The one interface every model implements, and the inputs they share.

A model maps (feature vectors, close histories) to P(up) row by row. `predict_proba` is
the batch form (training, evaluation, replay analysis); `predict` is the per-bar form
the engine calls live, and it is the same code on a one-row batch, so a live vote and a
replayed vote come from one function.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from agents.ai_engine.model import Vote, direction_of

EPS = 1e-12


class Model(ABC):
    """A pluggable model: `name`, `predict_proba` (batch) and `predict` (one bar)."""

    name: str

    def __init__(self, band: float) -> None:
        self.band = band

    @abstractmethod
    def predict_proba(self, features: np.ndarray, closes: np.ndarray) -> np.ndarray:
        """P(up) for each row: features (n, F) in FeatureConfig.names() order, closes (n, L)
        the last L closes ending at the row's bar, oldest first. Returns float64 (n,)."""

    def predict(self, features: np.ndarray, history: np.ndarray) -> Vote:
        """This bar's vote from its feature vector (F,) and its close history (L,)."""
        p = float(self.predict_proba(features[np.newaxis, :], history[np.newaxis, :])[0])
        return Vote(model=self.name, direction=direction_of(p, self.band), probability=p)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function; inputs clipped to +-500 so exp never overflows (one vector pass,
    cheap on the one-row batches of live inference: maximum/minimum, the same values as
    np.clip at half its call overhead)."""
    x = np.minimum(np.maximum(np.asarray(x, dtype=np.float64), -500.0), 500.0)
    return 1.0 / (1.0 + np.exp(-x))


def logit(p: np.ndarray, clip: float = 1e-6) -> np.ndarray:
    q = np.minimum(np.maximum(p, clip), 1.0 - clip)
    return np.log(q / (1.0 - q))


class Scaler:
    """Standardisation fitted on the training part; inputs beyond +-5 sigma are clipped so a
    freak bar cannot push a model far outside what it was trained on."""

    CLIP = 5.0

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.where(np.asarray(std, dtype=np.float64) > EPS, std, 1.0)

    @classmethod
    def fit(cls, x: np.ndarray) -> Scaler:
        return cls(x.mean(axis=0), x.std(axis=0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / self.std, -self.CLIP, self.CLIP)


def sequence_inputs(closes: np.ndarray, seq_len: int) -> np.ndarray:
    """(n, seq_len) last 1-bar log returns of each row, divided by their own std, clipped."""
    window = closes[:, -(seq_len + 1) :]
    if window.shape[1] != seq_len + 1:
        raise ValueError(f"need {seq_len + 1} closes per row, got {window.shape[1]}")
    r = np.diff(np.log(window), axis=1)
    s = r.std(axis=1, keepdims=True)
    z = np.divide(r, s, out=np.zeros_like(r), where=s > EPS)
    return np.clip(z, -Scaler.CLIP, Scaler.CLIP)


def column(names: tuple[str, ...], name: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        raise ValueError(f"feature {name!r} is not in the feature list {names}") from None
