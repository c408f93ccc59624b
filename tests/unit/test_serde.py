"""AvroSerde against confluent's in-memory mock registry: framing, round trips, errors.

The mock does not implement compatibility (FACTS.md), so only wire-format behaviour is
tested here; registry semantics are in tests/integration/test_schema_registry.py.
"""

from __future__ import annotations

import copy
import io
import json
import struct
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from quantum.errors import DecodeError, EncodeError, PoisonRecord
from quantum.schemas import (
    SCHEMA_DIR,
    format_decimal,
    load_schema,
    parse_decimal,
    schema_files,
    schema_text,
)
from quantum.serde import AvroSerde, frame_schema_id
from topologies.declaration import TOPOLOGY

T0 = 1_764_000_000_000


def sample_records() -> dict[str, dict[str, Any]]:
    """One valid record per schema file (fresh copies each call)."""
    return {
        "market.ticks.avsc": {
            "event_id": f"BTCUSDT:1m:{T0}",
            "symbol": "BTCUSDT",
            "interval": "1m",
            "open_time": T0,
            "close_time": T0 + 59_999,
            "open": "64123.5",
            "high": "64200",
            "low": "64000.1",
            "close": "64150.25",
            "volume": "12.345",
            "trades": 321,
            "source": "REPLAY",
            "end_of_stream": None,
        },
        "ai.signals.avsc": {
            "signal_id": "sig-1",
            "symbol": "ETHUSDT",
            "event_time": T0,
            "direction": "LONG",
            "confidence": 0.72,
            "model": "ema-cross@1",
            "price": "3120.5",
            "probability": 0.72,
            "raw_probability": 0.68,
            "votes": [
                {"model": "mlp", "direction": "LONG", "probability": 0.7, "weight": 1.0},
                {"model": "momentum", "direction": "HOLD", "probability": 0.51, "weight": 0.5},
            ],
            "end_of_stream": None,
        },
        "trade.intents.avsc": {
            "intent_id": "int-1",
            "signal_id": "sig-1",
            "symbol": "ETHUSDT",
            "side": "SHORT",
            "entry_price": "3120.5",
            "stop_loss": "3200",
            "take_profit": None,
            "leverage": 5,
            "score": 0.61,
            "quantity": None,
            "notional": None,
            "event_time": T0,
            "end_of_stream": None,
        },
        "trade.rejections.avsc": {
            "rejection_id": "sig-1:SELECTION:CORRELATED",
            "stage": "SELECTION",
            "reason": "CORRELATED",
            "symbol": "ETHUSDT",
            "signal_id": "sig-1",
            "intent_id": None,
            "detail": "return correlation 0.871 with BTCUSDT >= 0.8",
            "event_time": T0,
            "end_of_stream": None,
        },
        "portfolio.avsc": {
            "command": (
                "io.quantumtrader.SlotRequest",
                {
                    "intent_id": "int-1",
                    "symbol": "ETHUSDT",
                    "side": "LONG",
                    "notional": "250.00",
                    "score": 0.5,
                    "event_time_ms": T0,
                },
            )
        },
        "portfolio.decisions.avsc": {
            "decision_id": "int-1#0",
            "command_id": "int-1",
            "kind": "GRANTED",
            "event_time_ms": T0,
            "intent_id": "int-1",
            "symbol": "ETHUSDT",
            "side": "LONG",
            "notional": "250.00",
            "score": 0.5,
            "deny_reason": None,
            "release_reason": None,
            "for_intent_id": None,
            "regime": "BASE",
            "halted": False,
            "open_after": 0,
            "reserved_after": 1,
            "active_slots": 4,
            "max_open_positions": 10,
            "input_offset": 0,
        },
        "orders.avsc": {
            "client_order_id": "int-1",
            "intent_id": "int-1",
            "symbol": "ETHUSDT",
            "side": "BUY",
            "order_type": "STOP_MARKET",
            "quantity": "0.080",
            "price": None,
            "trigger_price": "3000",
            "reduce_only": True,
            "event_time": T0,
            "action": "NEW",
            "role": "STOP_LOSS",
            "exit_reason": "STOP_LOSS",
            "leverage": None,
        },
        "execution.results.avsc": {
            "client_order_id": "int-1",
            "intent_id": "int-1",
            "symbol": "ETHUSDT",
            "status": "FILLED",
            "filled_quantity": "0.080",
            "average_price": "3121",
            "commission": "-0.01",
            "commission_asset": "USDT",
            "realized_pnl": "-1.5",
            "reason": None,
            "event_time": T0,
            "trade_id": "9001",
            "last_filled_quantity": "0.080",
            "last_filled_price": "3121",
            "order_side": "SELL",
            "order_type": "STOP_MARKET",
            "reduce_only": True,
            "role": "STOP_LOSS",
            "exit_reason": "STOP_LOSS",
            "trigger_price": "3000",
            "leverage": 5,
        },
        "positions.avsc": {
            "symbol": "ETHUSDT",
            "intent_id": "int-1",
            "side": "LONG",
            "quantity": "0.080",
            "entry_price": "3121",
            "mark_price": "3130",
            "leverage": 5,
            "isolated_margin": "49.9",
            "liquidation_price": "2520.7",
            "stop_loss": None,
            "status": "OPEN",
            "realized_pnl": "0",
            "opened_at": T0,
            "updated_at": T0 + 1,
            "take_profit": "3199",
            "unrealized_pnl": "0.72",
            "fees": "0.1",
            "entry_quantity": "0.080",
            "closed_at": None,
            "exit_reason": None,
        },
        "trades.avsc": {
            "trade_id": f"int-1:{T0}",
            "intent_id": "int-1",
            "symbol": "ETHUSDT",
            "side": "LONG",
            "quantity": "0.080",
            "entry_price": "3121",
            "exit_price": "3074.2",
            "entry_time": T0,
            "exit_time": T0 + 60_000,
            "realized_pnl": "-3.744",
            "fees": "0.2",
            "net_pnl": "-3.944",
            "exit_reason": "STOP_LOSS",
            "leverage": 5,
        },
        "execution.ledger.avsc": {
            "intent_id": "int-1",
            "symbol": "ETHUSDT",
            "state": "FILLED",
            "side": "LONG",
            "quantity": "0.080",
            "entry_price": "3120",
            "stop_loss": "3070",
            "take_profit": None,
            "leverage": 5,
            "planned_at": T0 - 2,
            "granted_at": T0 - 1,
            "decided_at": T0 - 1,
            "sent_at": T0 - 1,
            "closed_at": None,
            "close_reason": None,
            "release": None,
            "note": None,
            "decisions": ["int-1#0"],
            "orders": [
                {
                    "client_order_id": "E-int-1",
                    "role": "ENTRY",
                    "side": "BUY",
                    "order_type": "MARKET",
                    "quantity": "0.080",
                    "trigger_price": None,
                    "reduce_only": False,
                    "exit_reason": None,
                    "leverage": 5,
                    "exit_id": None,
                    "placed_at": T0 - 1,
                    "status": "FILLED",
                    "filled_quantity": "0.080",
                    "average_price": "3121",
                    "cancel_requested": False,
                    "reason": None,
                    "updated_at": T0,
                }
            ],
            "created_at": T0 - 2,
            "updated_at": T0,
        },
        "exit.intents.avsc": {
            "exit_id": "exit-1",
            "symbol": "ETHUSDT",
            "position_intent_id": "int-1",
            "quantity": "0.04",
            "reason": "HARVEST",
            "reduce_only": True,
            "event_time": T0,
        },
        "risk.warnings.avsc": {
            "warning_id": "harvest:int-1:STOP_LOSS_DEFAULTED",
            "kind": "STOP_LOSS_DEFAULTED",
            "symbol": "ETHUSDT",
            "position_intent_id": "int-1",
            "processor": "harvest",
            "stop_price": "3073.6925",
            "stop_pct": "0.015",
            "detail": "no stop-loss on the position: the default stop is in force",
            "event_time": T0,
        },
        "binance.user-events.avsc": {
            "event_id": "ORDER_TRADE_UPDATE:1767225600107:BTCUSDT:6251138922",
            "source": "STREAM",
            "payload": '{"e": "ORDER_TRADE_UPDATE", "E": 1767225600107}',
            "event_time": T0,
        },
        "dead_letter.avsc": {
            "source_topic": "market.ticks",
            "source_partition": 3,
            "source_offset": 42,
            "source_timestamp": None,
            "key": b"BTCUSDT",
            "value": b"\x07garbage",
            "headers": [{"key": "x-dlq-replay", "value": b"1"}, {"key": "h", "value": None}],
            "error_class": "DecodeError",
            "error_message": "MALFORMED_FRAME: magic byte 7",
            "agent": "passthrough",
            "failed_at": T0,
            "replay_count": 0,
        },
    }


@pytest.fixture
def serde() -> AvroSerde:
    return AvroSerde(SchemaRegistryClient.new_client({"url": "mock://unit"}))


def test_every_topology_schema_exists_and_every_field_is_documented() -> None:
    declared = {t.schema for t in TOPOLOGY.all_topics() if t.schema}
    assert declared <= set(schema_files())
    assert set(sample_records()) == set(schema_files())

    def walk(s: Any, where: str) -> None:
        if isinstance(s, list):
            for x in s:
                walk(x, where)
        elif isinstance(s, dict):
            if s.get("type") in ("record", "enum"):
                assert s.get("doc"), f"{where}: {s['name']} has no doc"
            for f in s.get("fields", []):
                assert f.get("doc"), f"{where}: field {f['name']} has no doc"
                if f.get("x-decimal"):
                    assert "string" in json.dumps(f["type"]) and "Decimal" in f["doc"]
                if isinstance(f["type"], list) and "null" in f["type"]:
                    assert f["type"][0] == "null" and f.get("default", "x") is None, f["name"]
                walk(f["type"], where)
            if s.get("type") == "array":
                walk(s["items"], where)

    for name in schema_files():
        schema = load_schema(name)
        assert schema["namespace"] == "io.quantumtrader"
        walk(schema, name)
        fastavro.parse_schema(schema)


def test_money_is_never_float_and_times_are_timestamp_millis() -> None:
    for name in schema_files():
        text = (SCHEMA_DIR / name).read_text()
        assert '"float"' not in text
        for f in load_schema(name)["fields"]:
            if f["name"] in ("event_time", "open_time", "close_time", "failed_at", "opened_at"):
                assert f["type"] == {"type": "long", "logicalType": "timestamp-millis"}


@pytest.mark.parametrize("schema_file", sorted(sample_records()))
def test_round_trip_every_schema(serde: AvroSerde, schema_file: str) -> None:
    value = sample_records()[schema_file]
    data = serde.encode("u.topic", value, schema_file=schema_file)
    assert data[0] == 0
    assert frame_schema_id(data) == serde.schema_id("u.topic", schema_file)
    assert serde.decode("u.topic", data, schema_file=schema_file) == value


def test_timestamps_stay_int_milliseconds(serde: AvroSerde) -> None:
    value = sample_records()["market.ticks.avsc"]
    out = serde.decode(
        "t",
        serde.encode("t", value, schema_file="market.ticks.avsc"),
        schema_file="market.ticks.avsc",
    )
    assert type(out["open_time"]) is int and out["open_time"] == T0


def test_wire_format_is_confluent(serde: AvroSerde) -> None:
    value = sample_records()["ai.signals.avsc"]
    data = serde.encode("sig", value, schema_file="ai.signals.avsc")
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    registered = serde.client.get_schema(schema_id)
    body = fastavro.schemaless_reader(
        io.BytesIO(data[5:]), fastavro.parse_schema(json.loads(registered.schema_str))
    )
    assert body["price"] == "3120.5"


def test_register_once_then_no_registry_calls(serde: AvroSerde, monkeypatch: Any) -> None:
    value = sample_records()["orders.avsc"]
    first = serde.encode("o", value, schema_file="orders.avsc")

    def boom(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("registry called after warm-up")

    monkeypatch.setattr(serde.client, "register_schema", boom)
    monkeypatch.setattr(serde.client, "get_schema", boom)
    for _ in range(100):
        assert serde.encode("o", value, schema_file="orders.avsc") == first
        assert serde.decode("o", first, schema_file="orders.avsc") == value


def test_subject_is_topic_name_strategy(serde: AvroSerde) -> None:
    serde.encode("p.orders", sample_records()["orders.avsc"], schema_file="orders.avsc")
    assert "p.orders-value" in serde.client.get_subjects()


def test_union_branch_is_explicit_for_identical_records(serde: AvroSerde) -> None:
    for name in ("io.quantumtrader.Resume", "io.quantumtrader.Clock"):
        value = {"command": (name, {"command_id": "c", "event_time_ms": T0})}
        data = serde.encode("p", value, schema_file="portfolio.avsc")
        assert serde.decode("p", data, schema_file="portfolio.avsc")["command"][0] == name


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x00\x00", b"\x01\x00\x00\x00\x01abc", b"garbage bytes"],
    ids=["empty", "short", "magic-1", "garbage"],
)
def test_malformed_frames(serde: AvroSerde, data: bytes) -> None:
    with pytest.raises(DecodeError) as err:
        serde.decode("t", data, schema_file="market.ticks.avsc")
    assert err.value.reason == "MALFORMED_FRAME"
    assert isinstance(err.value, PoisonRecord)


def test_unknown_schema_id(serde: AvroSerde) -> None:
    with pytest.raises(DecodeError) as err:
        serde.decode("t", b"\x00\x00\x01\x00\x00\x02ab", schema_file="market.ticks.avsc")
    assert err.value.reason == "UNKNOWN_SCHEMA_ID"


def test_body_of_another_schema_is_a_mismatch(serde: AvroSerde) -> None:
    data = serde.encode("t", sample_records()["orders.avsc"], schema_file="orders.avsc")
    with pytest.raises(DecodeError) as err:
        serde.decode("t", data, schema_file="market.ticks.avsc")
    assert err.value.reason == "SCHEMA_MISMATCH"
    assert len(str(err.value)) < 600


def test_truncated_or_padded_body_is_a_mismatch(serde: AvroSerde) -> None:
    data = serde.encode("t", sample_records()["market.ticks.avsc"], schema_file="market.ticks.avsc")
    for bad in (data[:-3], data + b"\x00\x01"):
        with pytest.raises(DecodeError) as err:
            serde.decode("t", bad, schema_file="market.ticks.avsc")
        assert err.value.reason == "SCHEMA_MISMATCH"


def test_reader_resolves_an_older_writer_schema(serde: AvroSerde) -> None:
    """A writer without a field the reader has (with default) still decodes: schema resolution."""
    old = load_schema("exit.intents.avsc")
    old["fields"] = [f for f in old["fields"] if f["name"] != "reduce_only"]
    schema_id = serde.client.register_schema("old-value", Schema(json.dumps(old), "AVRO"))
    value = {k: v for k, v in sample_records()["exit.intents.avsc"].items() if k != "reduce_only"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(copy.deepcopy(old)), value)
    data = struct.pack(">bI", 0, schema_id) + body.getvalue()
    out = serde.decode("old", data, schema_file="exit.intents.avsc")
    assert out["reduce_only"] is True and out["quantity"] == "0.04"


def test_encode_mismatch_names_the_field(serde: AvroSerde) -> None:
    value = sample_records()["market.ticks.avsc"]
    value["trades"] = "many"
    with pytest.raises(EncodeError, match="trades"):
        serde.encode("t", value, schema_file="market.ticks.avsc")
    value = sample_records()["market.ticks.avsc"]
    value["source"] = "MOON"
    with pytest.raises(EncodeError, match="source"):
        serde.encode("t", value, schema_file="market.ticks.avsc")


def test_nan_price_is_schema_valid(serde: AvroSerde) -> None:
    """Decimals are strings: the decoder lets 'NaN' through, the validator must catch it."""
    value = sample_records()["market.ticks.avsc"]
    value["close"] = "NaN"
    data = serde.encode("t", value, schema_file="market.ticks.avsc")
    assert serde.decode("t", data, schema_file="market.ticks.avsc")["close"] == "NaN"


def test_decimal_helpers_are_exact() -> None:
    from decimal import Decimal

    for text in ("64123.5", "0.00000001", "-1.50", "1000000000000.000000001"):
        d = Decimal(text)
        assert parse_decimal(format_decimal(d)) == d
        assert "E" not in format_decimal(d)
    for bad in ("NaN", "Infinity", "-inf", "", " 1", "1_000", "abc", "0x10"):
        with pytest.raises(ValueError):
            parse_decimal(bad)
    with pytest.raises(ValueError):
        format_decimal(Decimal("NaN"))


def test_schema_text_is_stable() -> None:
    for name in schema_files():
        assert schema_text(name) == schema_text(name)
        assert json.loads(schema_text(name)) == load_schema(name)
