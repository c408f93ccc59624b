"""Schemas against the real registry (Apicurio's Confluent-compatible API): wire round trip,
register/check/diff, and an incompatible change refused with a readable message.

Only the registry is used (no Kafka); subjects live under the test's own topic prefix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema

from quantum import schemas
from quantum.app.settings import Settings
from quantum.errors import DecodeError, InvalidRecord, SchemaRegistrationError
from quantum.serde import AvroSerde
from quantum.validation import validate
from tests.unit.test_serde import sample_records
from topologies import schema_cli, schema_tool
from topologies.declaration import MARKET_TICKS, TOPOLOGY

pytestmark = pytest.mark.broker

COMMITTED_DIR = schemas.SCHEMA_DIR  # before any test swaps the directory


@pytest.fixture
def registry_url(broker: Any) -> str:
    return broker.registry_url


@pytest.fixture
def reg_settings(registry_url: str, topic_prefix: str) -> Settings:
    """Registry-only settings with this test's prefix (no broker topics are made here)."""
    return Settings(
        kafka={"topic_prefix": topic_prefix},
        registry={"url": registry_url, "timeout_s": 10.0},
    )


@pytest.fixture
def serde(reg_settings: Settings) -> AvroSerde:
    return AvroSerde.from_settings(reg_settings)


@pytest.fixture
def incompatible_ticks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A working copy where Kline gained a required field without a default."""
    for name in schemas.schema_files():
        (tmp_path / name).write_text((schemas.SCHEMA_DIR / name).read_text())
    ticks = schemas.load_schema("market.ticks.avsc")
    ticks["fields"].append({"name": "vwap", "type": "string", "doc": "Volume-weighted price."})
    ticks["fields"][-2]["doc"] = "changed doc"
    (tmp_path / "market.ticks.avsc").write_text(json.dumps(ticks))
    monkeypatch.setattr(schemas, "SCHEMA_DIR", tmp_path)
    for fn in (schemas._load, schemas.schema_text, schemas.runtime_schema):
        fn.cache_clear()
    yield
    for fn in (schemas._load, schemas.schema_text, schemas.runtime_schema):
        fn.cache_clear()


def test_round_trip_through_the_registry(serde: AvroSerde, reg_settings: Settings) -> None:
    for schema_file, value in sample_records().items():
        topic = reg_settings.topic(schema_file.removesuffix(".avsc"))
        data = serde.encode(topic, value, schema_file=schema_file)
        fresh = AvroSerde.from_settings(reg_settings)  # a reader that never saw the writer
        assert fresh.decode(topic, data, schema_file=schema_file) == value


def test_ids_are_stable_across_serdes(serde: AvroSerde, reg_settings: Settings) -> None:
    topic = reg_settings.topic("orders")
    a = serde.schema_id(topic, "orders.avsc")
    b = AvroSerde.from_settings(reg_settings).schema_id(topic, "orders.avsc")
    assert a == b


def test_unknown_id_and_garbage_are_decode_errors(serde: AvroSerde, reg_settings: Settings) -> None:
    topic = reg_settings.topic(MARKET_TICKS)
    with pytest.raises(DecodeError) as err:
        serde.decode(topic, b"\x00\x7f\xff\xff\xf0abc", schema_file="market.ticks.avsc")
    assert err.value.reason == "UNKNOWN_SCHEMA_ID"
    with pytest.raises(DecodeError) as err:
        serde.decode(topic, b"\xde\xad\xbe\xef garbage", schema_file="market.ticks.avsc")
    assert err.value.reason == "MALFORMED_FRAME"
    # a real frame of another record type
    data = serde.encode(topic + "x", sample_records()["orders.avsc"], schema_file="orders.avsc")
    with pytest.raises(DecodeError) as err:
        serde.decode(topic, data, schema_file="market.ticks.avsc")
    assert err.value.reason == "SCHEMA_MISMATCH"


def test_nan_price_decodes_but_fails_validation(serde: AvroSerde, reg_settings: Settings) -> None:
    topic = reg_settings.topic(MARKET_TICKS)
    value = sample_records()["market.ticks.avsc"]
    value["close"] = "NaN"
    decoded = serde.decode(
        topic,
        serde.encode(topic, value, schema_file="market.ticks.avsc"),
        schema_file="market.ticks.avsc",
    )
    assert decoded["close"] == "NaN"
    with pytest.raises(InvalidRecord) as err:
        validate("market.ticks.avsc", decoded)
    assert err.value.reason == "INVALID_VALUE" and "'close'" in str(err.value)


def test_register_all_then_check_all_ok(reg_settings: Settings) -> None:
    expected = [t for t in TOPOLOGY.all_topics() if t.schema]
    before = schema_tool.check(reg_settings)
    assert [r.status for r in before] == ["new"] * len(expected)

    results = schema_tool.register(reg_settings)
    assert len(results) == len(expected)
    assert all(r.status == "registered" and r.schema_id is not None for r in results)
    assert {r.subject for r in results} == {f"{reg_settings.topic(t.name)}-value" for t in expected}
    again = schema_tool.register(reg_settings)  # idempotent: same ids
    assert [r.schema_id for r in again] == [r.schema_id for r in results]

    after = schema_tool.check(reg_settings)
    assert all(r.status == "ok" for r in after), after
    assert all(d.status == "same" for d in schema_tool.diff(reg_settings))


def test_incompatible_change_is_refused_everywhere(
    reg_settings: Settings, incompatible_ticks: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # register the committed schema first (the fixture only swapped the directory)
    committed = json.loads((COMMITTED_DIR / "market.ticks.avsc").read_text())

    client = schema_tool.client_for(reg_settings)
    subject = f"{reg_settings.topic(MARKET_TICKS)}-value"
    client.register_schema(subject, Schema(json.dumps(committed), "AVRO"))

    [result] = schema_tool.check(reg_settings, topics=[MARKET_TICKS])
    assert result.status == "INCOMPATIBLE"
    assert "vwap" in result.message

    [diffed] = schema_tool.diff(reg_settings, topics=[MARKET_TICKS])
    assert diffed.status == "changed"
    text = [str(c) for c in diffed.changes]
    assert "+ io.quantumtrader.Kline.vwap: string, no default (breaks BACKWARD)" in text
    assert any("doc changed" in t for t in text)

    [refused] = schema_tool.register(reg_settings, topics=[MARKET_TICKS])
    assert refused.status == "REFUSED"
    assert "vwap" in refused.message and "how to proceed" in refused.message

    # the serde refuses it too, with a SchemaRegistrationError (not a poison record)
    with pytest.raises(SchemaRegistrationError) as err:
        AvroSerde.from_settings(reg_settings).schema_id(
            reg_settings.topic(MARKET_TICKS), "market.ticks.avsc"
        )
    assert err.value.status == 409

    # the CLI: exit code 1 and readable lines
    import argparse

    args = argparse.Namespace(topic=[MARKET_TICKS], verbose=False)
    assert schema_cli._check(args, reg_settings) == 1
    assert schema_cli._register(args, reg_settings) == 1
    assert schema_cli._diff(args, reg_settings) == 0
    out = capsys.readouterr().out
    assert "INCOMPATIBLE" in out and "REFUSED" in out and "vwap" in out


def test_subject_compatibility_level_is_enforced(reg_settings: Settings) -> None:
    """PUT /config/{subject} is honoured: FORWARD refuses a change BACKWARD would accept."""
    client = schema_tool.client_for(reg_settings)
    subject = f"{reg_settings.topic('compat')}-value"
    v1 = {
        "type": "record",
        "name": "A",
        "fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "string"}],
    }
    v2 = {"type": "record", "name": "A", "fields": [{"name": "a", "type": "string"}]}
    client.register_schema(subject, Schema(json.dumps(v1), "AVRO"))
    client.set_compatibility(subject, "FORWARD")
    assert client.get_compatibility(subject) == "FORWARD"
    assert client.test_compatibility(subject, Schema(json.dumps(v2), "AVRO")) is False
    client.set_compatibility(subject, "BACKWARD")
    assert client.test_compatibility(subject, Schema(json.dumps(v2), "AVRO")) is True


def test_cli_unknown_topic_is_a_user_error(reg_settings: Settings) -> None:
    import argparse

    from quantum.errors import CliError

    with pytest.raises(CliError, match=r"no\.such\.topic"):
        schema_cli._check(argparse.Namespace(topic=["no.such.topic"], verbose=False), reg_settings)


def test_the_governors_new_enum_symbols_are_backward_compatible(reg_settings: Settings) -> None:
    """Issue 7 appended decision kinds and deny reasons; the schema before them (the same
    file with those symbols taken out) is registered first, as on a running deployment."""
    added = {
        "DecisionKind": ["FILL_IGNORED", "FILL_SYMBOL_HELD", "CONFIG_CHANGED"],
        "DenyReason": ["ROTATION_PENDING", "WITHDRAWN", "DUPLICATE_INTENT"],
    }
    before = schemas.load_schema("portfolio.decisions.avsc")
    before = json.loads(json.dumps(before))  # a copy
    for field in before["fields"]:
        for t in field["type"] if isinstance(field["type"], list) else [field["type"]]:
            if isinstance(t, dict) and t.get("name") in added:
                assert t["symbols"][-3:] == added[t["name"]]  # appended, never inserted
                t["symbols"] = t["symbols"][:-3]
    client = schema_tool.client_for(reg_settings)
    subject = f"{reg_settings.topic('portfolio.decisions')}-value"
    client.register_schema(subject, Schema(json.dumps(before), "AVRO"))
    [result] = schema_tool.check(reg_settings, topics=["portfolio.decisions"])
    assert result.status == "ok", result.message
    [diffed] = schema_tool.diff(reg_settings, topics=["portfolio.decisions"])
    assert not any("breaks BACKWARD" in str(c) for c in diffed.changes), diffed.changes
