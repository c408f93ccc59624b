"""Selector invariants over random signal streams (hypothesis)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.selector.config import SelectorConfig
from agents.selector.core import SelectorCore
from agents.selector.model import (
    Bar,
    Direction,
    PositionUpdate,
    Rejected,
    Side,
    Signal,
    TradeIntent,
)

MIN = 60_000
T0 = 1_767_225_600_000
SYMBOLS = ["ADAUSDT", "BNBUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]

_signal = st.tuples(
    st.sampled_from(SYMBOLS),
    st.sampled_from(list(Direction)),
    st.floats(0.0, 1.0, allow_nan=False),
)
_minute = st.lists(_signal, max_size=8)
_stream = st.lists(_minute, min_size=1, max_size=12)
_config = st.builds(
    SelectorConfig,
    min_confidence=st.sampled_from([0.0, 0.55, 0.7]),
    top_n=st.integers(1, 4),
    window_ms=st.sampled_from([10_000, MIN, 5 * MIN]),
    skip_flat_sell=st.booleans(),
    max_correlation=st.sampled_from([0.5, 0.8, 1.0]),
    correlation_min_periods=st.just(5),
    correlation_window=st.just(20),
    pending_ttl_ms=st.sampled_from([0, 2 * MIN]),
)


def _inputs(stream: list, seed: int) -> list[object]:
    """Bars, signals (some redelivered) and position updates, in event-time order."""
    rng = random.Random(seed)
    price = dict.fromkeys(SYMBOLS, 100.0)
    events: list[object] = []
    sent: list[Signal] = []
    for minute, signals in enumerate(stream):
        close = T0 + minute * MIN + 59_999
        common = rng.gauss(0, 0.002)
        for s in SYMBOLS:
            price[s] *= 1 + common + rng.gauss(0, 0.001)
            events.append(Bar(s, close, Decimal(str(round(price[s], 4)))))
        for i, (symbol, direction, confidence) in enumerate(signals):
            sig = Signal(f"{symbol}:{close}:{i}", symbol, direction, confidence, close, Decimal(1))
            events.append(sig)
            sent.append(sig)
        if sent and rng.random() < 0.3:
            events.append(rng.choice(sent))  # a redelivery
        if rng.random() < 0.3:
            side = rng.choice([Side.LONG, Side.SHORT, None])
            events.append(PositionUpdate(rng.choice(SYMBOLS), side, close))
    return events


def _run(config: SelectorConfig, events: list[object]) -> list[TradeIntent | Rejected]:
    core = SelectorCore(config)
    out: list[TradeIntent | Rejected] = []
    for e in events:
        if isinstance(e, Bar):
            core.on_bar(e)
        elif isinstance(e, PositionUpdate):
            core.on_position(e)
        else:
            assert isinstance(e, Signal)
            out.extend(core.on_signal(e))
    out.extend(core.on_end_of_stream())
    return out


@settings(max_examples=150, deadline=None)
@given(config=_config, stream=_stream, seed=st.integers(0, 1000))
def test_invariants(config: SelectorConfig, stream: list, seed: int) -> None:
    events = _inputs(stream, seed)
    out = _run(config, events)
    signals = [e for e in events if isinstance(e, Signal)]
    by_id = {s.signal_id: s for s in signals}
    intents = [o for o in out if isinstance(o, TradeIntent)]

    # every delivery of a candidate (non-HOLD) gets exactly one output; HOLD none
    candidates = [s for s in signals if s.direction != Direction.HOLD]
    assert len(out) == len(candidates)
    assert Counter(o.signal_id for o in out) == Counter(s.signal_id for s in candidates)
    # one intent per signal id at most, ids unique and derived from the signal
    assert len({i.intent_id for i in intents}) == len(intents)
    assert len({i.signal_id for i in intents}) == len(intents)
    per_window: dict[int, int] = defaultdict(int)
    for i in intents:
        s = by_id[i.signal_id]
        assert s.confidence >= config.min_confidence  # never below the floor
        assert s.direction != Direction.HOLD
        if config.skip_flat_sell:
            assert i.side == Side.LONG
        assert i.stop_loss < i.entry_price < i.take_profit or (
            i.side == Side.SHORT and i.take_profit < i.entry_price < i.stop_loss
        )
        per_window[s.event_time // config.window_ms] += 1
    assert all(n <= config.top_n for n in per_window.values())  # never more than N
    # a window's intents come out best first
    for w in per_window:
        scores = [i.score for i in intents if i.event_time // config.window_ms == w]
        assert scores == sorted(scores, reverse=True)
    # deterministic
    assert _run(config, events) == out


@settings(max_examples=100, deadline=None)
@given(config=_config, stream=_stream, seed=st.integers(0, 1000))
def test_arrival_order_within_a_bar_does_not_matter(
    config: SelectorConfig, stream: list, seed: int
) -> None:
    """Signals of one bar arrive in any order (different partitions): same intents."""
    events = [e for e in _inputs(stream, seed) if not isinstance(e, PositionUpdate)]
    rng = random.Random(seed)
    shuffled: list[object] = []
    i = 0
    while i < len(events):  # shuffle each run of same-time signals
        j = i
        while j < len(events) and isinstance(events[j], Signal):
            j += 1
        run = events[i:j]
        rng.shuffle(run)
        shuffled.extend(run)
        if j < len(events):
            shuffled.append(events[j])
        i = j + 1

    def intents(evts: list[object]) -> list[TradeIntent]:
        return [o for o in _run(config, evts) if isinstance(o, TradeIntent)]

    # (a redelivery may move before its original: then the copy is the one admitted,
    # and which copy that is does not change the intent)
    assert intents(shuffled) == intents(events)
