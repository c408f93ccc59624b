"""`decode_command` decides through the fast path (generated reader, conversion of an
already validated record) exactly what the reference path decides (fastavro, then
`command_from_avro`): the same command, or the same poison reason and message."""

from __future__ import annotations

from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import given
from hypothesis import strategies as st

from agents.governor.codec import COMMAND_SCHEMA
from agents.governor.io import decode_command
from quantum.errors import PoisonRecord
from quantum.schemas import runtime_schema
from quantum.serde import AvroSerde
from tests.unit.test_avro_compiled import mutations, values

FAST = AvroSerde(SchemaRegistryClient.new_client({"url": "mock://decode-path"}))
REFERENCE = AvroSerde(FAST.client, compiled=False)
TOPIC = "portfolio"

# Strings that make commands valid, and ones each check must catch.
BOTH = ["100", "25", "1E3"]  # valid as a symbol and as an amount: most commands are valid
VALID = ["BTCUSDT", "0.00000001", "+5", ".5", "7.", "0", "i-1", "c:1"]
INVALID = ["-1", "NaN", "inf", "-Infinity", "1_0", " 1", "", "btcusdt", "B", "1" * 21]
TEXT = st.one_of(
    st.sampled_from(BOTH), st.sampled_from(BOTH), st.sampled_from(VALID + INVALID), st.text()
)
COMMAND_VALUES = values(runtime_schema(COMMAND_SCHEMA), TEXT)
SLOT_REQUEST = {
    "command": (
        "io.quantumtrader.SlotRequest",
        {
            "intent_id": "i-1",
            "symbol": "BTCUSDT",
            "side": "LONG",
            "notional": "1e3",
            "score": 0.5,
            "event_time_ms": 1,
        },
    )
}


def _outcome(serde: AvroSerde, data: bytes) -> Any:
    try:
        return repr(decode_command(serde, TOPIC, data))  # repr: Decimal("1.0") != "1.00"
    except PoisonRecord as exc:
        return type(exc).__name__, exc.reason, str(exc)


@given(value=COMMAND_VALUES, data=st.data())
def test_fast_and_reference_paths_decide_alike(value: dict[str, Any], data: st.DataObject) -> None:
    encoded = REFERENCE.encode(TOPIC, value, schema_file=COMMAND_SCHEMA)
    assert FAST.encode(TOPIC, value, schema_file=COMMAND_SCHEMA) == encoded
    assert _outcome(FAST, encoded) == _outcome(REFERENCE, encoded)
    mutated = encoded[:5] + data.draw(mutations(encoded[5:]))
    assert _outcome(FAST, mutated) == _outcome(REFERENCE, mutated)


def test_some_generated_commands_are_valid() -> None:
    """The property above is about commands too, not only about poison."""
    encoded = REFERENCE.encode(TOPIC, SLOT_REQUEST, schema_file=COMMAND_SCHEMA)
    assert _outcome(FAST, encoded) == _outcome(REFERENCE, encoded)
    assert _outcome(FAST, encoded).startswith("SlotRequest(")


def test_a_cut_record_gives_the_same_message_on_both_paths_and_every_run() -> None:
    """Each cut of a valid command is poison with one message on both paths, and no memory
    address in it (fastavro's EOFError names its BytesIO object: CI 2026-11-26 saw the two
    paths' messages differ only in that address)."""
    encoded = REFERENCE.encode(TOPIC, SLOT_REQUEST, schema_file=COMMAND_SCHEMA)
    messages = []
    for cut in range(6, len(encoded)):
        fast, reference = _outcome(FAST, encoded[:cut]), _outcome(REFERENCE, encoded[:cut])
        assert fast == reference and isinstance(fast, tuple), (cut, fast, reference)
        messages.append(fast[2])
    assert any("EOFError" in m for m in messages), messages
    assert not any(" at 0x" in m for m in messages), messages
