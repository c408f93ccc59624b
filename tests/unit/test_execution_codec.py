"""Execution records <-> Avro, and the schema evolution: old records read with defaults."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import fastavro
import pytest

from agents.execution.codec import (
    exit_intent_from_avro,
    ledger_record,
    ledger_update_from_record,
    order_from_avro,
    order_to_avro,
    plan_from_avro,
    result_from_avro,
    result_to_avro,
)
from agents.execution.model import (
    CancelOrder,
    ExitReason,
    Forget,
    OrderRole,
    OrderStatus,
    PlaceOrder,
)
from agents.governor.model import DecisionKind
from quantum.errors import InvalidRecord
from quantum.schemas import load_schema, parse_runtime, runtime_schema
from quantum.validation import validate
from tests.unit.execution_world import T0, Harness, decision, plan, result
from tests.unit.test_serde import sample_records

# Fields this issue added; a record written before them must still be read (BACKWARD).
ADDED = {
    "orders.avsc": ("action", "role", "exit_reason", "leverage"),
    "execution.results.avsc": (
        "trade_id",
        "last_filled_quantity",
        "last_filled_price",
        "order_side",
        "order_type",
        "reduce_only",
        "role",
        "exit_reason",
        "trigger_price",
        "leverage",
    ),
    "positions.avsc": (
        "take_profit",
        "unrealized_pnl",
        "fees",
        "entry_quantity",
        "closed_at",
        "exit_reason",
    ),
}


def _write(schema: Any, value: dict[str, Any]) -> bytes:
    buf = BytesIO()
    fastavro.schemaless_writer(buf, schema, value)
    return buf.getvalue()


def _read(data: bytes, writer: Any, reader: Any) -> dict[str, Any]:
    return fastavro.schemaless_reader(BytesIO(data), writer, reader)  # type: ignore[return-value]


@pytest.mark.parametrize("schema_file", sorted(ADDED))
def test_records_written_before_the_new_fields_are_read_with_their_defaults(
    schema_file: str,
) -> None:
    new = load_schema(schema_file)
    old = dict(new, fields=[f for f in new["fields"] if f["name"] not in ADDED[schema_file]])
    assert all("default" in f for f in new["fields"] if f["name"] in ADDED[schema_file])
    value = {k: v for k, v in sample_records()[schema_file].items() if k not in ADDED[schema_file]}
    out = _read(_write(parse_runtime(old), value), parse_runtime(old), runtime_schema(schema_file))
    for f in new["fields"]:
        expected = f["default"] if f["name"] in ADDED[schema_file] else value[f["name"]]
        assert out[f["name"]] == expected, f["name"]
    validate(schema_file, out)


def test_an_old_order_is_a_placement_and_an_old_result_decodes() -> None:
    schema = load_schema("execution.results.avsc")
    added = ADDED["execution.results.avsc"]
    old = dict(schema, fields=[f for f in schema["fields"] if f["name"] not in added])
    value = {k: v for k, v in sample_records()["execution.results.avsc"].items() if k not in added}
    decoded = _read(
        _write(parse_runtime(old), value),
        parse_runtime(old),
        runtime_schema("execution.results.avsc"),
    )
    r = result_from_avro(decoded)
    assert r.trade_id is None and r.role is None and r.reduce_only is False


def test_orders_and_results_round_trip_and_validate() -> None:
    h = Harness()
    h.feed(plan())
    entry = h.feed(decision(DecisionKind.GRANTED)).orders[0]
    assert isinstance(entry, PlaceOrder)
    fill = result(entry, OrderStatus.FILLED, "0.010", "100", t=T0 + 1)
    protective = h.feed(fill).orders
    for cmd in (entry, *protective, CancelOrder(entry, T0 + 9)):
        avro = order_to_avro(cmd)
        validate("orders.avsc", avro)
        schema = runtime_schema("orders.avsc")
        assert _read(_write(schema, avro), schema, schema) == avro
        back = order_from_avro(avro)
        if isinstance(cmd, CancelOrder):  # one event_time on the wire: the cancel's
            assert isinstance(back, CancelOrder) and back.order.client_order_id == "E-i1"
            assert back.event_time_ms == T0 + 9
        else:
            assert back == cmd
    avro = result_to_avro(fill)
    validate("execution.results.avsc", avro)
    assert result_from_avro(avro) == fill


def test_plans_and_exits_from_their_topics() -> None:
    intent = dict(sample_records()["trade.intents.avsc"], quantity="0.5")  # sized
    p = plan_from_avro(intent)
    assert p.intent_id == intent["intent_id"] and p.quantity > 0
    with pytest.raises(InvalidRecord, match="not sized"):
        plan_from_avro(dict(intent, quantity=None))
    with pytest.raises(InvalidRecord):
        plan_from_avro(dict(intent, entry_price="NaN"))
    with pytest.raises(InvalidRecord):
        plan_from_avro({"intent_id": "x"})
    x = exit_intent_from_avro(sample_records()["exit.intents.avsc"])
    assert x.reason == ExitReason.HARVEST
    with pytest.raises(InvalidRecord):
        exit_intent_from_avro(dict(sample_records()["exit.intents.avsc"], reduce_only=False))


def test_ledger_records_and_tombstones() -> None:
    h = Harness()
    h.feed(plan())
    [entry] = h.feed(decision(DecisionKind.GRANTED)).ledger_updates
    key, value = ledger_record(entry)
    assert key == b"i1" and value is not None
    validate("execution.ledger.avsc", value)
    assert ledger_update_from_record(key, value) == entry
    assert ledger_record(Forget("i1")) == (b"i1", None)
    assert ledger_update_from_record(b"i1", None) == Forget("i1")
    with pytest.raises(InvalidRecord):
        ledger_update_from_record(b"other", value)
    assert entry.orders[0].role == OrderRole.ENTRY  # type: ignore[union-attr]
