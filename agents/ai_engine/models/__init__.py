"""Pluggable models, chosen by name in `AIEngineConfig.models` (see `build_models`).

| name | kind | input |
|---|---|---|
| mlp | torch MLP, trained | standardised feature vector |
| cnn | torch 1-D CNN, trained | last `seq_len` normalised 1-bar returns |
| logistic | logistic regression (numpy), trained | standardised feature vector |
| momentum | rule | ret_h / (vol * sqrt(h)) |
| mean_reversion | rule | -dist_sma_n / (vol * sqrt(n)) |
| ma_crossover | rule, the backtest baseline | fast/slow SMA of the close history |
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.ai_engine.config import AIEngineConfig
from agents.ai_engine.models.base import Model
from agents.ai_engine.models.rules import MACrossover, MeanReversion, Momentum

if TYPE_CHECKING:
    from agents.ai_engine.bundle import ModelBundle


class MissingWeights(ValueError):
    """A trained model is configured but no trained bundle was given."""


def build_models(config: AIEngineConfig, bundle: ModelBundle | None) -> list[Model]:
    """The configured models, in configured order."""
    names = config.features.names()
    band = config.vote_band
    out: list[Model] = []
    for name in config.models:
        if name == "momentum":
            out.append(Momentum(names, config.momentum, band))
        elif name == "mean_reversion":
            out.append(MeanReversion(names, config.mean_reversion, band))
        elif name == "ma_crossover":
            out.append(MACrossover(config.ma_crossover))
        else:
            if bundle is None:
                raise MissingWeights(f"model {name!r} needs trained weights (run `quantum train`)")
            out.append(getattr(bundle, name)(band))
    return out


__all__ = ["MissingWeights", "Model", "build_models"]
