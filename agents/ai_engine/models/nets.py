"""The two torch models: an MLP over the feature vector, a 1-D CNN over the last N returns.

Both are small on purpose (about a thousand parameters each): they train on the sample in
seconds on a CPU and answer one bar in well under a millisecond. Inference runs under
`torch.inference_mode()` in float32 with deterministic algorithms and a fixed thread
count (`configure_torch`), so the same weights give the same votes on every run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agents.ai_engine.models.base import Model, Scaler, sequence_inputs, sigmoid


def configure_torch(threads: int) -> None:
    """Deterministic CPU torch for this process: deterministic kernels, `threads` intra-op
    threads (results of a reduction can depend on how many threads split it)."""
    torch.use_deterministic_algorithms(True)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class MLPNet(nn.Module):
    """Features -> hidden ReLU layers -> one logit (P(up) after a sigmoid)."""

    def __init__(self, n_in: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).squeeze(-1)


class CNNNet(nn.Module):
    """Normalised returns (n, T) -> two valid (causal) convolutions, the second dilated by 2
    -> per channel the mean over time and the last step -> one logit."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(1, channels, kernel),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, dilation=2),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.unsqueeze(1))
        return self.head(torch.cat([h.mean(dim=-1), h[..., -1]], dim=-1)).squeeze(-1)


def _probabilities(net: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        logits = net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return sigmoid(logits.numpy().astype(np.float64))


class MLPModel(Model):
    name = "mlp"

    def __init__(self, net: MLPNet, scaler: Scaler, band: float) -> None:
        super().__init__(band)
        self.net = net.eval()
        self.scaler = scaler

    def predict_proba(self, features: np.ndarray, closes: np.ndarray) -> np.ndarray:
        return _probabilities(self.net, self.scaler.transform(features))


class CNNModel(Model):
    name = "cnn"

    def __init__(self, net: CNNNet, seq_len: int, band: float) -> None:
        super().__init__(band)
        self.net = net.eval()
        self.seq_len = seq_len

    def predict_proba(self, features: np.ndarray, closes: np.ndarray) -> np.ndarray:
        return _probabilities(self.net, sequence_inputs(closes, self.seq_len))
