"""Trained weights on disk: a directory with `meta.json` (readable) and `weights.pt` (torch).

meta.json holds what a reader needs to trust the weights: the feature names and formula
version they were trained on, the data range, the seed, the library versions, the
metrics and the reliability table on held-out data, the ensemble (models and weights)
the calibrator was fitted for, and the sha256 of weights.pt. Small numeric parameters
(the scaler, the logistic regression, the calibrator) are in meta.json too: JSON floats
round-trip exactly. `load_bundle` refuses weights trained on other features
(`FeatureMismatch`) and a weights file that is not the one the metadata describes.
weights.pt is read with `torch.load(weights_only=True)`: tensors only, no pickled code.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.ai_engine.config import AIEngineConfig, NetConfig
from agents.ai_engine.ensemble import Calibrator, calibrator_from
from agents.ai_engine.models.base import Scaler
from agents.ai_engine.models.logistic import Logistic
from agents.ai_engine.models.nets import CNNModel, CNNNet, MLPModel, MLPNet

FORMAT = 1
META_FILE = "meta.json"
WEIGHTS_FILE = "weights.pt"


class BundleError(Exception):
    """The weights cannot be used: missing, corrupt, or made for something else."""


class FeatureMismatch(BundleError):
    """The weights were trained on another feature list or feature formula version."""

    def __init__(
        self, expected: Sequence[str], found: Sequence[str], expected_v: int, found_v: int
    ) -> None:
        missing = [n for n in expected if n not in found]
        extra = [n for n in found if n not in expected]
        super().__init__(
            f"weights were trained on features v{found_v} {list(found)}, this engine computes "
            f"v{expected_v} {list(expected)} (missing {missing}, extra {extra}); "
            "retrain with `quantum train`"
        )
        self.expected = tuple(expected)
        self.found = tuple(found)


class EnsembleMismatch(BundleError):
    """The calibrator was fitted for another model list or weights than the configured one."""


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


def _weights_bytes(state: dict[str, torch.Tensor]) -> bytes:
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
    weights = _weights_bytes(state)
    numbers = {k: meta[k] for k in ("scaler", "logistic", "ensemble") if k in meta}
    full = {
        "format": FORMAT,
        "bundle_id": bundle_id(numbers, weights),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        **{k: v for k, v in meta.items() if k not in ("format", "bundle_id", "weights_sha256")},
    }
    return ModelBundle(full, dict(state))


def save_bundle(directory: Path, bundle: ModelBundle) -> None:
    """Write weights.pt and meta.json (weights first: a reader checks them against the meta)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / WEIGHTS_FILE).write_bytes(_weights_bytes(bundle.state))
    (directory / META_FILE).write_text(json.dumps(bundle.meta, indent=1) + "\n")


def load_bundle(
    directory: Path, *, feature_names: Sequence[str], feature_version: int
) -> ModelBundle:
    """Read and check a bundle; FeatureMismatch if it was trained on other features."""
    meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise BundleError(f"no trained weights in {directory} (run `quantum train`)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_path}: not JSON ({exc})") from None
    if meta.get("format") != FORMAT:
        raise BundleError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT}")
    found = tuple(meta.get("feature_names", ()))
    found_v = int(meta.get("feature_version", -1))
    if found != tuple(feature_names) or found_v != feature_version:
        raise FeatureMismatch(feature_names, found, feature_version, found_v)
    weights = weights_path.read_bytes()
    if hashlib.sha256(weights).hexdigest() != meta.get("weights_sha256"):
        raise BundleError(f"{weights_path} is not the file {meta_path} describes (sha256 differs)")
    state = torch.load(io.BytesIO(weights), weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BundleError(f"{weights_path}: not a dict of tensors")
    return ModelBundle(meta, state)


def resolve_weights_path(path: str) -> Path:
    """An absolute path as is; a relative one in the checkout or the installed share dir."""
    p = Path(path)
    if p.is_absolute():
        return p
    from quantum.paths import data_path

    return data_path(*p.parts)


def bundle_for(config: AIEngineConfig) -> ModelBundle | None:
    """What a shell passes to `SignalEngine(config, bundle)`: the weights at
    `config.weights_path`, checked against the configured features; None when only rule
    models are configured (they need no weights)."""
    if not config.needs_bundle:
        return None
    from agents.features.config import FEATURE_VERSION

    return load_bundle(
        resolve_weights_path(config.weights_path),
        feature_names=config.features.names(),
        feature_version=FEATURE_VERSION,
    )
