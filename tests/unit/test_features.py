"""Per-symbol features: live (bar by bar, state through JSON) == batch, formulas against an
independent reference, no look-ahead, redeliveries ignored, bad bars refused."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.ai_engine.config import FeatureConfig
from agents.ai_engine.features import Bar, SymbolFeatures, bar_from_kline, compute_batch
from quantum.errors import InvalidRecord

SMALL = FeatureConfig(
    return_horizons=(1, 3),
    vol_windows=(3, 5),
    atr_period=3,
    rsi_period=3,
    adx_period=3,
    volume_window=4,
    sma_windows=(2, 5),
    history_length=6,
)


def make_bars(n: int, seed: int, symbol: str = "BTCUSDT", *, flat_every: int = 0) -> list[Bar]:
    """A random walk with noisy highs/lows; `flat_every` > 0 inserts flat bars (zero ranges)."""
    rng = np.random.default_rng(seed)
    bars: list[Bar] = []
    price = 100.0
    for i in range(n):
        o = price
        c = o * math.exp(rng.normal(0, 0.01))
        if flat_every and i % flat_every == 0:
            c = o
        h = max(o, c) * (1 + abs(rng.normal(0, 0.003)) * (not (flat_every and i % flat_every == 0)))
        lo = min(o, c) * (
            1 - abs(rng.normal(0, 0.003)) * (not (flat_every and i % flat_every == 0))
        )
        v = float(rng.uniform(0, 50)) if i % 7 else 0.0
        t = 1_767_225_600_000 + i * 60_000  # minute-aligned, like real klines
        bars.append(Bar(symbol, t, t + 59_999, o, h, lo, c, v))
        price = c
    return bars


def test_names_are_stable_and_warmup_covers_every_window() -> None:
    cfg = FeatureConfig()
    assert cfg.names() == (
        "ret_1",
        "ret_5",
        "ret_15",
        "ret_60",
        "vol_15",
        "vol_60",
        "atr_14",
        "rsi_14",
        "adx_14",
        "di_14",
        "volume_z_30",
        "dist_sma_20",
        "dist_sma_60",
    )
    assert cfg.warmup_bars() == 64
    assert SMALL.warmup_bars() == 6


# ---- independent reference: whole-series numpy, no state ------------------------------


def _wilder(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if len(x) < n:
        return out
    out[n - 1] = x[:n].mean()
    for i in range(n, len(x)):
        out[i] = (out[i - 1] * (n - 1) + x[i]) / n
    return out


def reference(bars: list[Bar], cfg: FeatureConfig) -> np.ndarray:
    """Feature matrix recomputed from the whole series by textbook formulas (NaN in warm-up)."""
    _, h, lo, c, v = (
        np.array([getattr(b, k) for b in bars]) for k in ("open", "high", "low", "close", "volume")
    )
    n_bars = len(bars)
    cols: list[np.ndarray] = []
    for k in cfg.return_horizons:
        col = np.full(n_bars, np.nan)
        col[k:] = np.log(c[k:] / c[:-k])
        cols.append(col)
    r = np.log(c[1:] / c[:-1])
    for w in cfg.vol_windows:
        col = np.full(n_bars, np.nan)
        for t in range(w, n_bars):
            col[t] = np.std(r[t - w : t])
        cols.append(col)
    tr = np.maximum.reduce([h[1:] - lo[1:], np.abs(h[1:] - c[:-1]), np.abs(lo[1:] - c[:-1])])
    atr = np.concatenate([[np.nan], _wilder(tr, cfg.atr_period)])
    cols.append(atr / c)
    d = np.diff(c)
    g = np.concatenate([[np.nan], _wilder(np.maximum(d, 0), cfg.rsi_period)])
    ls = np.concatenate([[np.nan], _wilder(np.maximum(-d, 0), cfg.rsi_period)])
    with np.errstate(invalid="ignore", divide="ignore"):
        cols.append(np.where(g + ls > 0, g / (g + ls), 0.5))
    up, down = h[1:] - h[:-1], lo[:-1] - lo[1:]
    pdm = np.where((up > down) & (up > 0), up, 0.0)
    mdm = np.where((down > up) & (down > 0), down, 0.0)
    n = cfg.adx_period
    s_tr, s_p, s_m = _wilder(tr, n), _wilder(pdm, n), _wilder(mdm, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        pdi = np.where(s_tr > 0, s_p / s_tr, 0.0)
        mdi = np.where(s_tr > 0, s_m / s_tr, 0.0)
        dx = np.where(pdi + mdi > 0, np.abs(pdi - mdi) / (pdi + mdi), 0.0)
        di = np.where(pdi + mdi > 0, (pdi - mdi) / (pdi + mdi), 0.0)
    dx_valid = dx[n - 1 :]
    adx = np.full(len(tr), np.nan)
    adx[n - 1 :] = _wilder(dx_valid, n)
    cols.append(np.concatenate([[np.nan], adx]))
    cols.append(np.concatenate([[np.nan], di]))
    w = cfg.volume_window
    col = np.full(n_bars, np.nan)
    for t in range(w, n_bars):
        base = v[t - w : t]
        col[t] = (v[t] - base.mean()) / base.std() if base.std() > 0 else 0.0
    cols.append(col)
    for w in cfg.sma_windows:
        col = np.full(n_bars, np.nan)
        for t in range(w - 1, n_bars):
            col[t] = np.log(c[t] / c[t - w + 1 : t + 1].mean())
        cols.append(col)
    out = np.column_stack(cols)
    out[: cfg.warmup_bars() - 1] = np.nan
    return out


@given(st.integers(0, 2**32 - 1), st.integers(1, 120), st.sampled_from([0, 3, 5]))
def test_batch_matches_the_textbook_reference(seed: int, n: int, flat_every: int) -> None:
    bars = make_bars(n, seed, flat_every=flat_every)
    batch = compute_batch(bars, SMALL)
    ref = reference(bars, SMALL)
    assert np.array_equal(np.isnan(batch.values).all(axis=1), ~batch.ready)
    assert np.array_equal(batch.ready, ~np.isnan(ref).any(axis=1))
    np.testing.assert_allclose(batch.values[batch.ready], ref[batch.ready], rtol=1e-9, atol=1e-12)


def test_default_features_match_the_reference_on_a_long_series() -> None:
    bars = make_bars(400, 11, flat_every=9)
    cfg = FeatureConfig()
    batch = compute_batch(bars, cfg)
    ref = reference(bars, cfg)
    assert batch.ready.sum() == 400 - 63
    np.testing.assert_allclose(batch.values[batch.ready], ref[batch.ready], rtol=1e-9, atol=1e-12)


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 80),
    st.lists(st.integers(0, 80), max_size=6),
    st.lists(st.integers(0, 80), max_size=4),
)
def test_live_bar_by_bar_with_snapshots_equals_batch_exactly(
    seed: int, n: int, cuts: list[int], repeats: list[int]
) -> None:
    """Live: one bar per call, the state JSON-encoded and restored at random bars (a restart),
    some bars redelivered; the rows are bit-identical to the batch."""
    bars = make_bars(n, seed)
    batch = compute_batch(bars, SMALL)
    state = SymbolFeatures(SMALL, "BTCUSDT")
    live: dict[int, tuple[float, ...]] = {}
    for i, bar in enumerate(bars):
        if i in cuts:
            state = SymbolFeatures.from_snapshot(SMALL, json.loads(json.dumps(state.to_snapshot())))
        row = state.update(bar)
        if row is not None:
            live[i] = row.values
            assert row.closes == tuple(b.close for b in bars[max(0, i - 5) : i + 1])
        if i in repeats:  # redelivered: nothing changes, no row
            before = json.dumps(state.to_snapshot())
            assert state.update(bars[i]) is None
            assert state.update(bars[max(0, i - 1)]) is None
            assert json.dumps(state.to_snapshot()) == before
    assert sorted(live) == list(np.flatnonzero(batch.ready))
    for i, values in live.items():
        assert np.array_equal(np.asarray(values), batch.values[i])  # exact, not approximate


@given(st.integers(0, 2**32 - 1), st.integers(7, 60), st.data())
def test_no_look_ahead_future_bars_do_not_change_past_rows(seed: int, n: int, data) -> None:
    bars = make_bars(n, seed)
    k = data.draw(st.integers(1, n - 1))
    other = make_bars(n, seed + 1)
    shift = bars[k - 1].open_time_ms - other[k - 1].open_time_ms
    changed = bars[:k] + [
        Bar(
            b.symbol,
            b.open_time_ms + shift,
            b.close_time_ms + shift,
            b.open * 2,
            b.high * 2,
            b.low * 2,
            b.close * 2,
            b.volume,
        )
        for b in other[k:]
    ]
    a = compute_batch(bars, SMALL)
    b = compute_batch(changed, SMALL)
    assert np.array_equal(a.values[:k], b.values[:k], equal_nan=True)


def test_bar_from_kline_parses_decimal_strings_and_refuses_nonsense() -> None:
    kline = {
        "symbol": "ETHUSDT",
        "open_time": 1_000,
        "close_time": 60_999,
        "open": "3400.00",
        "high": "3410.5",
        "low": "3390.25",
        "close": "3405.1",
        "volume": "12.5",
    }
    bar = bar_from_kline(kline)
    assert (bar.high, bar.low, bar.close, bar.volume) == (3410.5, 3390.25, 3405.1, 12.5)
    for field, bad in [
        ("close", "NaN"),
        ("close", "0"),
        ("open", "abc"),
        ("high", "3395"),  # below the close
        ("low", "3401"),  # above the open
        ("volume", "-1"),
        ("close_time", 0),
    ]:
        with pytest.raises(InvalidRecord) as err:
            bar_from_kline({**kline, field: bad})
        assert err.value.reason == "INVALID_VALUE"
    with pytest.raises(InvalidRecord):
        bar_from_kline({k: v for k, v in kline.items() if k != "high"})


def test_a_bar_of_another_symbol_is_refused_and_snapshots_check_the_feature_list() -> None:
    state = SymbolFeatures(SMALL, "BTCUSDT")
    with pytest.raises(InvalidRecord):
        state.update(make_bars(1, 1, symbol="ETHUSDT")[0])
    snap = state.to_snapshot()
    with pytest.raises(ValueError, match="names"):
        SymbolFeatures.from_snapshot(FeatureConfig(), snap)
