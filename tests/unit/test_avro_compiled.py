"""The compiled Avro fast path is fastavro, only faster: same bytes, same values, and on
anything outside its subset it steps aside (`Unusual`) instead of answering differently.

Every schema in `schemas/` is checked with random values drawn from the schema itself and
with random, mutated and truncated bytes.
"""

from __future__ import annotations

import io
import math
import struct
from enum import StrEnum
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantum.avro_compiled import Unusual, _inline_named, compile_reader, compile_writer
from quantum.schemas import parse_runtime, runtime_schema, schema_files
from tests.unit.test_serde import sample_records

SCHEMAS = schema_files()


def _fast_write(schema: Any, value: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, value)
    return out.getvalue()


def _fast_read(schema: Any, data: bytes) -> tuple[Any, int]:
    buf = io.BytesIO(data)
    value = fastavro.schemaless_reader(
        buf, schema, None, return_record_name=True, return_record_name_override=True
    )
    return value, buf.tell()


def _compiled_write(schema: Any, value: Any) -> bytes:
    writer = compile_writer(schema)
    assert writer is not None
    out = bytearray()
    writer(value, out)
    return bytes(out)


def _compiled_read(schema: Any, data: bytes) -> tuple[Any, int]:
    reader = compile_reader(schema)
    assert reader is not None
    return reader(data, 0)


def _same(a: Any, b: Any) -> bool:
    """Equal, with floats compared bit for bit (NaN == NaN) and types kept apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def values(schema: Any, text: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Any]:
    """Values of a runtime schema, in the shapes the compiled writer covers (`text`: the
    strategy for string fields, any text by default). Named references are resolved first."""
    schema = _inline_named(schema)
    if isinstance(schema, list):
        records = [b for b in schema if isinstance(b, dict) and b.get("type") == "record"]
        if records and len(records) == len(schema):
            return st.one_of(
                *[values(b, text).map(lambda v, n=b["name"]: (n, v)) for b in records]  # type: ignore[misc]
            )
        return st.one_of(*[values(b, text) for b in schema])
    kind = schema["type"] if isinstance(schema, dict) else schema
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: values(f["type"], text) for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(values(schema["items"], text), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=5), values(schema["values"], text), max_size=4)
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-(1 << 31), (1 << 31) - 1),
        "long": st.integers(-(1 << 63), (1 << 63) - 1),
        "float": st.floats(width=32),
        "double": st.floats(),
        "bytes": st.binary(max_size=80),
        "string": st.text(max_size=80) if text is None else text,
    }[kind]


@pytest.mark.parametrize("schema_file", SCHEMAS)
def test_every_project_schema_compiles(schema_file: str) -> None:
    schema = runtime_schema(schema_file)
    assert compile_writer(schema) is not None
    assert compile_reader(schema) is not None


@pytest.mark.parametrize("schema_file", SCHEMAS)
def test_samples_match_fastavro(schema_file: str) -> None:
    schema = runtime_schema(schema_file)
    value = sample_records()[schema_file]
    data = _fast_write(schema, value)
    assert _compiled_write(schema, value) == data
    assert _same(_compiled_read(schema, data), _fast_read(schema, data))


@given(schema_file=st.sampled_from(SCHEMAS), data=st.data())
def test_random_values_match_fastavro(schema_file: str, data: st.DataObject) -> None:
    schema = runtime_schema(schema_file)
    value = data.draw(values(schema))
    encoded = _fast_write(schema, value)
    assert _compiled_write(schema, value) == encoded
    assert _same(_compiled_read(schema, encoded), _fast_read(schema, encoded))


def mutations(encoded: bytes) -> st.SearchStrategy[bytes]:
    n = len(encoded)
    return st.one_of(
        st.integers(0, max(n - 1, 0)).map(lambda i: encoded[:i]),  # truncated
        st.tuples(st.integers(0, max(n - 1, 0)), st.integers(0, 7)).map(
            lambda t: (
                encoded[: t[0]] + bytes([encoded[t[0]] ^ (1 << t[1])]) + encoded[t[0] + 1 :]
                if n
                else encoded
            )
        ),  # one bit flipped
        st.binary(min_size=1, max_size=8).map(lambda extra: encoded + extra),  # trailing
        st.binary(max_size=64),  # anything
    )


@given(schema_file=st.sampled_from(SCHEMAS), data=st.data())
def test_bad_bytes_are_fastavros_to_judge(schema_file: str, data: st.DataObject) -> None:
    """Whatever the compiled reader accepts, fastavro reads the same way; the rest it hands
    back (Unusual) for fastavro to read or reject."""
    schema = runtime_schema(schema_file)
    encoded = _fast_write(schema, data.draw(values(schema)))
    mutated = data.draw(mutations(encoded))
    try:
        got = _compiled_read(schema, mutated)
    except Unusual:
        return
    assert _same(got, _fast_read(schema, mutated))


class _Side(StrEnum):
    LONG = "LONG"


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ("double", 3),  # an int where a double goes: fastavro converts it
        ("long", True),  # a bool where a long goes
        ("long", 1 << 63),  # out of range
        ("int", 1 << 31),
        ("float", 1e300),  # not representable as a float32
        ("string", b"bytes"),
        ("string", "\udcff"),  # a lone surrogate: not UTF-8
        (["null", "double"], 1),
        ({"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}, {}),
        (
            {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]},
            {"a": 1, "extra": 2},
        ),
        ({"type": "enum", "name": "E", "symbols": ["LONG", "SHORT"]}, _Side.LONG),
        ({"type": "enum", "name": "E", "symbols": ["LONG", "SHORT"]}, "FLAT"),
        (["null", {"type": "enum", "name": "E", "symbols": ["LONG"]}], "LONG"),
    ],
)
def test_unusual_values_are_written_as_fastavro_writes_them_or_left_to_it(
    schema: Any, value: Any
) -> None:
    parsed = parse_runtime(schema) if isinstance(schema, dict | list) else schema
    try:
        expected: bytes | None = _fast_write(parsed, value)
    except Exception:
        expected = None
    try:
        got = _compiled_write(parsed, value)
    except Unusual:
        return
    assert got == expected


@pytest.mark.parametrize(
    "value", [0, -1, 1, 63, -64, 64, 1 << 31, -(1 << 63), (1 << 63) - 1, 1234567890123]
)
def test_varints_at_the_edges(value: int) -> None:
    data = _fast_write("long", value)
    assert _compiled_write("long", value) == data
    assert _compiled_read("long", data) == (value, len(data))


def test_overlong_varints_are_left_to_fastavro() -> None:
    with pytest.raises(Unusual):
        _compiled_read("long", b"\xff" * 10 + b"\x01")
    with pytest.raises(Unusual):
        _compiled_read("long", b"\xff" * 9 + b"\x02")  # 65 bits


def test_non_canonical_boolean_is_left_to_fastavro() -> None:
    with pytest.raises(Unusual):
        _compiled_read("boolean", b"\x02")


def test_named_references_compile_as_their_declaration() -> None:
    schema = parse_runtime(
        {
            "type": "record",
            "name": "R",
            "fields": [
                {"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}},
                {"name": "b", "type": "E"},
            ],
        }
    )
    value = {"a": "X", "b": "Y"}
    data = _fast_write(schema, value)
    assert _compiled_write(schema, value) == data
    assert _same(_compiled_read(schema, data), _fast_read(schema, data))


def test_recursive_types_are_not_compiled() -> None:
    schema = parse_runtime(
        {
            "type": "record",
            "name": "Node",
            "fields": [{"name": "next", "type": ["null", "Node"]}],
        }
    )
    assert compile_writer(schema) is None
    assert compile_reader(schema) is None


def test_nan_is_kept_bit_for_bit() -> None:
    data = _fast_write("double", math.nan)
    assert _compiled_write("double", math.nan) == data
    assert math.isnan(_compiled_read("double", data)[0])
