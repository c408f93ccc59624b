"""A deterministic generator of realistic synthetic 1-minute klines for many symbols.

Why synthetic: the project builds and tests without the network, and a backtest needs
data whose properties are known. What makes it realistic enough to test a strategy on:

- **regimes**: a market-wide two-state Markov chain. TREND: every symbol drifts (mostly
  the same way, some against it) by a fraction of its own volatility per minute. CHOP: no
  drift, prices revert toward where the chop began (an Ornstein-Uhlenbeck pull).
- **volatility clustering**: GARCH(1,1) variance, one for the market factor and one per
  symbol, with unit long-run mean; a jump feeds the next minutes' variance too.
- **correlation**: each symbol's shock is `beta * market + sqrt(1 - beta^2) * own`, so two
  symbols correlate by about beta_a * beta_b.
- **gaps and jumps**: rare market-wide and per-symbol jumps, applied at the bar's open, so
  the open differs from the previous close (a gap a stop order can be jumped over).
- **volume** grows with the current volatility and the bar's move, and triples on jumps;
  trade counts and taker-buy volume follow from it.
- **exchange precision**: prices are whole ticks and volumes whole steps of the symbol's
  Binance USD-M PRICE_FILTER / LOT_SIZE values.

Determinism: every random number is drawn up front from one seeded numpy `Generator`
(PCG64) in a fixed order, and the path uses only +, -, *, /, sqrt, floor, ceil and rint
on float64 (IEEE-exact), so the same seed and parameters give the same bytes with the
same numpy. Output is Binance's kline CSV layout with a header row, optionally zipped
like Binance's archives (fixed zip timestamps, so the zip bytes are stable too).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from quantum.marketdata.model import Kline, KlineSource

MINUTE_MS = 60_000
DAY_MINUTES = 1_440
CHOP, TREND = 0, 1
# A jump of this size raises the next minute's GARCH shock by one standard deviation:
# a 1 % gap roughly doubles volatility for the following hour, no more.
JUMP_SHOCK_SCALE = 0.004
BINANCE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One symbol's starting point and character.

    price: first open; tick / step: Binance USD-M PRICE_FILTER.tickSize and
    LOT_SIZE.stepSize (the decimals its prices and volumes are written with);
    vol: standard deviation of a one-minute return at average volatility (annualised
    volatility / sqrt(525,600)); beta: loading on the market factor (0..1);
    volume: mean base-asset volume per minute; trade_size: mean base-asset size of a trade.
    """

    symbol: str
    price: Decimal
    tick: Decimal
    step: Decimal
    vol: float
    beta: float
    volume: float
    trade_size: float


# Price levels of early 2026; ticks and steps as Binance USD-M lists them (exchangeInfo).
# Per-minute volatility from typical annualised volatility (BTC ~50 %, alts 65-95 %).
DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = tuple(
    SymbolSpec(sym, Decimal(p), Decimal(t), Decimal(q), vol, beta, volume, size)
    for sym, p, t, q, vol, beta, volume, size in (
        # symbol, first price, tickSize, stepSize, vol/minute, beta, volume/minute, trade size
        ("BTCUSDT", "95000.0", "0.1", "0.001", 0.00069, 0.85, 110.0, 0.05),
        ("ETHUSDT", "3300.00", "0.01", "0.001", 0.00090, 0.85, 2600.0, 1.2),
        ("SOLUSDT", "190.00", "0.01", "0.01", 0.00115, 0.78, 21000.0, 9.0),
        ("BNBUSDT", "700.00", "0.01", "0.01", 0.00062, 0.72, 900.0, 0.6),
        ("XRPUSDT", "2.3000", "0.0001", "0.1", 0.00117, 0.68, 1500000.0, 900.0),
        ("DOGEUSDT", "0.33000", "0.00001", "1", 0.00131, 0.72, 9000000.0, 6000.0),
        ("ADAUSDT", "0.9500", "0.0001", "1", 0.00117, 0.72, 2100000.0, 1500.0),
        ("AVAXUSDT", "38.000", "0.001", "1", 0.00124, 0.74, 40000.0, 30.0),
        ("LINKUSDT", "22.000", "0.001", "0.01", 0.00117, 0.74, 52000.0, 40.0),
        ("LTCUSDT", "105.00", "0.01", "0.001", 0.00097, 0.70, 8000.0, 6.0),
    )
)  # fmt: skip
SPECS_BY_SYMBOL = {s.symbol: s for s in DEFAULT_SYMBOLS}


class GeneratorConfig(BaseModel):
    """Parameters of the synthetic market (per-minute units; defaults give 1-minute bars
    that look like 2025-26 crypto futures).

    market_garch / symbol_garch: (alpha, beta) of the GARCH(1,1) variance of the market
        factor / of each symbol's own shock; alpha + beta = 0.99 means shocks to volatility
        die out with a half-life of ~70 minutes (clustering lasts hours, as on 1m crypto).
    trend_minutes / chop_minutes: mean length of a TREND / CHOP regime (240 / 360: a few
        switches a day, so three days hold both several times).
    trend_drift: drift per minute in a trend, as a fraction of the symbol's vol (0.08:
        about 1.3 % over four hours for BTC, visible but noisy).
    trend_against: chance that a symbol trends against the market in a trend regime.
    chop_pull: per-minute pull toward the chop's starting price (0.03: half-life ~23 min).
    trend_vol / chop_vol: volatility multipliers of the two regimes.
    market_jumps_per_day / symbol_jumps_per_day: mean count of jumps (gaps at the open).
    jump_size: (min, max) absolute size of a jump as a return (0.3-1.2 %: several
        times a minute's volatility, a gap that jumps a tight stop).
    wick: how far highs and lows reach beyond open/close, in current vols.
    """

    model_config = ConfigDict(frozen=True)

    market_garch: tuple[float, float] = (0.06, 0.93)
    symbol_garch: tuple[float, float] = (0.05, 0.94)
    trend_minutes: float = Field(240.0, gt=1)
    chop_minutes: float = Field(360.0, gt=1)
    trend_drift: float = Field(0.08, ge=0)
    trend_against: float = Field(0.15, ge=0, le=1)
    chop_pull: float = Field(0.03, ge=0, lt=1)
    trend_vol: float = Field(1.15, gt=0)
    chop_vol: float = Field(0.80, gt=0)
    market_jumps_per_day: float = Field(1.0, ge=0)
    symbol_jumps_per_day: float = Field(0.5, ge=0)
    jump_size: tuple[float, float] = (0.003, 0.012)
    wick: float = Field(0.6, ge=0)


def _decimals(unit: Decimal) -> tuple[int, int]:
    """(integer multiplier, decimals) with unit = multiplier * 10**-decimals."""
    sign, digits, exponent = unit.normalize().as_tuple()
    assert isinstance(exponent, int) and sign == 0
    mult = int("".join(map(str, digits)))
    if exponent >= 0:
        return mult * 10**exponent, 0
    return mult, -exponent


def _fmt(units: int, mult: int, decimals: int) -> str:
    """The decimal string of `units` whole ticks/steps (exact integer arithmetic)."""
    q = units * mult
    if decimals == 0:
        return str(q)
    head, tail = divmod(q, 10**decimals)
    return f"{head}.{tail:0{decimals}d}"


def _div_round(num: int, den: int) -> int:
    """num / den rounded half up, in integers."""
    return (2 * num + den) // (2 * den)


@dataclass(frozen=True)
class SyntheticMarket:
    """A generated market: per minute (rows) and symbol (columns), prices in whole ticks,
    volumes in whole steps; `regime` per minute (CHOP=0, TREND=1); `jump` where a bar
    opened with a gap."""

    symbols: tuple[SymbolSpec, ...]
    start_ms: int
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    taker_buy: np.ndarray
    trades: np.ndarray
    regime: np.ndarray
    jump: np.ndarray

    @property
    def minutes(self) -> int:
        return int(self.close.shape[0])

    def column(self, symbol: str) -> int:
        for i, spec in enumerate(self.symbols):
            if spec.symbol == symbol:
                return i
        raise KeyError(symbol)

    def close_prices(self, symbol: str) -> np.ndarray:
        """Closes as floats (for statistics; the CSV and klines carry exact decimals)."""
        i = self.column(symbol)
        return self.close[:, i] * float(self.symbols[i].tick)

    def csv_lines(self, symbol: str) -> Iterator[str]:
        """Binance kline CSV lines (header first), without newlines."""
        i = self.column(symbol)
        spec = self.symbols[i]
        pm, pd = _decimals(spec.tick)
        vm, vd = _decimals(spec.step)
        qd = 4  # decimals of the quote volumes
        scale, quote_den = 10**qd, 4 * 10 ** (vd + pd)  # volume * (o+h+l+c) / 4, qd decimals
        yield BINANCE_HEADER
        o, h, lo, c = self.open[:, i], self.high[:, i], self.low[:, i], self.close[:, i]
        v, tb, n = self.volume[:, i], self.taker_buy[:, i], self.trades[:, i]
        for t in range(self.minutes):
            ot = self.start_ms + t * MINUTE_MS
            ohlc = int(o[t] + h[t] + lo[t] + c[t]) * pm * scale
            quote = _fmt(_div_round(int(v[t]) * vm * ohlc, quote_den), 1, qd)
            taker_quote = _fmt(_div_round(int(tb[t]) * vm * ohlc, quote_den), 1, qd)
            yield (
                f"{ot},{_fmt(int(o[t]), pm, pd)},{_fmt(int(h[t]), pm, pd)},"
                f"{_fmt(int(lo[t]), pm, pd)},{_fmt(int(c[t]), pm, pd)},{_fmt(int(v[t]), vm, vd)},"
                f"{ot + MINUTE_MS - 1},{quote},{int(n[t])},{_fmt(int(tb[t]), vm, vd)},"
                f"{taker_quote},0"
            )

    def csv_text(self, symbol: str) -> str:
        return "\n".join(self.csv_lines(symbol)) + "\n"

    def klines(self, symbol: str, source: KlineSource = KlineSource.SAMPLE) -> Iterator[Kline]:
        """The same bars as `Kline`s (what a replay of the written files yields)."""
        i = self.column(symbol)
        spec = self.symbols[i]
        for t in range(self.minutes):
            ot = self.start_ms + t * MINUTE_MS
            yield Kline(
                symbol=spec.symbol,
                interval="1m",
                open_time=ot,
                close_time=ot + MINUTE_MS - 1,
                open=Decimal(int(self.open[t, i])) * spec.tick,
                high=Decimal(int(self.high[t, i])) * spec.tick,
                low=Decimal(int(self.low[t, i])) * spec.tick,
                close=Decimal(int(self.close[t, i])) * spec.tick,
                volume=Decimal(int(self.volume[t, i])) * spec.step,
                trades=int(self.trades[t, i]),
                source=source,
            )

    def write(self, out_dir: Path, label: str, *, compress: bool = True) -> list[Path]:
        """One `<SYMBOL>-1m-<label>.csv` per symbol, or a `.zip` holding it (Binance's
        archive layout); returns the paths written."""
        out_dir.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for spec in self.symbols:
            name = f"{spec.symbol}-1m-{label}.csv"
            data = self.csv_text(spec.symbol).encode()
            if compress:
                path = out_dir / (name[:-4] + ".zip")
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with zipfile.ZipFile(path, "w") as archive:
                    archive.writestr(info, data, compresslevel=9)
            else:
                path = out_dir / name
                path.write_bytes(data)
            written.append(path)
        return written


def generate(
    *,
    start_ms: int,
    minutes: int,
    seed: int,
    symbols: Sequence[SymbolSpec] = DEFAULT_SYMBOLS,
    config: GeneratorConfig | None = None,
) -> SyntheticMarket:
    """Generate `minutes` one-minute bars for `symbols` from `start_ms` (a whole minute)."""
    cfg = config or GeneratorConfig()
    if minutes < 1:
        raise ValueError(f"minutes must be >= 1, got {minutes}")
    if start_ms % MINUTE_MS:
        raise ValueError(f"start_ms {start_ms} is not on a whole minute")
    if not symbols or len({s.symbol for s in symbols}) != len(symbols):
        raise ValueError("symbols must be non-empty and distinct")
    n, k = minutes, len(symbols)
    rng = np.random.default_rng(seed)

    # Every draw up front, in a fixed order: the path below consumes no randomness.
    z_market = rng.standard_normal(n)
    z_own = rng.standard_normal((n, k))
    u_regime = rng.random(n)
    u_direction = rng.random(n)
    u_against = rng.random((n, k))
    strength = rng.uniform(0.5, 1.5, n)
    u_market_jump = rng.random(n)
    market_jump = rng.uniform(*cfg.jump_size, n) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
    u_own_jump = rng.random((n, k))
    own_jump = rng.uniform(*cfg.jump_size, (n, k)) * np.where(rng.random((n, k)) < 0.5, -1.0, 1.0)
    wick_up = np.abs(rng.standard_normal((n, k)))
    wick_down = np.abs(rng.standard_normal((n, k)))
    volume_noise = rng.lognormal(-0.06125, 0.35, (n, k))  # mean 1
    trade_noise = rng.lognormal(-0.02, 0.2, (n, k))
    taker_noise = rng.standard_normal((n, k))

    tick = np.array([float(s.tick) for s in symbols])
    step = np.array([float(s.step) for s in symbols])
    vol = np.array([s.vol for s in symbols])
    beta = np.array([s.beta for s in symbols])
    own_share = np.sqrt(1.0 - beta * beta)
    base_volume = np.array([s.volume for s in symbols])
    trade_size = np.array([s.trade_size for s in symbols])
    p_market_jump = cfg.market_jumps_per_day / DAY_MINUTES
    p_own_jump = cfg.symbol_jumps_per_day / DAY_MINUTES
    ma, mb = cfg.market_garch
    sa, sb = cfg.symbol_garch

    out_open = np.empty((n, k), dtype=np.int64)
    out_high = np.empty((n, k), dtype=np.int64)
    out_low = np.empty((n, k), dtype=np.int64)
    out_close = np.empty((n, k), dtype=np.int64)
    out_volume = np.empty((n, k), dtype=np.int64)
    out_taker = np.empty((n, k), dtype=np.int64)
    out_trades = np.empty((n, k), dtype=np.int64)
    out_regime = np.empty(n, dtype=np.int8)
    out_jump = np.zeros((n, k), dtype=bool)

    close = np.array([float(s.price / s.tick) for s in symbols])  # in ticks
    regime = CHOP
    anchor = close.copy()
    direction = np.zeros(k)
    h_market, h_own = 1.0, np.ones(k)
    for t in range(n):
        # Regime switch (the first minute keeps CHOP).
        if t > 0:
            if regime == TREND and u_regime[t] < 1.0 / cfg.trend_minutes:
                regime, anchor = CHOP, close.copy()
            elif regime == CHOP and u_regime[t] < 1.0 / cfg.chop_minutes:
                regime = TREND
                sign = 1.0 if u_direction[t] < 0.5 else -1.0
                against = np.where(u_against[t] < cfg.trend_against, -1.0, 1.0)
                direction = sign * against * strength[t]
        regime_vol = cfg.trend_vol if regime == TREND else cfg.chop_vol

        # Gaps: jumps happen between the previous close and this open.
        gap = np.zeros(k)
        market_gap = market_jump[t] if u_market_jump[t] < p_market_jump else 0.0
        gap += market_gap * beta / 0.75
        own_hit = u_own_jump[t] < p_own_jump
        gap += np.where(own_hit, own_jump[t], 0.0)
        jumped = gap != 0.0
        open_ = np.where(jumped, np.maximum(1.0, np.rint(close * (1.0 + gap))), close)

        # This minute's return: regime drift + correlated GARCH shocks.
        sd_market, sd_own = np.sqrt(h_market), np.sqrt(h_own)
        shock = vol * regime_vol * (beta * sd_market * z_market[t] + own_share * sd_own * z_own[t])
        if regime == TREND:
            drift = direction * cfg.trend_drift * vol
        else:
            drift = -cfg.chop_pull * (open_ / anchor - 1.0)
        ret = drift + shock
        new_close = np.maximum(1.0, np.rint(open_ * (1.0 + ret)))

        # Wicks, in the bar's current volatility.
        bar_sd = vol * regime_vol * np.sqrt(beta * beta * h_market + own_share * own_share * h_own)
        top = np.maximum(open_, new_close)
        bottom = np.minimum(open_, new_close)
        high = np.maximum(top, np.ceil(top * (1.0 + cfg.wick * bar_sd * wick_up[t])))
        low = np.minimum(
            bottom, np.maximum(1.0, np.floor(bottom * (1.0 - cfg.wick * bar_sd * wick_down[t])))
        )

        # Volume follows volatility and the size of the move; jumps triple it.
        activity = bar_sd / vol
        move = np.abs(ret) / bar_sd
        volume = base_volume * activity * np.sqrt(activity) * volume_noise[t] * (0.6 + 0.4 * move)
        volume = np.where(jumped, 3.0 * volume, volume)
        volume_steps = np.maximum(1.0, np.rint(volume / step))
        buy_share = np.clip(0.5 + 0.15 * ret / bar_sd + 0.05 * taker_noise[t], 0.05, 0.95)
        taker_steps = np.minimum(volume_steps, np.rint(volume_steps * buy_share))
        trades = np.maximum(1.0, np.rint(volume_steps * step / trade_size * trade_noise[t]))

        out_open[t], out_high[t], out_low[t], out_close[t] = open_, high, low, new_close
        out_volume[t], out_taker[t], out_trades[t] = volume_steps, taker_steps, trades
        out_regime[t], out_jump[t] = regime, jumped

        # Next minute's variances (GARCH(1,1), unit long-run mean); a gap is a shock too.
        e_market = sd_market * z_market[t] + market_gap / JUMP_SHOCK_SCALE
        e_own = sd_own * z_own[t] + np.where(own_hit, own_jump[t] / JUMP_SHOCK_SCALE, 0.0)
        h_market = (1.0 - ma - mb) + ma * e_market * e_market + mb * h_market
        h_own = (1.0 - sa - sb) + sa * e_own * e_own + sb * h_own
        close = new_close

    del tick  # prices stay in ticks; `SymbolSpec.tick` turns them into decimals
    return SyntheticMarket(
        symbols=tuple(symbols),
        start_ms=start_ms,
        open=out_open,
        high=out_high,
        low=out_low,
        close=out_close,
        volume=out_volume,
        taker_buy=out_taker,
        trades=out_trades,
        regime=out_regime,
        jump=out_jump,
    )


# ---- the bundled sample -----------------------------------------------------------------

SAMPLE_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SAMPLE_DAYS = 3
SAMPLE_SEED = 7
SAMPLE_LABEL = "sample"


def sample_market() -> SyntheticMarket:
    """The market behind data/sample: 3 days of 1-minute bars of the 10 default symbols."""
    return generate(start_ms=SAMPLE_START_MS, minutes=SAMPLE_DAYS * DAY_MINUTES, seed=SAMPLE_SEED)


def write_sample(out_dir: Path) -> list[Path]:
    """(Re)write the bundled sample: one Binance-style zip per symbol."""
    return sample_market().write(out_dir, SAMPLE_LABEL, compress=True)
