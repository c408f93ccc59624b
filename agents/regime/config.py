"""Regime detector parameters (agents/regime/core.py, docs/signals.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RegimeConfig(BaseModel):
    """When the market counts as trending, choppy or neither, and how sure it must be.

    enabled = True: off, the governor stays in its starting regime (BASE) — a plain strategy
        compared with other engines has no regime.
    bucket_ms = 60_000: the market is judged once per bucket of event time (one 1-minute
        bar of every symbol).
    trend_adx = 0.25: a symbol trends at ADX >= 25 (Wilder's own threshold for a trend).
    chop_adx = 0.20: below ADX 20 a symbol has no direction: chop.
    chop_vol_ratio = 1.5: a symbol whose short volatility is >= 1.5x its long one without
        a trend (ADX < trend_adx) is whipsawing: chop too.
    enter_share = 0.6 / exit_share = 0.4: the market enters TREND_STRONG (or CHOP) when at
        least 60 % of the counted symbols are in it, and leaves only when fewer than 40 %
        are: a hysteresis band, so a market hovering at 50 % does not flap.
    confirm_buckets = 15: a new regime must be the verdict of 15 consecutive buckets before
        it is sent (15 minutes of 1-minute bars): a second guard against flapping. On the
        bundled sample (whose generator knows its true regimes, 16 switches in 3 days) 5
        gave 107 changes, 15 gave 25 and 30 gave 9, with about the same agreement with the
        truth (docs/signals.md has the table).
    stale_buckets = 5: a symbol counts in a bucket if its latest observation is at most
        5 buckets old; a silent symbol stops holding the evaluation back after that.
    min_symbols = 3: fewer counted symbols than this and the bucket is not judged (one
        symbol is not a market).
    symbols = empty: the symbols that make up the market; empty means every symbol seen.
    adx_feature = "adx_14", vol_short_feature = "vol_15", vol_long_feature = "vol_60": the
        feature columns the detector reads (FeatureConfig.names()).
    """

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    bucket_ms: int = Field(60_000, ge=1)
    trend_adx: float = Field(0.25, gt=0, le=1)
    chop_adx: float = Field(0.20, ge=0, le=1)
    chop_vol_ratio: float = Field(1.5, gt=0)
    enter_share: float = Field(0.6, gt=0, le=1)
    exit_share: float = Field(0.4, ge=0, le=1)
    confirm_buckets: int = Field(15, ge=1)
    stale_buckets: int = Field(5, ge=0)
    min_symbols: int = Field(3, ge=1)
    symbols: frozenset[str] = frozenset()
    adx_feature: str = "adx_14"
    vol_short_feature: str = "vol_15"
    vol_long_feature: str = "vol_60"

    @model_validator(mode="after")
    def _ordered(self) -> RegimeConfig:
        if self.chop_adx > self.trend_adx:
            raise ValueError("chop_adx must be <= trend_adx")
        if self.exit_share > self.enter_share:
            raise ValueError("exit_share must be <= enter_share (hysteresis)")
        return self
