"""AI engine parameters: the features, which models vote and with what weight, each model's
knobs, training."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Version of the feature *formulae*. The names carry the parameters (`ret_15`, `adx_14`);
# this number changes when a formula changes under an unchanged name, so trained weights
# are refused by both checks (names and version).
FEATURE_VERSION = 1


class FeatureConfig(BaseModel):
    """Windows of the per-symbol features (agents/ai_engine/features.py, docs/signals.md).

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


MODEL_NAMES = ("mlp", "cnn", "logistic", "momentum", "mean_reversion", "ma_crossover")
TRAINED_MODELS = frozenset({"mlp", "cnn", "logistic"})


class MomentumConfig(BaseModel):
    """Momentum rule: P(up) = sigmoid(scale * ret_h / (vol_w * sqrt(h))).

    horizon = 15: the return it follows (a `return_horizons` entry); equal to the default
        label horizon, so it bets that the last 15 minutes continue for 15 more.
    vol_window = 60: the volatility that scales it (a `vol_windows` entry): a t-stat-like
        score, comparable across symbols and calm or wild hours.
    scale = 1.0: a one-sigma move gives P(up) = 0.73; calibration re-maps it anyway.
    """

    model_config = ConfigDict(frozen=True)

    horizon: int = Field(15, ge=1)
    vol_window: int = Field(60, ge=2)
    scale: float = Field(1.0, gt=0)


class MeanReversionConfig(BaseModel):
    """Mean-reversion rule: P(up) = sigmoid(-scale * dist_sma_n / (vol_w * sqrt(n))).

    sma_window = 20: the mean it expects the price to return to (a `sma_windows` entry).
    vol_window = 60: scales the distance into sigmas (a `vol_windows` entry).
    scale = 1.0: as for momentum.
    """

    model_config = ConfigDict(frozen=True)

    sma_window: int = Field(20, ge=1)
    vol_window: int = Field(60, ge=2)
    scale: float = Field(1.0, gt=0)


class MACrossoverConfig(BaseModel):
    """Moving-average crossover rule, the baseline every backtest is compared with.

    fast = 10, slow = 30: simple moving averages of the close (bars). LONG on the bar where
        fast crosses above slow, SHORT where it crosses below, HOLD on every other bar.
    probability = 0.75: the P(up) it reports on a LONG crossing (1 - it on a SHORT): a rule
        has no probability of its own; 0.75 clears the selector's default confidence floor
        (0.55), so the baseline trades every crossing when it runs alone.
    """

    model_config = ConfigDict(frozen=True)

    fast: int = Field(10, ge=1)
    slow: int = Field(30, ge=2)
    probability: float = Field(0.75, gt=0.5, le=1.0)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MACrossoverConfig:
        if self.fast >= self.slow:
            raise ValueError(f"ma_crossover.fast ({self.fast}) must be < slow ({self.slow})")
        return self


class NetConfig(BaseModel):
    """Sizes of the two torch models; small on purpose (CPU, per-bar inference, CI training).

    mlp_hidden = (32, 16): the MLP over the standardised feature vector.
    cnn_channels = 8, cnn_kernel = 5: the 1-D CNN over the last `seq_len` 1-bar log returns,
        each divided by their own standard deviation (scale-free across symbols and
        volatility): two causal convolutions (the second dilated by 2), then the mean and
        the last step of each channel into one logit. With a GRU (hidden 16) in its place,
        `quantum train` on 10 x 5,000 bars cost 33 CPU seconds here; with the CNN, 21.
    seq_len = 32: returns the CNN reads (needs history_length >= seq_len + 1).
    """

    model_config = ConfigDict(frozen=True)

    mlp_hidden: tuple[int, ...] = (32, 16)
    cnn_channels: int = Field(8, ge=1)
    cnn_kernel: int = Field(5, ge=2)
    seq_len: int = Field(32, ge=2)


class TrainConfig(BaseModel):
    """`quantum train`: what it learns and how (docs/signals.md).

    label_horizon = 15: label = 1 if close[t + 15] > close[t]: the bar after next 15 minutes,
        short enough for the sample's few days, long enough to be more than noise of one bar.
    train_fraction = 0.6, validation_fraction = 0.2: time-ordered split of the bar times;
        the rest (0.2) is the held-out test set for the metrics and the reliability table.
        A sample whose label reaches into the next part is dropped (purged), so no label
        sees the period it is evaluated on.
    epochs = 8, batch_size = 512, learning_rate = 3e-3, weight_decay = 1e-4: Adam on the
        BCE loss; the epoch with the lowest validation loss is kept.
    logistic_l2 = 1.0: ridge penalty of the logistic regression (Newton/IRLS fit).
    calibration = "isotonic": fitted on the validation part ("platt" for two parameters,
        sturdier on little data; "none" leaves the pooled probability as it is).
    reliability_bins = 10: bins of the reliability table on the test part.
    seed = 7: torch, the batch order and the split are functions of it.
    threads = 1: torch intra-op threads; fixed so results do not depend on the machine.
    """

    model_config = ConfigDict(frozen=True)

    label_horizon: int = Field(15, ge=1)
    train_fraction: float = Field(0.6, gt=0, lt=1)
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(512, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    logistic_l2: float = Field(1.0, ge=0)
    calibration: Literal["isotonic", "platt", "none"] = "isotonic"
    reliability_bins: int = Field(10, ge=2)
    seed: int = 7
    threads: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _fractions(self) -> TrainConfig:
        if self.train_fraction + self.validation_fraction >= 1:
            raise ValueError("train_fraction + validation_fraction must leave a test part")
        return self


class AIEngineConfig(BaseModel):
    """The signal engine (agents/ai_engine/core.py).

    models = the five (mlp, cnn, logistic, momentum, mean_reversion); any of MODEL_NAMES,
        e.g. ("ma_crossover",) alone for the baseline backtest.
    weights = 1 each: weight of each model's log-odds in the pooled probability.
    vote_band = 0.02: a model votes HOLD while its P(up) is within 0.5 +- this.
    signal_band = 0.02: the ensemble signals HOLD while its calibrated P(up) is within it.
    weights_path = "data/models/default": the trained bundle (relative paths resolve
        against the checkout or the installed share dir); needed only when a trained
        model (mlp, cnn, logistic) is configured.
    calibration_required = True: refuse a bundle whose calibrator was fitted for another
        model list or weights (its mapping would be meaningless); False uses the pooled
        probability uncalibrated instead.
    threads = 1: torch intra-op threads at inference (deterministic; per-bar batches of one
        row gain nothing from more).
    """

    model_config = ConfigDict(frozen=True)

    features: FeatureConfig = FeatureConfig()
    models: tuple[str, ...] = ("mlp", "cnn", "logistic", "momentum", "mean_reversion")
    weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    vote_band: float = Field(0.02, ge=0, lt=0.5)
    signal_band: float = Field(0.02, ge=0, lt=0.5)
    weights_path: str = "data/models/default"
    calibration_required: bool = True
    threads: int = Field(1, ge=1)
    momentum: MomentumConfig = MomentumConfig()
    mean_reversion: MeanReversionConfig = MeanReversionConfig()
    ma_crossover: MACrossoverConfig = MACrossoverConfig()
    nets: NetConfig = NetConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _consistent(self) -> AIEngineConfig:
        unknown = [m for m in self.models if m not in MODEL_NAMES]
        if unknown or not self.models or len(set(self.models)) != len(self.models):
            raise ValueError(f"models must be distinct names of {MODEL_NAMES}, got {self.models}")
        if len(self.weights) != len(self.models) or any(w <= 0 for w in self.weights):
            raise ValueError("weights must be one positive number per model")
        f = self.features
        needs = {
            "momentum": (self.momentum.horizon in f.return_horizons)
            and (self.momentum.vol_window in f.vol_windows),
            "mean_reversion": (self.mean_reversion.sma_window in f.sma_windows)
            and (self.mean_reversion.vol_window in f.vol_windows),
            "ma_crossover": f.history_length >= self.ma_crossover.slow + 1,
            "cnn": f.history_length >= self.nets.seq_len + 1,
        }
        missing = [m for m, ok in needs.items() if m in self.models and not ok]
        if missing:
            raise ValueError(f"the feature config lacks a window that {missing} need")
        return self

    @property
    def needs_bundle(self) -> bool:
        return bool(TRAINED_MODELS.intersection(self.models))
