"""Trained weights on disk: a directory with `meta.json` (readable) and `weights.pt` (torch).

`load_bundle` refuses weights trained on other features (`FeatureMismatch`) and a weights
file that is not the one the metadata describes (sha256). weights.pt is read with
`torch.load(weights_only=True)`: tensors only, no pickled code.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from agents.ai_engine.bundle import FORMAT, ModelBundle, weights_bytes
from agents.ai_engine.bundle_errors import BundleError, FeatureMismatch
from agents.ai_engine.config import FEATURE_VERSION, AIEngineConfig

META_FILE = "meta.json"
WEIGHTS_FILE = "weights.pt"


def save_bundle(directory: Path, bundle: ModelBundle) -> None:
    """Write weights.pt and meta.json (weights first: a reader checks them against the meta)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / WEIGHTS_FILE).write_bytes(weights_bytes(bundle.state))
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
    return load_bundle(
        resolve_weights_path(config.weights_path),
        feature_names=config.features.names(),
        feature_version=FEATURE_VERSION,
    )
