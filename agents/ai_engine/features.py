"""Per-symbol features from closed klines, one bar at a time.

The same `SymbolFeatures.update` runs live (one bar per call, state persisted between
calls as a JSON-safe snapshot) and in replay or training (`compute_batch` is a loop over
it), so both see bit-identical numbers. Features at bar t use bars <= t only.

Work per bar is O(1): every rolling window is a fixed-length deque with running sums and
every Wilder average a recursion, so bar ten million costs what bar ten does. A window
re-sums its deque exactly (`math.fsum`) once every `n` pushes, so running sums cannot
drift however long a live run goes, at O(1) amortised cost.

A bar whose open time is not after the last one seen is a redelivery (per-symbol order
is the partition's order): it changes nothing and yields no row. A bar whose values make
no sense raises `InvalidRecord`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.ai_engine.config import FEATURE_VERSION, FeatureConfig
from quantum.errors import InvalidRecord

SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed kline as the features see it (prices as floats: features are statistics)."""

    symbol: str
    open_time_ms: int
    close_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """The feature vector of one symbol at one bar, with the closes the models look back on.

    `values` follow `FeatureConfig.names()`; `closes` are the last `history_length` closes,
    oldest first, ending with this bar's.
    """

    symbol: str
    open_time_ms: int
    close_time_ms: int
    close: float
    values: tuple[float, ...]
    closes: tuple[float, ...]

    def array(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64)


def _positive(value: Any, name: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidRecord(
            "INVALID_VALUE", f"field '{name}' = {value!r} is not a number"
        ) from None
    if not math.isfinite(x) or x <= 0:
        raise InvalidRecord("INVALID_VALUE", f"field '{name}' = {value!r} must be finite and > 0")
    return x


def bar_from_kline(kline: Mapping[str, Any]) -> Bar:
    """A `Bar` from a `market.ticks` record (decimal strings); InvalidRecord if it is nonsense."""
    try:
        symbol = str(kline["symbol"])
        open_time = int(kline["open_time"])
        close_time = int(kline["close_time"])
        raw = {k: kline[k] for k in ("open", "high", "low", "close", "volume")}
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRecord("INVALID_VALUE", f"kline is malformed: {exc!r}") from None
    o, h, lo, c = (_positive(raw[k], k) for k in ("open", "high", "low", "close"))
    try:
        volume = float(raw["volume"])
    except (TypeError, ValueError):
        volume = math.nan
    if not math.isfinite(volume) or volume < 0:
        raise InvalidRecord("INVALID_VALUE", f"field 'volume' = {raw['volume']!r} must be >= 0")
    if h < max(o, c, lo) or lo > min(o, c):
        raise InvalidRecord(
            "INVALID_VALUE",
            f"field 'high'/'low' = {raw['high']!r}/{raw['low']!r} do not bound the bar",
        )
    if close_time < open_time:
        raise InvalidRecord("INVALID_VALUE", "field 'close_time' is before open_time")
    return Bar(symbol, open_time, close_time, o, h, lo, c, volume)


class _Window:
    """The last n values with their running sum and sum of squares."""

    __slots__ = ("n", "pushes", "squares", "total", "values")

    def __init__(self, n: int) -> None:
        self.n = n
        self.values: deque[float] = deque(maxlen=n)
        self.total = 0.0
        self.squares = 0.0
        self.pushes = 0

    def push(self, x: float) -> None:
        if len(self.values) == self.n:
            old = self.values[0]
            self.total -= old
            self.squares -= old * old
        self.values.append(x)
        self.total += x
        self.squares += x * x
        self.pushes += 1
        if self.pushes % self.n == 0:  # exact re-sum now and then: no drift, O(1) amortised
            self.total = math.fsum(self.values)
            self.squares = math.fsum(v * v for v in self.values)

    @property
    def full(self) -> bool:
        return len(self.values) == self.n

    def mean(self) -> float:
        return self.total / self.n

    def std(self) -> float:
        """Population std; 0 when the variance is within rounding of the values' magnitude."""
        mean_sq = self.squares / self.n
        var = mean_sq - (self.total / self.n) ** 2
        return math.sqrt(var) if var > 1e-10 * mean_sq else 0.0

    def to_json(self) -> list[Any]:
        return [list(self.values), self.total, self.squares, self.pushes]

    def load(self, data: list[Any]) -> None:
        self.values.extend(float(x) for x in data[0])
        self.total, self.squares, self.pushes = float(data[1]), float(data[2]), int(data[3])


class _Wilder:
    """Wilder's average: the mean of the first n inputs, then avg += (x - avg) / n."""

    __slots__ = ("count", "n", "seed", "value")

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.seed = 0.0
        self.value = 0.0

    def push(self, x: float) -> bool:
        """Add one input; True once the average is defined."""
        if self.count < self.n:
            self.count += 1
            self.seed += x
            if self.count == self.n:
                self.value = self.seed / self.n
            return self.count == self.n
        self.value = (self.value * (self.n - 1) + x) / self.n
        return True

    @property
    def ready(self) -> bool:
        return self.count >= self.n

    def to_json(self) -> list[float]:
        return [self.count, self.seed, self.value]

    def load(self, data: list[float]) -> None:
        self.count, self.seed, self.value = int(data[0]), float(data[1]), float(data[2])


class SymbolFeatures:
    """The feature state of one symbol. Mutable for speed; a snapshot restores it exactly."""

    def __init__(self, config: FeatureConfig, symbol: str) -> None:
        self.config = config
        self.symbol = symbol
        self.names = config.names()
        c = config
        keep = max(max(c.return_horizons) + 1, c.history_length)
        self.count = 0
        self.last_open_time: int | None = None
        self.prev_high = 0.0
        self.prev_low = 0.0
        self.closes: deque[float] = deque(maxlen=keep)
        self.vols = [_Window(n) for n in c.vol_windows]  # 1-bar log returns
        self.smas = [_Window(n) for n in c.sma_windows]  # closes
        self.volume = _Window(c.volume_window)  # volumes of the bars before this one
        self.atr = _Wilder(c.atr_period)
        self.gain = _Wilder(c.rsi_period)
        self.loss = _Wilder(c.rsi_period)
        self.tr = _Wilder(c.adx_period)
        self.pdm = _Wilder(c.adx_period)
        self.mdm = _Wilder(c.adx_period)
        self.adx = _Wilder(c.adx_period)
        self.di = 0.0

    @property
    def ready(self) -> bool:
        return self.count >= self.config.warmup_bars()

    def update(self, bar: Bar) -> FeatureRow | None:
        """Fold one closed bar in; its feature row once warmed up, None before (or on a repeat)."""
        if bar.symbol != self.symbol:
            raise InvalidRecord(
                "INVALID_VALUE", f"bar of {bar.symbol} given to the features of {self.symbol}"
            )
        if self.last_open_time is not None and bar.open_time_ms <= self.last_open_time:
            return None
        c = self.config
        if self.closes:
            prev_close = self.closes[-1]
            ret = math.log(bar.close / prev_close)
            for w in self.vols:
                w.push(ret)
            tr = max(bar.high - bar.low, abs(bar.high - prev_close), abs(bar.low - prev_close))
            self.atr.push(tr)
            change = bar.close - prev_close
            self.gain.push(max(change, 0.0))
            self.loss.push(max(-change, 0.0))
            up, down = bar.high - self.prev_high, self.prev_low - bar.low
            self.tr.push(tr)
            self.pdm.push(up if up > down and up > 0 else 0.0)
            if self.mdm.push(down if down > up and down > 0 else 0.0):
                pdi, mdi = self._di()
                total = pdi + mdi
                self.di = (pdi - mdi) / total if total > 0 else 0.0
                self.adx.push(abs(pdi - mdi) / total if total > 0 else 0.0)
        self.closes.append(bar.close)
        for w in self.smas:
            w.push(bar.close)
        volume_z = 0.0
        if self.volume.full:  # against the bars before this one, then this one joins them
            std = self.volume.std()
            volume_z = (bar.volume - self.volume.mean()) / std if std > 0 else 0.0
        self.volume.push(bar.volume)
        self.prev_high, self.prev_low = bar.high, bar.low
        self.last_open_time = bar.open_time_ms
        self.count += 1
        if not self.ready:
            return None
        return FeatureRow(
            symbol=self.symbol,
            open_time_ms=bar.open_time_ms,
            close_time_ms=bar.close_time_ms,
            close=bar.close,
            values=self._values(bar, volume_z),
            closes=tuple(self.closes)[-c.history_length :],
        )

    def _di(self) -> tuple[float, float]:
        tr = self.tr.value
        if tr <= 0:
            return 0.0, 0.0
        return self.pdm.value / tr, self.mdm.value / tr

    def _values(self, bar: Bar, volume_z: float) -> tuple[float, ...]:
        closes = self.closes
        close = bar.close
        out: list[float] = [math.log(close / closes[-1 - h]) for h in self.config.return_horizons]
        out.extend(w.std() for w in self.vols)
        out.append(self.atr.value / close)
        gain, loss = self.gain.value, self.loss.value
        out.append(gain / (gain + loss) if gain + loss > 0 else 0.5)  # = RSI / 100
        out.append(self.adx.value)
        out.append(self.di)
        out.append(volume_z)
        out.extend(math.log(close / w.mean()) for w in self.smas)
        return tuple(out)

    # ---- persistence -----------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        """JSON-safe state (floats round-trip exactly through `json`)."""
        return {
            "v": SNAPSHOT_VERSION,
            "feature_version": FEATURE_VERSION,
            "names": list(self.names),
            "symbol": self.symbol,
            "count": self.count,
            "last_open_time": self.last_open_time,
            "prev": [self.prev_high, self.prev_low],
            "closes": list(self.closes),
            "vols": [w.to_json() for w in self.vols],
            "smas": [w.to_json() for w in self.smas],
            "volume": self.volume.to_json(),
            "wilder": {k: getattr(self, k).to_json() for k in _WILDERS},
            "di": self.di,
        }

    @classmethod
    def from_snapshot(cls, config: FeatureConfig, data: Mapping[str, Any]) -> SymbolFeatures:
        """Restore a state; ValueError if it was written for other features."""
        if data.get("v") != SNAPSHOT_VERSION or data.get("feature_version") != FEATURE_VERSION:
            raise ValueError(
                f"feature snapshot version {data.get('v')}/{data.get('feature_version')}"
            )
        if tuple(data.get("names", ())) != config.names():
            raise ValueError(
                f"feature snapshot names {data.get('names')} != {list(config.names())}"
            )
        state = cls(config, str(data["symbol"]))
        state.count = int(data["count"])
        last = data["last_open_time"]
        state.last_open_time = None if last is None else int(last)
        state.prev_high, state.prev_low = (float(x) for x in data["prev"])
        state.closes.extend(float(x) for x in data["closes"])
        for w, d in zip(state.vols, data["vols"], strict=True):
            w.load(d)
        for w, d in zip(state.smas, data["smas"], strict=True):
            w.load(d)
        state.volume.load(data["volume"])
        for key in _WILDERS:
            getattr(state, key).load(data["wilder"][key])
        state.di = float(data["di"])
        return state


_WILDERS = ("atr", "gain", "loss", "tr", "pdm", "mdm", "adx")


@dataclass(frozen=True, slots=True)
class FeatureMatrix:
    """Features of one symbol over a bar series: row i belongs to bar i; NaN rows before warm-up."""

    symbol: str
    names: tuple[str, ...]
    open_time_ms: np.ndarray  # int64, (n,)
    close: np.ndarray  # float64, (n,)
    values: np.ndarray  # float64, (n, len(names)); NaN where not `ready`
    ready: np.ndarray  # bool, (n,)


def compute_batch(bars: Iterable[Bar], config: FeatureConfig) -> FeatureMatrix:
    """The features of a time-ordered bar series of one symbol, by the live code path.

    Repeated bars are dropped as `update` drops them, so row i is the i-th *new* bar.
    """
    state: SymbolFeatures | None = None
    times: list[int] = []
    closes: list[float] = []
    rows: list[tuple[float, ...] | None] = []
    for bar in bars:
        if state is None:
            state = SymbolFeatures(config, bar.symbol)
        before = state.count
        row = state.update(bar)
        if state.count == before:
            continue
        times.append(bar.open_time_ms)
        closes.append(bar.close)
        rows.append(None if row is None else row.values)
    width = len(config.names())
    values = np.full((len(rows), width), np.nan)
    ready = np.zeros(len(rows), dtype=bool)
    for i, r in enumerate(rows):
        if r is not None:
            values[i] = r
            ready[i] = True
    return FeatureMatrix(
        symbol=state.symbol if state else "",
        names=config.names(),
        open_time_ms=np.asarray(times, dtype=np.int64),
        close=np.asarray(closes, dtype=np.float64),
        values=values,
        ready=ready,
    )
