"""The per-bar signal engine with rule models only (no weights needed), and its Avro record."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest

from agents.ai_engine.codec import SIGNAL_SCHEMA, signal_from_avro, signal_to_avro
from agents.ai_engine.config import AIEngineConfig
from agents.ai_engine.core import SignalEngine
from agents.ai_engine.features import Bar
from agents.ai_engine.model import Direction
from quantum.errors import InvalidRecord
from quantum.schemas import load_schema, runtime_schema, strip_logical_types
from quantum.validation import validate
from tests.unit.test_features import make_bars

RULES = AIEngineConfig(
    models=("momentum", "mean_reversion", "ma_crossover"), weights=(1.0, 1.0, 2.0)
)


def kline(bar: Bar, interval: str = "1m") -> dict[str, Any]:
    """A market.ticks record for `bar` (prices as decimal strings, as on the topic)."""
    return {
        "event_id": f"{bar.symbol}:{interval}:{bar.open_time_ms}",
        "symbol": bar.symbol,
        "interval": interval,
        "open_time": bar.open_time_ms,
        "close_time": bar.close_time_ms,
        "open": f"{bar.open:.6f}",
        "high": f"{bar.high:.6f}",
        "low": f"{bar.low:.6f}",
        "close": f"{bar.close:.6f}",
        "volume": f"{bar.volume:.3f}",
        "trades": 10,
        "source": "REPLAY",
        "end_of_stream": None,
    }


def run(engine: SignalEngine, klines: list[dict[str, Any]]) -> list[Any]:
    state = engine.new_state(klines[0]["symbol"])
    return [engine.step(state, k).signal for k in klines]


def test_no_signal_in_warm_up_then_one_per_bar() -> None:
    klines = [kline(b) for b in make_bars(100, 5)]
    signals = run(SignalEngine(RULES), klines)
    warm = RULES.features.warmup_bars()
    assert all(s is None for s in signals[: warm - 1])
    assert all(s is not None for s in signals[warm - 1 :])
    s = signals[-1]
    assert s.signal_id == f"sig:BTCUSDT:1m:{klines[-1]['open_time']}"
    assert s.event_time_ms == klines[-1]["close_time"]
    assert str(s.price) == klines[-1]["close"]
    assert [v.model for v in s.votes] == ["momentum", "mean_reversion", "ma_crossover"]
    assert [v.weight for v in s.votes] == [1.0, 1.0, 2.0]
    assert s.model == "rules:momentum+mean_reversion+ma_crossover"
    assert s.probability == s.raw_probability  # no bundle: no calibration
    assert s.confidence == max(s.probability, 1 - s.probability)


def test_redelivered_klines_change_nothing_and_a_restart_resumes_exactly() -> None:
    klines = [kline(b) for b in make_bars(120, 6)]
    engine = SignalEngine(RULES)
    expected = run(engine, klines)
    state = engine.new_state("BTCUSDT")
    got = []
    for i, k in enumerate(klines):
        if i % 17 == 0:  # a restart: the table's JSON snapshot comes back
            state = engine.restore(json.loads(json.dumps(state.to_snapshot())))
        step = engine.step(state, k)
        got.append(step.signal)
        if i % 5 == 0:
            again = engine.step(state, k)
            assert again.repeated and again.signal is None
    assert got == expected


def test_the_crossover_baseline_alone_signals_only_on_crossings() -> None:
    cfg = AIEngineConfig(models=("ma_crossover",), weights=(1.0,))
    signals = [s for s in run(SignalEngine(cfg), [kline(b) for b in make_bars(400, 8)]) if s]
    fired = [s for s in signals if s.direction is not Direction.HOLD]
    assert fired, "a 400-bar random walk crosses its averages"
    for s in fired:
        assert s.confidence == 0.75  # clears the selector's default floor (0.55)
        assert s.votes[0].direction is s.direction
    assert all(s.confidence == 0.5 for s in signals if s.direction is Direction.HOLD)


def test_a_bad_kline_is_an_invalid_record() -> None:
    engine = SignalEngine(RULES)
    state = engine.new_state("BTCUSDT")
    good = kline(make_bars(1, 1)[0])
    for field, bad in (("close", "NaN"), ("low", "-1"), ("open", None)):
        with pytest.raises(InvalidRecord):
            engine.step(state, {**good, field: bad})
    assert state.features.count == 0
    with pytest.raises(ValueError, match="end-of-stream"):  # the shell's job, not a bar
        engine.step(state, {**good, "end_of_stream": {"producer": "feed", "partitions": 6}})


def test_signal_record_round_trip_and_validation() -> None:
    klines = [kline(b) for b in make_bars(80, 9)]
    signal = [s for s in run(SignalEngine(RULES), klines) if s][-1]
    record = signal_to_avro(signal)
    validate(SIGNAL_SCHEMA, record)
    schema = runtime_schema(SIGNAL_SCHEMA)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    buf.seek(0)
    decoded = fastavro.schemaless_reader(buf, schema)
    assert decoded == record
    assert signal_from_avro(decoded) == signal


def test_signals_written_before_the_new_fields_still_read() -> None:
    """BACKWARD: the new reader fills probability, raw_probability and votes with defaults."""
    old = load_schema(SIGNAL_SCHEMA)
    old["fields"] = [
        f
        for f in old["fields"]
        if f["name"] not in ("probability", "raw_probability", "votes", "end_of_stream")
    ]
    old = fastavro.parse_schema(strip_logical_types(old))
    value = {
        "signal_id": "sig-1",
        "symbol": "ETHUSDT",
        "event_time": 1_764_000_000_000,
        "direction": "LONG",
        "confidence": 0.7,
        "model": "ema-cross@1",
        "price": "3120.5",
    }
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, old, value)
    buf.seek(0)
    new = fastavro.schemaless_reader(buf, old, runtime_schema(SIGNAL_SCHEMA))
    assert new == {
        **value,
        "probability": 0.5,
        "raw_probability": 0.5,
        "votes": [],
        "end_of_stream": None,
    }
    validate(SIGNAL_SCHEMA, new)
