"""The exit.intents contract: the reason enum grew backward-compatibly and matches the
model; the codec turns positions and klines into the exit model and exits into records."""

from __future__ import annotations

import copy
import io
from decimal import Decimal as D

import fastavro
import pytest

from agents.exits.codec import bar_from_record, exit_intent_to_record, position_from_record
from agents.exits.model import ExitIntent, ExitReason, Side
from quantum.errors import InvalidRecord
from quantum.schemas import load_schema, parse_runtime
from quantum.validation import validate
from tests.unit.test_serde import sample_records

# The enum as it was before the exit processors: a reader of today must read all of these.
SYMBOLS_BEFORE = [
    "STOP_LOSS",
    "PNL_PCT",
    "LIQUIDATION_GUARD",
    "HARVEST",
    "TAKE_PROFIT",
    "ROTATE_OUT",
    "HALT",
    "RECONCILE",
]


def _reason_enum(schema: dict) -> dict:
    return next(f for f in schema["fields"] if f["name"] == "reason")["type"]


def _write(schema: dict, value: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parse_runtime(copy.deepcopy(schema)), value)
    return buf.getvalue()


def _read(data: bytes, writer: dict, reader: dict) -> dict:
    return fastavro.schemaless_reader(
        io.BytesIO(data), parse_runtime(copy.deepcopy(writer)), parse_runtime(copy.deepcopy(reader))
    )


def test_model_enum_matches_the_schema_and_only_appends() -> None:
    enum = _reason_enum(load_schema("exit.intents.avsc"))
    assert enum["symbols"] == [r.value for r in ExitReason]
    assert enum["symbols"][: len(SYMBOLS_BEFORE)] == SYMBOLS_BEFORE
    assert enum["default"] == ExitReason.OTHER.value


def test_old_writers_are_read_by_the_new_schema() -> None:
    new = load_schema("exit.intents.avsc")
    old = copy.deepcopy(new)
    _reason_enum(old)["symbols"] = SYMBOLS_BEFORE
    del _reason_enum(old)["default"]
    value = sample_records()["exit.intents.avsc"]
    for reason in SYMBOLS_BEFORE:
        assert _read(_write(old, {**value, "reason": reason}), old, new)["reason"] == reason


def test_a_reason_newer_than_the_reader_reads_as_the_default() -> None:
    new = load_schema("exit.intents.avsc")
    newer = copy.deepcopy(new)
    _reason_enum(newer)["symbols"].append("SOMETHING_NEW")
    value = {**sample_records()["exit.intents.avsc"], "reason": "SOMETHING_NEW"}
    assert _read(_write(newer, value), newer, new)["reason"] == "OTHER"


def test_exit_intent_to_record_is_a_valid_record() -> None:
    intent = ExitIntent(
        exit_id="int-1:tp2",
        symbol="ETHUSDT",
        position_intent_id="int-1",
        quantity=D("0.0250"),
        reason=ExitReason.TRAILING_STOP,
        event_time_ms=1_700_000_000_000,
        reference_price=D("3100.5"),
    )
    record = exit_intent_to_record(intent)
    schema = load_schema("exit.intents.avsc")
    assert _read(_write(schema, record), schema, schema) == record
    validate("exit.intents.avsc", record)
    assert record["quantity"] == "0.0250" and record["reason"] == "TRAILING_STOP"


def test_position_and_bar_from_records() -> None:
    rec = sample_records()["positions.avsc"]
    pos = position_from_record(rec, qty_step=D("0.001"))
    assert pos.side is Side(rec["side"]) and pos.entry_price == D(rec["entry_price"])
    assert pos.stop_loss is None and pos.liquidation_price == D(rec["liquidation_price"])
    assert pos.margin == D(rec["isolated_margin"]) and pos.qty_step == D("0.001")
    assert pos.closed is (rec["status"] == "CLOSED")
    assert position_from_record({**rec, "liquidation_price": "0"}).liquidation_price is None
    with pytest.raises(InvalidRecord):
        position_from_record({**rec, "entry_price": "NaN"})
    k = sample_records()["market.ticks.avsc"]
    b = bar_from_record(k, atr=D(3))
    assert (b.open, b.high, b.low, b.close, b.atr) == (
        D(k["open"]),
        D(k["high"]),
        D(k["low"]),
        D(k["close"]),
        D(3),
    )
    assert (b.open_time_ms, b.close_time_ms) == (k["open_time"], k["close_time"])
