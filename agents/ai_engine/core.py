"""The AI engine's per-bar decision: kline -> features -> every configured model's vote ->
pooled, calibrated ensemble signal (agents/ai_engine/model.py `Signal`).

Pure: the models and their weights are fixed at construction, the per-symbol state comes
in and is updated in place (a Faust table keeps `state.to_snapshot()` per symbol and
restores it with `engine.restore`), event time comes from the kline. The same kline
sequence gives the same signals live and in replay. A kline seen before (open time not
after the symbol's last) is a redelivery: no state change, no signal. No signal is sent
during a symbol's warm-up (`FeatureConfig.warmup_bars()`, 64 one-minute bars by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.ai_engine.bundle_errors import BundleError, EnsembleMismatch, FeatureMismatch
from agents.ai_engine.config import FEATURE_VERSION, TRAINED_MODELS, AIEngineConfig
from agents.ai_engine.ensemble import Calibrator, pool
from agents.ai_engine.features import FeatureRow, SymbolFeatures, bar_from_kline
from agents.ai_engine.model import Signal, Vote, direction_of
from agents.ai_engine.models import Model, build_models
from quantum.errors import InvalidRecord

if TYPE_CHECKING:
    from agents.ai_engine.bundle import ModelBundle


@dataclass(slots=True)
class SymbolState:
    """What the engine remembers about one symbol (its feature state)."""

    features: SymbolFeatures

    def to_snapshot(self) -> dict[str, Any]:
        return {"features": self.features.to_snapshot()}


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one kline: the signal (None in warm-up or on a repeat) and the feature
    row it was computed from (the regime detector's input)."""

    signal: Signal | None
    row: FeatureRow | None
    repeated: bool


class SignalEngine:
    """The configured models and ensemble; `step` is the per-bar entry point."""

    def __init__(self, config: AIEngineConfig, bundle: ModelBundle | None = None) -> None:
        self.config = config
        names = config.features.names()
        if bundle is not None:
            found_v = int(bundle.meta.get("feature_version", -1))
            if bundle.feature_names != names or found_v != FEATURE_VERSION:
                raise FeatureMismatch(names, bundle.feature_names, FEATURE_VERSION, found_v)
            if "cnn" in config.models and bundle.nets.seq_len + 1 > config.features.history_length:
                raise BundleError(
                    f"the CNN in bundle {bundle.bundle_id} reads {bundle.nets.seq_len} returns; "
                    f"history_length {config.features.history_length} is too short"
                )
        self.models: list[Model] = build_models(config, bundle)
        self.weights = tuple(config.weights)
        self.calibrator, calibrated = self._calibrator(config, bundle)
        if TRAINED_MODELS.intersection(config.models):
            from agents.ai_engine.models.nets import configure_torch

            configure_torch(config.threads)
        uses_bundle = bundle is not None and (config.needs_bundle or calibrated)
        self.model_id = (
            f"ensemble@{bundle.bundle_id}"
            if uses_bundle and bundle is not None
            else "rules:" + "+".join(config.models)
        )

    @staticmethod
    def _calibrator(config: AIEngineConfig, bundle: ModelBundle | None) -> tuple[Calibrator, bool]:
        """(calibrator, whether it is the bundle's)."""
        if bundle is None:
            return Calibrator(), False
        same = (bundle.ensemble_models, bundle.ensemble_weights) == (config.models, config.weights)
        if same:
            return bundle.calibrator(), True
        if config.needs_bundle and config.calibration_required:
            raise EnsembleMismatch(
                f"the calibrator in bundle {bundle.bundle_id} was fitted for models "
                f"{list(bundle.ensemble_models)} with weights {list(bundle.ensemble_weights)}, "
                f"not {list(config.models)} with {list(config.weights)}: retrain with this "
                "config or set calibration_required = false"
            )
        return Calibrator(), False

    # ---- state -----------------------------------------------------------------------

    def new_state(self, symbol: str) -> SymbolState:
        return SymbolState(SymbolFeatures(self.config.features, symbol))

    def restore(self, snapshot: Mapping[str, Any]) -> SymbolState:
        """A state from `SymbolState.to_snapshot()` (ValueError if written for other features)."""
        return SymbolState(SymbolFeatures.from_snapshot(self.config.features, snapshot["features"]))

    # ---- per bar ---------------------------------------------------------------------

    def step(self, state: SymbolState, kline: Mapping[str, Any]) -> Step:
        """Fold one closed kline (a `market.ticks` record) into `state`; InvalidRecord if bad.

        An end-of-stream marker is not a kline: the shell forwards it (ValueError here)."""
        if kline.get("end_of_stream") is not None:
            raise ValueError("an end-of-stream marker is not a kline; the shell forwards it")
        bar = bar_from_kline(kline)
        before = state.features.count
        row = state.features.update(bar)
        if state.features.count == before:
            return Step(signal=None, row=None, repeated=True)
        if row is None:
            return Step(signal=None, row=None, repeated=False)
        try:
            price = Decimal(str(kline["close"]))
        except InvalidOperation:
            raise InvalidRecord("INVALID_VALUE", f"field 'close' = {kline['close']!r}") from None
        votes = self.votes(row)
        raw, p = self.combine(votes)
        interval = kline.get("interval", "")
        signal = Signal(
            signal_id=f"sig:{bar.symbol}:{interval}:{bar.open_time_ms}",
            symbol=bar.symbol,
            event_time_ms=bar.close_time_ms,
            direction=direction_of(p, self.config.signal_band),
            probability=p,
            confidence=max(p, 1.0 - p),
            raw_probability=raw,
            model=self.model_id,
            price=price,
            votes=votes,
        )
        return Step(signal=signal, row=row, repeated=False)

    def votes(self, row: FeatureRow) -> tuple[Vote, ...]:
        features = row.array()
        history = np.asarray(row.closes, dtype=np.float64)
        out = []
        for model, weight in zip(self.models, self.weights, strict=True):
            v = model.predict(features, history)
            out.append(Vote(v.model, v.direction, v.probability, weight))
        return tuple(out)

    def combine(self, votes: tuple[Vote, ...]) -> tuple[float, float]:
        """(pooled P(up), calibrated P(up)) of the votes."""
        probs = np.array([[v.probability for v in votes]])
        raw = pool(probs, [v.weight for v in votes])
        p = float(self.calibrator.apply(raw)[0])
        return float(raw[0]), min(max(p, 0.0), 1.0)  # np.clip's result, without its call

    def probabilities(
        self, features: np.ndarray, closes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Batch form for evaluation: (per-model P(up) (n, m), calibrated ensemble P(up) (n,))."""
        per_model = np.column_stack([m.predict_proba(features, closes) for m in self.models])
        return per_model, np.clip(self.calibrator.apply(pool(per_model, self.weights)), 0.0, 1.0)
