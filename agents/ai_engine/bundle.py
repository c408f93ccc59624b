"""Trained weights in memory (`ModelBundle`) and the typed errors of using them.

A bundle is `meta` (JSON: the feature names and formula version the weights were trained
on, the data range, the seed, the library versions, the metrics and the reliability table
on held-out data, the ensemble (models and weights) the calibrator was fitted for, and
the small numeric parameters: the scaler, the logistic regression, the calibrator; JSON
floats round-trip exactly) and `state` (the torch tensors). `agents/ai_engine/weights.py`
writes and reads them on disk.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents.ai_engine.config import NetConfig
from agents.ai_engine.ensemble import Calibrator, calibrator_from
from agents.ai_engine.models.base import Scaler
from agents.ai_engine.models.logistic import Logistic
from agents.ai_engine.models.nets import CNNModel, CNNNet, MLPModel, MLPNet

FORMAT = 1


@dataclass(slots=True)
class ModelBundle:
    """Everything `quantum train` produced, in memory."""

    meta: dict[str, Any]
    state: dict[str, torch.Tensor]

    @property
    def bundle_id(self) -> str:
        return str(self.meta["bundle_id"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.meta["feature_names"])

    @property
    def nets(self) -> NetConfig:
        return NetConfig.model_validate(self.meta["nets"])

    @property
    def ensemble_models(self) -> tuple[str, ...]:
        return tuple(self.meta["ensemble"]["models"])

    @property
    def ensemble_weights(self) -> tuple[float, ...]:
        return tuple(float(w) for w in self.meta["ensemble"]["weights"])

    def scaler(self) -> Scaler:
        s = self.meta["scaler"]
        return Scaler(np.asarray(s["mean"]), np.asarray(s["std"]))

    def calibrator(self) -> Calibrator:
        c = self.meta["ensemble"]["calibration"]
        return calibrator_from(c["kind"], c["params"])

    def mlp(self, band: float) -> MLPModel:
        net = MLPNet(len(self.feature_names), self.nets.mlp_hidden)
        net.load_state_dict(_sub(self.state, "mlp."))
        return MLPModel(net, self.scaler(), band)

    def cnn(self, band: float) -> CNNModel:
        nets = self.nets
        net = CNNNet(nets.cnn_channels, nets.cnn_kernel)
        net.load_state_dict(_sub(self.state, "cnn."))
        return CNNModel(net, nets.seq_len, band)

    def logistic(self, band: float) -> Logistic:
        lg = self.meta["logistic"]
        return Logistic(np.asarray(lg["w"]), lg["b"], self.scaler(), band)


def _sub(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def weights_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save({k: state[k] for k in sorted(state)}, buf)
    return buf.getvalue()


def bundle_id(meta_numbers: dict[str, Any], weights: bytes) -> str:
    """12 hex digits naming the weights: sha256 of weights.pt and the numeric parameters."""
    h = hashlib.sha256(weights)
    h.update(json.dumps(meta_numbers, sort_keys=True).encode())
    return h.hexdigest()[:12]


def make_bundle(meta: dict[str, Any], state: dict[str, torch.Tensor]) -> ModelBundle:
    """A bundle in memory, with its format, weights sha256 and id filled in."""
    weights = weights_bytes(state)
    numbers = {k: meta[k] for k in ("scaler", "logistic", "ensemble") if k in meta}
    full = {
        "format": FORMAT,
        "bundle_id": bundle_id(numbers, weights),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        **{k: v for k, v in meta.items() if k not in ("format", "bundle_id", "weights_sha256")},
    }
    return ModelBundle(full, dict(state))
