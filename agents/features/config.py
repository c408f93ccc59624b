"""Feature parameters. Every window is in bars of the input interval (1 minute in the sample)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Version of the feature *formulae*. The names carry the parameters (`ret_15`, `adx_14`);
# this number changes when a formula changes under an unchanged name, so trained weights
# are refused by both checks (names and version).
FEATURE_VERSION = 1


class FeatureConfig(BaseModel):
    """Windows of the per-symbol features (agents/features/core.py, docs/signals.md).

    return_horizons = (1, 5, 15, 60): log returns close_t / close_{t-h}; 1 bar to 1 hour of
        1-minute bars, the horizons the momentum literature on intraday crypto uses.
    vol_windows = (15, 60): population std of 1-bar log returns over the last n returns; the
        short/long pair also gives the regime detector its volatility-expansion ratio.
    atr_period = 14: Wilder's ATR, divided by the close (scale-free across symbols);
        14 is Wilder's own period.
    rsi_period = 14: Wilder's RSI, scaled to [0, 1].
    adx_period = 14: Wilder's ADX scaled to [0, 1] and the signed +DI/-DI balance in [-1, 1].
    volume_window = 30: z-score of this bar's volume against the previous 30 bars (this
        bar is not in its own baseline, so a spike is measured against what came before).
    sma_windows = (20, 60): log distance of the close from its simple moving averages.
    history_length = 64: closes kept for the sequence model (its last 32 returns) and the
        moving-average crossover rule (slow length + 1); also the warm-up floor.
    """

    model_config = ConfigDict(frozen=True)

    return_horizons: tuple[int, ...] = (1, 5, 15, 60)
    vol_windows: tuple[int, ...] = (15, 60)
    atr_period: int = Field(14, ge=1)
    rsi_period: int = Field(14, ge=1)
    adx_period: int = Field(14, ge=1)
    volume_window: int = Field(30, ge=2)
    sma_windows: tuple[int, ...] = (20, 60)
    history_length: int = Field(64, ge=2)

    @model_validator(mode="after")
    def _windows_positive(self) -> FeatureConfig:
        for name in ("return_horizons", "vol_windows", "sma_windows"):
            values = getattr(self, name)
            if not values or any(v < 1 for v in values) or len(set(values)) != len(values):
                raise ValueError(f"{name} must be distinct positive integers, got {values}")
        if any(v < 2 for v in self.vol_windows):
            raise ValueError(f"vol_windows need at least 2 returns, got {self.vol_windows}")
        return self

    def names(self) -> tuple[str, ...]:
        """The feature vector's column names, in order: stable for a given config."""
        return (
            *(f"ret_{h}" for h in self.return_horizons),
            *(f"vol_{n}" for n in self.vol_windows),
            f"atr_{self.atr_period}",
            f"rsi_{self.rsi_period}",
            f"adx_{self.adx_period}",
            f"di_{self.adx_period}",
            f"volume_z_{self.volume_window}",
            *(f"dist_sma_{n}" for n in self.sma_windows),
        )

    def warmup_bars(self) -> int:
        """Bars a symbol needs before its first feature row (every window full)."""
        return max(
            max(self.return_horizons) + 1,
            max(self.vol_windows) + 1,
            self.atr_period + 1,
            self.rsi_period + 1,
            2 * self.adx_period,  # n DX values, each from n smoothed bars
            self.volume_window + 1,
            max(self.sma_windows),
            self.history_length,
        )
