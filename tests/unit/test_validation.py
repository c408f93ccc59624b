"""Semantic validation: every record the schemas accept but an agent must never act on."""

from __future__ import annotations

from typing import Any

import pytest

from quantum.errors import InvalidRecord, PoisonRecord
from quantum.validation import validate
from tests.unit.test_serde import sample_records


def _fails(
    schema_file: str, value: dict[str, Any], reason: str = "INVALID_VALUE", **kw: Any
) -> str:
    with pytest.raises(InvalidRecord) as err:
        validate(schema_file, value, **kw)
    assert err.value.reason == reason
    assert isinstance(err.value, PoisonRecord)
    return str(err.value)


@pytest.mark.parametrize("schema_file", sorted(sample_records()))
def test_samples_are_valid(schema_file: str) -> None:
    validate(schema_file, sample_records()[schema_file])


@pytest.mark.parametrize(
    "bad", ["NaN", "nan", "Infinity", "-Infinity", "sNaN", "abc", "", " 1", "1_0"]
)
def test_non_finite_or_garbage_decimal_is_named(bad: str) -> None:
    v = sample_records()["market.ticks.avsc"]
    v["close"] = bad
    assert "'close'" in _fails("market.ticks.avsc", v)


@pytest.mark.parametrize(
    ("schema_file", "field", "value"),
    [
        ("market.ticks.avsc", "open", "0"),
        ("market.ticks.avsc", "low", "-1"),
        ("ai.signals.avsc", "price", "-3120"),
        ("trade.intents.avsc", "entry_price", "0"),
        ("trade.intents.avsc", "take_profit", "-1"),
        ("orders.avsc", "trigger_price", "0"),
        ("positions.avsc", "mark_price", "0"),
        ("execution.results.avsc", "average_price", "-2"),
    ],
)
def test_prices_must_be_positive(schema_file: str, field: str, value: str) -> None:
    v = sample_records()[schema_file]
    v[field] = value
    assert f"'{field}'" in _fails(schema_file, v)


@pytest.mark.parametrize(
    ("schema_file", "field"),
    [
        ("market.ticks.avsc", "volume"),
        ("trade.intents.avsc", "quantity"),
        ("trade.intents.avsc", "notional"),
        ("orders.avsc", "quantity"),
        ("execution.results.avsc", "filled_quantity"),
        ("positions.avsc", "quantity"),
        ("exit.intents.avsc", "quantity"),
        ("portfolio.decisions.avsc", "notional"),
    ],
)
def test_quantities_must_not_be_negative(schema_file: str, field: str) -> None:
    v = sample_records()[schema_file]
    v[field] = "0"
    validate(schema_file, v)
    v[field] = "-0.001"
    assert f"'{field}'" in _fails(schema_file, v)


def test_signed_amounts_may_be_negative_but_finite() -> None:
    v = sample_records()["execution.results.avsc"]
    v["realized_pnl"] = "-123.45"
    validate("execution.results.avsc", v)
    v["realized_pnl"] = "NaN"
    _fails("execution.results.avsc", v)


def test_nested_union_branch_is_validated() -> None:
    v = sample_records()["portfolio.avsc"]
    v["command"][1]["notional"] = "NaN"
    assert "command.SlotRequest.notional" in _fails("portfolio.avsc", v)
    v = sample_records()["portfolio.avsc"]
    v["command"][1]["symbol"] = "eth"
    _fails("portfolio.avsc", v)
    v = sample_records()["portfolio.avsc"]
    v["command"][1]["score"] = float("nan")
    _fails("portfolio.avsc", v)
    clock = {"command": ("io.quantumtrader.Clock", {"command_id": "c", "event_time_ms": 0})}
    assert "event_time_ms" in _fails("portfolio.avsc", clock)
    _fails("portfolio.avsc", {"command": ("io.quantumtrader.Nope", {})})


def test_kline_high_below_low() -> None:
    v = sample_records()["market.ticks.avsc"]
    v["high"], v["low"] = "100", "101"
    assert "'high'" in _fails("market.ticks.avsc", v)


def test_kline_event_id_must_match() -> None:
    v = sample_records()["market.ticks.avsc"]
    v["event_id"] = "whatever"
    assert "event_id" in _fails("market.ticks.avsc", v)


@pytest.mark.parametrize("field", ["open_time", "close_time"])
def test_timestamps_positive(field: str) -> None:
    v = sample_records()["market.ticks.avsc"]
    v[field] = 0
    _fails("market.ticks.avsc", v)


@pytest.mark.parametrize("symbol", ["btcusdt", "B", "BTC-USDT", "X" * 21, "", None])
def test_symbol_shape(symbol: Any) -> None:
    v = sample_records()["ai.signals.avsc"]
    v["symbol"] = symbol
    assert "'symbol'" in _fails("ai.signals.avsc", v)


def test_symbol_universe() -> None:
    v = sample_records()["ai.signals.avsc"]
    validate("ai.signals.avsc", v, universe=frozenset({"ETHUSDT"}))
    msg = _fails("ai.signals.avsc", v, "UNKNOWN_SYMBOL", universe=frozenset({"BTCUSDT"}))
    assert "ETHUSDT" in msg


def test_nullable_symbol_in_decisions() -> None:
    v = sample_records()["portfolio.decisions.avsc"]
    v["symbol"] = None
    validate("portfolio.decisions.avsc", v, universe=frozenset({"BTCUSDT"}))


def test_confidence_range_and_finite() -> None:
    for bad in (1.5, -0.1, float("nan"), float("inf")):
        v = sample_records()["ai.signals.avsc"]
        v["confidence"] = bad
        _fails("ai.signals.avsc", v)


def test_signal_probabilities_and_votes() -> None:
    for field in ("probability", "raw_probability"):
        for bad in (1.01, -0.5, float("nan")):
            v = sample_records()["ai.signals.avsc"]
            v[field] = bad
            assert f"'{field}'" in _fails("ai.signals.avsc", v)
    for key, bad in (("probability", 2.0), ("probability", float("inf")), ("weight", 0.0)):
        v = sample_records()["ai.signals.avsc"]
        v["votes"][1][key] = bad
        assert f"'votes[1].{key}'" in _fails("ai.signals.avsc", v)
    v = sample_records()["ai.signals.avsc"]
    v["votes"][0]["model"] = ""
    assert "'votes[0].model'" in _fails("ai.signals.avsc", v)


def test_order_rules() -> None:
    v = sample_records()["orders.avsc"]
    v["client_order_id"] = "has space"
    _fails("orders.avsc", v)
    v = sample_records()["orders.avsc"]
    v["client_order_id"] = "x" * 37
    _fails("orders.avsc", v)
    v = sample_records()["orders.avsc"]
    v["trigger_price"] = None
    assert "trigger_price" in _fails("orders.avsc", v)
    v = sample_records()["orders.avsc"]
    v["order_type"], v["price"] = "LIMIT", None
    assert "price" in _fails("orders.avsc", v)


def test_leverage_at_least_one() -> None:
    v = sample_records()["trade.intents.avsc"]
    v["leverage"] = 0
    _fails("trade.intents.avsc", v)


def test_malformed_shapes_are_invalid_not_crashes() -> None:
    _fails("market.ticks.avsc", {})
    v = sample_records()["market.ticks.avsc"]
    del v["open_time"]
    _fails("market.ticks.avsc", v)
