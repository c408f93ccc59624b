"""The grown exit-reason enum against the real registry: BACKWARD-compatible with the
schema as it was, so it registers over it under the default compatibility rule."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema

from quantum.app.settings import Settings
from quantum.schemas import load_schema
from tests.unit.test_exit_contract import SYMBOLS_BEFORE, _reason_enum
from topologies import schema_tool
from topologies.declaration import EXIT_INTENTS

pytestmark = pytest.mark.broker


def test_new_exit_reasons_are_backward_compatible(broker: Any, topic_prefix: str) -> None:
    settings = Settings(
        kafka={"topic_prefix": topic_prefix},
        registry={"url": broker.registry_url, "timeout_s": 10.0},
    )
    new = load_schema("exit.intents.avsc")
    old = copy.deepcopy(new)
    _reason_enum(old)["symbols"] = SYMBOLS_BEFORE
    del _reason_enum(old)["default"]
    client = schema_tool.client_for(settings)
    subject = f"{settings.topic(EXIT_INTENTS)}-value"
    client.register_schema(subject, Schema(json.dumps(old), "AVRO"))
    client.set_compatibility(subject, "BACKWARD")
    assert client.test_compatibility(subject, Schema(json.dumps(new), "AVRO")) is True
    [result] = schema_tool.register(settings, topics=[EXIT_INTENTS])
    assert result.status == "registered", result.message
    # The check is real: without the enum default a removed symbol is refused. With it, the
    # registry accepts the removal (old HARVEST records would read as OTHER), so it is the
    # unit test of the symbol order, not the registry, that keeps symbols from being removed.
    shrunk = copy.deepcopy(new)
    _reason_enum(shrunk)["symbols"].remove("HARVEST")
    assert client.test_compatibility(subject, Schema(json.dumps(shrunk), "AVRO")) is True
    del _reason_enum(shrunk)["default"]
    _reason_enum(shrunk)["symbols"].remove("OTHER")
    assert client.test_compatibility(subject, Schema(json.dumps(shrunk), "AVRO")) is False
