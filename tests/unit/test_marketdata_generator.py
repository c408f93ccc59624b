"""The synthetic market: deterministic bytes, realistic statistics, the bundled sample."""

from __future__ import annotations

import zipfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from quantum.marketdata import Kline, RowError, read_klines, replay_files, sample_files
from quantum.marketdata.generator import (
    CHOP,
    DAY_MINUTES,
    DEFAULT_SYMBOLS,
    SAMPLE_LABEL,
    SAMPLE_START_MS,
    TREND,
    SyntheticMarket,
    generate,
    sample_market,
)

START = SAMPLE_START_MS


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    """The bundled sample's market: 3 days x 10 symbols."""
    return sample_market()


def _returns(m: SyntheticMarket) -> np.ndarray:
    closes = np.array([m.close_prices(s.symbol) for s in m.symbols]).T
    return np.diff(np.log(closes), axis=0)


def _acf(x: np.ndarray, lag: int) -> float:
    d = x - x.mean()
    return float(np.dot(d[:-lag], d[lag:]) / np.dot(d, d))


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = generate(start_ms=START, minutes=600, seed=11)
    b = generate(start_ms=START, minutes=600, seed=11)
    c = generate(start_ms=START, minutes=600, seed=12)
    for spec in DEFAULT_SYMBOLS:
        assert a.csv_text(spec.symbol) == b.csv_text(spec.symbol)
    assert a.csv_text("BTCUSDT") != c.csv_text("BTCUSDT")
    first = [p.read_bytes() for p in a.write(tmp_path / "a", "x")]
    second = [p.read_bytes() for p in b.write(tmp_path / "b", "x")]
    assert first == second  # zips too: fixed member timestamps


def test_the_bundled_sample_is_what_the_generator_writes(market: SyntheticMarket) -> None:
    files = sample_files()
    assert [p.name for p in files] == sorted(
        f"{s.symbol}-1m-{SAMPLE_LABEL}.zip" for s in DEFAULT_SYMBOLS
    )
    for path in files:
        symbol = path.name.split("-")[0]
        with zipfile.ZipFile(path) as archive:
            [member] = archive.namelist()
            assert member == f"{symbol}-1m-{SAMPLE_LABEL}.csv"
            assert archive.read(member).decode() == market.csv_text(symbol), path
    total = sum(p.stat().st_size for p in files)
    assert total < 3_000_000, f"the sample is {total:,} bytes; keep it under ~3 MB"


def test_sample_shape_and_replay(market: SyntheticMarket) -> None:
    assert market.minutes == 3 * DAY_MINUTES and len(market.symbols) == 10
    btc = list(read_klines(next(p for p in sample_files() if p.name.startswith("BTCUSDT"))))
    assert all(isinstance(k, Kline) for k in btc) and len(btc) == 3 * DAY_MINUTES
    assert btc == list(market.klines("BTCUSDT", source=btc[0].source))
    assert btc[0].open == Decimal("95000.0") and btc[0].open_time == START
    assert btc[-1].close_time == START + 3 * DAY_MINUTES * 60_000 - 1


def test_prices_on_the_tick_volumes_on_the_step_bars_consistent(market: SyntheticMarket) -> None:
    for spec in market.symbols:
        i = market.column(spec.symbol)
        o, h, lo, c = (a[:, i] for a in (market.open, market.high, market.low, market.close))
        assert (lo >= 1).all() and (lo <= np.minimum(o, c)).all() and (h >= np.maximum(o, c)).all()
        assert (market.volume[:, i] >= 1).all()
        assert (market.taker_buy[:, i] <= market.volume[:, i]).all()
        first = next(market.klines(spec.symbol))
        for price in (first.open, first.high, first.low, first.close):
            assert (
                price % spec.tick == 0
                and price.as_tuple().exponent == spec.tick.as_tuple().exponent
            )
        assert first.volume % spec.step == 0
    # and the replay of the files accepts every row
    items = list(replay_files(sample_files()))
    assert not [i for i in items if isinstance(i, RowError)]
    assert len(items) == 10 * 3 * DAY_MINUTES


def test_volatility_clusters(market: SyntheticMarket) -> None:
    """|returns| are autocorrelated (GARCH), while returns themselves are nearly not."""
    r = _returns(market)
    for i, spec in enumerate(market.symbols):
        a = np.abs(r[:, i])
        assert _acf(a, 1) > 0.05 and _acf(a, 10) > 0.05, spec.symbol
        assert abs(_acf(r[:, i], 1)) < 0.1, spec.symbol


def test_symbols_move_together(market: SyntheticMarket) -> None:
    corr = np.corrcoef(_returns(market).T)
    pairs = corr[np.triu_indices(len(market.symbols), 1)]
    assert pairs.min() > 0.2 and 0.4 < pairs.mean() < 0.9


def test_both_regimes_and_trends_move_more_than_chop(market: SyntheticMarket) -> None:
    regime = market.regime
    assert (regime == TREND).sum() > DAY_MINUTES / 4 and (regime == CHOP).sum() > DAY_MINUTES / 4
    assert np.count_nonzero(np.diff(regime)) >= 4  # several switches, both ways
    # an hour's net move, relative to the symbol's volatility, is larger in a trend
    closes = np.array([market.close_prices(s.symbol) for s in market.symbols]).T
    hour = np.abs(np.log(closes[60:] / closes[:-60]))
    in_trend = (regime[:-60] == TREND) & (regime[60:] == TREND)
    in_chop = (regime[:-60] == CHOP) & (regime[60:] == CHOP)
    assert hour[in_trend].mean() > 1.3 * hour[in_chop].mean()


def test_gaps_happen_and_bring_volume(market: SyntheticMarket) -> None:
    jumped = market.jump[1:]
    gaps = market.open[1:] != market.close[:-1]
    assert jumped.sum() >= 10 and (gaps == jumped).all()  # a gap exactly where a jump is
    volume = market.volume[1:].astype(float) / market.volume.mean(axis=0)
    assert volume[jumped].mean() > 2 * volume[~jumped].mean()
    # and volume follows volatility: bigger moves, bigger volume
    moves = np.abs(_returns(market))
    for i in range(len(market.symbols)):
        assert np.corrcoef(moves[:, i], market.volume[1:, i])[0, 1] > 0.2


def test_generator_refuses_bad_requests() -> None:
    with pytest.raises(ValueError):
        generate(start_ms=START + 1, minutes=10, seed=1)
    with pytest.raises(ValueError):
        generate(start_ms=START, minutes=0, seed=1)
    with pytest.raises(ValueError):
        generate(start_ms=START, minutes=10, seed=1, symbols=DEFAULT_SYMBOLS[:1] * 2)
