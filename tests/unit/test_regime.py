"""Regime detector: SetRegime only on a change, hysteresis and confirmation against flapping,
verdicts independent of the partitions' interleaving, ids from event time."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.ai_engine.config import FeatureConfig
from agents.ai_engine.features import SymbolFeatures
from agents.governor.model import Regime, SetRegime
from agents.regime.config import RegimeConfig
from agents.regime.core import RegimeDetector, classify
from agents.regime.inputs import RegimeInputs
from agents.regime.model import RegimeObservation
from quantum.errors import InvalidRecord
from tests.unit.test_features import make_bars

SYMBOLS = ("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT")
CFG = RegimeConfig(symbols=frozenset(SYMBOLS), confirm_buckets=5)
MIN = 60_000
T0 = 1_767_225_600_000

TREND, BASE, CHOP = 0.35, 0.22, 0.10  # ADX of a symbol in each class (vol ratio 1)


def obs(symbol: str, bucket: int, adx: float, vol_ratio: float = 1.0) -> RegimeObservation:
    return RegimeObservation(symbol, T0 + bucket * MIN + 59_999, adx, vol_ratio)


def feed(det: RegimeDetector, stream: list[RegimeObservation]) -> list[SetRegime]:
    out: list[SetRegime] = []
    for o in stream:
        out.extend(det.observe(o))
    return out


def market(adx_by_bucket: list[list[float]]) -> list[RegimeObservation]:
    """Observations in bucket order; adx_by_bucket[b][i] is symbol i's ADX in bucket b."""
    return [obs(SYMBOLS[i], b, a) for b, row in enumerate(adx_by_bucket) for i, a in enumerate(row)]


def test_classify() -> None:
    assert classify(obs("X", 0, 0.30), CFG) is Regime.TREND_STRONG
    assert classify(obs("X", 0, 0.22), CFG) is Regime.BASE
    assert classify(obs("X", 0, 0.15), CFG) is Regime.CHOP
    assert classify(obs("X", 0, 0.22, vol_ratio=2.0), CFG) is Regime.CHOP  # volatile, no trend
    assert classify(obs("X", 0, 0.30, vol_ratio=2.0), CFG) is Regime.TREND_STRONG


def test_a_change_is_sent_once_after_confirmation_with_an_event_time_id() -> None:
    rows = [[BASE] * 5] * 10 + [[TREND] * 4 + [BASE]] * 20 + [[CHOP] * 5] * 20 + [[BASE] * 5] * 2
    det = RegimeDetector(CFG)
    out = feed(det, market(rows))
    # trend from bucket 10: the 5th trending bucket (14) confirms, sent at its end
    at_trend = T0 + 15 * MIN
    at_chop = T0 + 35 * MIN
    assert out == [
        SetRegime(f"regime:TREND_STRONG:{at_trend}", Regime.TREND_STRONG, at_trend),
        SetRegime(f"regime:CHOP:{at_chop}", Regime.CHOP, at_chop),
    ]
    assert det.regime is Regime.CHOP


def test_hysteresis_a_market_hovering_at_the_threshold_does_not_flap() -> None:
    # 3 of 5 trending (60 %: enter), then alternating 2 and 3 of 5 (40 %/60 %): stays TREND
    rows = [[TREND] * 3 + [BASE] * 2] * 6
    rows += [([TREND] * 2 + [BASE] * 3) if b % 2 else ([TREND] * 3 + [BASE] * 2) for b in range(60)]
    det = RegimeDetector(CFG)
    out = feed(det, market(rows))
    assert [c.regime for c in out] == [Regime.TREND_STRONG]
    # and 1 of 5 (20 %) for long enough leaves it
    out = feed(
        det,
        [obs(SYMBOLS[i], 66 + b, TREND if i == 0 else BASE) for b in range(8) for i in range(5)],
    )
    assert [c.regime for c in out] == [Regime.BASE]


def test_a_short_burst_is_not_a_regime() -> None:
    rows = [[BASE] * 5] * 5 + [[TREND] * 5] * 4 + [[BASE] * 5] * 10  # 4 < confirm_buckets
    assert feed(RegimeDetector(CFG), market(rows)) == []


def test_redeliveries_and_bad_inputs() -> None:
    det = RegimeDetector(CFG)
    stream = market([[TREND] * 5] * 8)
    out = []
    for o in stream:
        out += det.observe(o)
        assert det.observe(o) == []  # the same bar again changes nothing
    assert [c.regime for c in out] == [Regime.TREND_STRONG]
    with pytest.raises(InvalidRecord):
        det.observe(RegimeObservation("AAAUSDT", T0 + 99 * MIN, float("nan"), 1.0))
    assert RegimeDetector(CFG).observe(obs("ZZZUSDT", 0, TREND)) == []  # not in the market


def test_too_few_symbols_is_no_market() -> None:
    cfg = RegimeConfig(confirm_buckets=1)  # every symbol seen counts; at least 3 of them
    assert feed(RegimeDetector(cfg), market([[TREND, TREND]] * 20)) == []
    assert feed(RegimeDetector(cfg), market([[TREND, TREND, TREND]] * 20)) != []


def _interleave(
    stream: list[RegimeObservation], seed: int, max_lag: int
) -> list[RegimeObservation]:
    """Another arrival order: per-symbol order kept, symbols lagging each other by < max_lag."""
    rnd = random.Random(seed)
    delay = {s: rnd.randrange(max_lag) for s in SYMBOLS}
    keyed = [
        ((o.event_time_ms // MIN) + delay[o.symbol], rnd.random(), i) for i, o in enumerate(stream)
    ]
    by_symbol_pos = {}
    for _, _, i in sorted(keyed):
        by_symbol_pos.setdefault(stream[i].symbol, []).append(i)
    for idx in by_symbol_pos.values():
        assert idx == sorted(idx)
    return [stream[i] for _, _, i in sorted(keyed)]


# Runs of 1-15 buckets in which each symbol keeps its ADX: regimes that last, and change.
regimes = st.lists(
    st.tuples(
        st.lists(st.sampled_from([TREND, BASE, CHOP, 0.26, 0.19]), min_size=5, max_size=5),
        st.integers(1, 15),
    ),
    min_size=1,
    max_size=12,
).map(lambda runs: [row for row, n in runs for _ in range(n)])


@given(regimes, st.integers(0, 10**6), st.lists(st.integers(0, 400), max_size=3))
def test_verdicts_do_not_depend_on_arrival_order_or_restarts(
    rows: list[list[float]], seed: int, cuts: list[int]
) -> None:
    stream = market(rows)
    expected = feed(RegimeDetector(CFG), stream)
    det = RegimeDetector(CFG)
    got: list[SetRegime] = []
    for i, o in enumerate(_interleave(stream, seed, CFG.stale_buckets)):
        if i in cuts:
            det = RegimeDetector.from_snapshot(CFG, json.loads(json.dumps(det.to_snapshot())))
        got += det.observe(o)
    assert got == expected
    # only changes, each confirmed: alternating regimes, never BASE first, spaced in time
    previous = Regime.BASE
    for c in expected:
        assert c.regime is not previous
        previous = c.regime
    times = [c.event_time_ms for c in expected]
    assert all(b - a >= CFG.confirm_buckets * MIN for a, b in itertools.pairwise(times))
    assert len({c.command_id for c in expected}) == len(expected)


def test_feature_rows_feed_the_detector_and_flush_judges_the_last_bucket() -> None:
    names = FeatureConfig().names()
    state = SymbolFeatures(FeatureConfig(), "BTCUSDT")
    rows = [r for b in make_bars(100, 4) if (r := state.update(b)) is not None]
    inputs = RegimeInputs(CFG, names)
    o = inputs.observation(rows[0])
    v = rows[0].values
    assert o.trend_strength == v[names.index("adx_14")]
    assert o.vol_ratio == v[names.index("vol_15")] / v[names.index("vol_60")]
    assert o.event_time_ms == rows[0].close_time_ms
    everything_trends = RegimeConfig(min_symbols=1, confirm_buckets=1, trend_adx=1e-9, chop_adx=0)
    det = RegimeDetector(everything_trends)
    assert det.observe(inputs.observation(rows[0])) == []  # its bucket is not over yet
    (command,) = det.flush(rows[0].close_time_ms + 1)
    assert command.regime is Regime.TREND_STRONG
    assert command.event_time_ms == rows[0].close_time_ms + 1  # the end of the bucket
    assert [c for r in rows[1:] for c in det.observe(inputs.observation(r))] == []  # no change
    with pytest.raises(ValueError, match="adx_14"):
        RegimeInputs(CFG, ("ret_1",))


def test_flush_stops_at_the_last_bucket_seen() -> None:
    det = RegimeDetector(CFG)
    assert det.flush(T0) == []  # nothing seen yet
    feed(det, market([[TREND] * 5] * 3))
    det.flush(T0 + 10**12)  # a far-away end judges only what was observed
    assert det.next_bucket == (T0 + 3 * MIN) // MIN
