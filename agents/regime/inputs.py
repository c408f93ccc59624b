"""Regime inputs from the AI engine's feature rows (not part of the pure core, which only
sees `RegimeObservation`s; a shell that runs the engine calls this per bar)."""

from __future__ import annotations

from collections.abc import Sequence

from agents.ai_engine.features import FeatureRow
from agents.regime.config import RegimeConfig
from agents.regime.model import RegimeObservation


class RegimeInputs:
    """Reads the configured ADX and volatility columns out of a feature row."""

    def __init__(self, config: RegimeConfig, names: Sequence[str]) -> None:
        names = tuple(names)
        wanted = (config.adx_feature, config.vol_short_feature, config.vol_long_feature)
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ValueError(f"regime features {missing} are not in the feature list {names}")
        self._adx, self._short, self._long = (names.index(n) for n in wanted)

    def observation(self, row: FeatureRow) -> RegimeObservation:
        short, long_ = row.values[self._short], row.values[self._long]
        return RegimeObservation(
            symbol=row.symbol,
            event_time_ms=row.close_time_ms,
            trend_strength=row.values[self._adx],
            vol_ratio=short / long_ if long_ > 0 else 1.0,
        )
