"""Avro binary bodies read and written by Python functions generated once per schema.

Why: fastavro's schemaless reader and writer walk the parsed schema for every record and,
for every union, try each branch with its validator. On the governor's hot path that cost
~7 us to read a 40-byte command and ~19 us to write a 19-field decision (py-spy of
bench/governor.py, see docs/governor-performance.md). A schema does not change, so the
walk is done once: for each record type the source of one straight-line reader and one
writer is generated and compiled, and a record then costs only its own reads and writes.

The generated functions are a fast path, never a second definition of Avro: each accepts a
strict subset of what fastavro accepts and gives byte-for-byte (writing) or
value-for-value (reading) the same result there; anything outside that subset raises
`Unusual`, and the caller (`quantum.serde.AvroSerde`) then runs fastavro itself, so errors,
messages and edge cases stay fastavro's. tests/unit/test_avro_compiled.py checks the
equivalence with hypothesis on every schema in `schemas/`, on random values and on
mutated, truncated and random bytes.

The subset:
- writing: str for string and enum (symbols only), int (not bool) in range for int/long,
  float for float/double, bool for boolean, bytes for bytes/fixed, dict for records and
  maps, list for arrays, None for null; a union is either a nullable pair (`null` and one
  other type) or a union of records written in tuple notation `(full name, dict)`;
- reading: any union, read the way fastavro's `schemaless_reader(...,
  return_record_name=True, return_record_name_override=True)` returns it, from
  well-formed bytes only (booleans 0/1, varints of at most 64 bits, lengths inside the
  buffer, strict UTF-8, array and map blocks without byte sizes).
A schema with named-type references or logical types is not compiled at all
(`compile_reader`/`compile_writer` return None). Names from a schema (a writer schema may
come from the registry) only ever enter the generated source as `repr()` literals.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

__all__ = ["Reader", "Unusual", "Writer", "compile_reader", "compile_writer"]

# read(buf, pos) -> (value, end); write(value, out) appends to the bytearray `out`.
# Both raise only Unusual for anything they do not cover.
Reader = Callable[[bytes, int], tuple[Any, int]]
Writer = Callable[[Any, bytearray], None]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_SMALL = tuple(bytes((i,)) for i in range(128))  # one-byte varints


class Unusual(Exception):  # a signal to fall back, not an error for users
    """Outside the compiled subset: let fastavro handle this value or these bytes."""


class _NotCompilable(Exception):
    pass


# ---------------------------------------------------------------------------- varints


def _zigzag(n: int) -> bytes:
    """The Avro varint of a long already known to be in range."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return _SMALL[z]
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, end) of the varint at `pos`; Unusual past 64 bits (fastavro wraps those)."""
    b = buf[pos]
    n = b & 0x7F
    shift = 7
    pos += 1
    while b & 0x80:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise Unusual("varint longer than 10 bytes")
    if n >> 64:
        raise Unusual("varint beyond 64 bits")
    return (n >> 1) ^ -(n & 1), pos


def _read_blocks(buf: bytes, pos: int) -> tuple[int, int]:
    """Item count of the next array/map block (one with a byte size is left to fastavro)."""
    n, pos = _read_long(buf, pos)
    if n < 0:
        raise Unusual("block with a byte size")
    return n, pos


# ---------------------------------------------------------------------------- schema walk


def _type_of(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        if "logicalType" in schema:
            raise _NotCompilable("logical type")
        t = schema["type"]
        if not isinstance(t, str):
            raise _NotCompilable("nested type declaration")
        if t not in _PRIMITIVES and t not in ("record", "error", "enum", "fixed", "array", "map"):
            raise _NotCompilable(f"type {t!r}")
        return "record" if t == "error" else t
    if schema in _PRIMITIVES:
        return schema
    raise _NotCompilable(f"named reference {schema!r}")


def _inline_named(schema: Any) -> Any:
    """The schema with every reference to a named type (a record, enum or fixed declared
    earlier, e.g. a vote's direction reusing the signal's enum) replaced by its
    declaration, so the generators see only declarations. A recursive type is not
    compilable."""
    named: dict[str, Any] = {}

    def walk(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(n, stack) for n in node]
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return node
            if node in stack or node not in named:
                raise _NotCompilable(f"named reference {node!r}")
            return named[node]
        if not isinstance(node, dict):
            return node
        t = node.get("type")
        name = node.get("name") if t in ("record", "error", "enum", "fixed") else None
        inner = (*stack, name) if name else stack
        out = dict(node)
        if t in ("record", "error"):
            out["fields"] = [{**f, "type": walk(f["type"], inner)} for f in node["fields"]]
        elif t == "array":
            out["items"] = walk(node["items"], inner)
        elif t == "map":
            out["values"] = walk(node["values"], inner)
        elif isinstance(t, dict | list):
            out["type"] = walk(t, inner)
        if name:
            named[name] = out
        return out

    return walk(schema, ())


class _Gen:
    """Collects generated functions and the constants they refer to by name."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.functions: list[str] = []
        self.namespace: dict[str, Any] = {
            "Unusual": Unusual,
            "_SMALL": _SMALL,
            "_zigzag": _zigzag,
            "_read_long": _read_long,
            "_read_blocks": _read_blocks,
            "_pack_d": struct.Struct("<d").pack,
            "_pack_f": struct.Struct("<f").pack,
            "_unpack_d": struct.Struct("<d").unpack_from,
            "_unpack_f": struct.Struct("<f").unpack_from,
        }

    def const(self, value: Any) -> str:
        name = f"_k{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def function(self, lines: list[str]) -> str:
        """Add `def <name>...` built from `lines` (first line without the name); its name."""
        name = f"{self.prefix}{len(self.functions)}"
        self.functions.append("\n".join([lines[0].format(name=name), *lines[1:]]))
        return name

    def build(self, entry: str) -> Any:
        exec("\n\n".join(self.functions), self.namespace)  # our own generated source
        return self.namespace[entry]


def _indent(lines: list[str], by: int = 4) -> list[str]:
    return [" " * by + line for line in lines]


# ---------------------------------------------------------------------------- writing


def compile_writer(schema: Any) -> Writer | None:
    """A writer for a fastavro-parsed runtime schema, or None if the schema is not covered."""
    gen = _Gen("_w")
    try:
        inner = _writer_function(gen, _inline_named(schema))
    except _NotCompilable:
        return None
    gen.namespace["_inner"] = gen.build(inner)
    exec(_WRITE_ENTRY, gen.namespace)
    return gen.namespace["write"]


_WRITE_ENTRY = """
def write(v, out):
    try:
        _inner(v, out)
    except (KeyError, UnicodeError, OverflowError) as exc:
        raise Unusual(f"{type(exc).__name__}: {exc}") from None
"""


def _writer_function(gen: _Gen, schema: Any) -> str:
    """A generated `f(v, out)` for `schema`; records get their own straight-line function."""
    if _type_of(schema) == "record":
        lines = ["def {name}(v, out):", "    if type(v) is not dict:", "        raise Unusual()"]
        for field in schema["fields"]:
            lines.append(f"    x = v[{field['name']!r}]")
            lines += _indent(_write_code(gen, field["type"], "x"))
        return gen.function(lines)
    return gen.function(["def {name}(x, out):", *_indent(_write_code(gen, schema, "x"))])


def _write_code(gen: _Gen, schema: Any, x: str) -> list[str]:
    """Statements that append the encoding of the value in variable `x` to `out`."""
    kind = _type_of(schema)
    if kind == "null":
        return [f"if {x} is not None:", "    raise Unusual()"]
    if kind == "boolean":
        return [
            f"if {x} is True:",
            "    out += b'\\x01'",
            f"elif {x} is False:",
            "    out += b'\\x00'",
            "else:",
            "    raise Unusual()",
        ]
    if kind in ("int", "long"):
        lo, hi = (_INT_MIN, _INT_MAX) if kind == "int" else (_LONG_MIN, _LONG_MAX)
        return [
            f"if type({x}) is not int or not {lo} <= {x} <= {hi}:",
            "    raise Unusual()",
            f"z = ({x} << 1) ^ ({x} >> 63)",  # zigzag, then 7 bits per byte, low first
            "while z > 127:",
            "    out.append(z & 127 | 128)",
            "    z >>= 7",
            "out.append(z)",
        ]
    if kind in ("float", "double"):
        return [
            f"if type({x}) is not float:",
            "    raise Unusual()",
            f"out += {'_pack_d' if kind == 'double' else '_pack_f'}({x})",
        ]
    if kind == "string":
        return [
            f"if type({x}) is not str and not isinstance({x}, str):",
            "    raise Unusual()",
            f"b = {x}.encode()",
            "k = len(b)",
            "out += _SMALL[k << 1] if k < 64 else _zigzag(k)",
            "out += b",
        ]
    if kind == "bytes":
        return [
            f"if type({x}) is not bytes:",
            "    raise Unusual()",
            f"k = len({x})",
            "out += _SMALL[k << 1] if k < 64 else _zigzag(k)",
            f"out += {x}",
        ]
    if kind == "fixed":
        return [
            f"if type({x}) is not bytes or len({x}) != {int(schema['size'])}:",
            "    raise Unusual()",
            f"out += {x}",
        ]
    if kind == "enum":
        codes = gen.const({s: _zigzag(i) for i, s in enumerate(schema["symbols"])})
        return [
            f"c = {codes}.get({x}) if type({x}) is str or isinstance({x}, str) else None",
            "if c is None:",
            "    raise Unusual()",
            "out += c",
        ]
    if kind == "record":
        return [f"{_writer_function(gen, schema)}({x}, out)"]
    if kind == "array":
        item = _writer_function(gen, schema["items"])
        return [
            f"if type({x}) is not list:",
            "    raise Unusual()",
            f"if {x}:",
            f"    out += _zigzag(len({x}))",
            f"    for y in {x}:",
            f"        {item}(y, out)",
            "out += b'\\x00'",
        ]
    if kind == "map":
        value = _writer_function(gen, schema["values"])
        key = _writer_function(gen, "string")
        return [
            f"if type({x}) is not dict:",
            "    raise Unusual()",
            f"if {x}:",
            f"    out += _zigzag(len({x}))",
            f"    for y, z in {x}.items():",
            "        if type(y) is not str:",
            "            raise Unusual()",
            f"        {key}(y, out)",
            f"        {value}(z, out)",
            "out += b'\\x00'",
        ]
    return _union_write_code(gen, schema, x)


def _union_write_code(gen: _Gen, branches: list[Any], x: str) -> list[str]:
    kinds = [_type_of(b) for b in branches]
    if len(branches) == 2 and kinds.count("null") == 1 and "union" not in kinds:
        null_index = kinds.index("null")
        other = branches[1 - null_index]
        # (a record branch takes a dict; fastavro's (name, dict) form is Unusual: fallback)
        return [
            f"if {x} is None:",
            f"    out += {gen.const(_zigzag(null_index))}",
            "else:",
            f"    out += {gen.const(_zigzag(1 - null_index))}",
            *_indent(_write_code(gen, other, x)),
        ]
    if branches and all(k == "record" for k in kinds):
        lines = [
            f"if type({x}) is not tuple or len({x}) != 2:",
            "    raise Unusual()",
            f"y = {x}[0]",
        ]
        for i, branch in enumerate(branches):
            lines += [
                f"{'if' if i == 0 else 'elif'} y == {branch['name']!r}:",
                f"    out += {gen.const(_zigzag(i))}",
                f"    {_writer_function(gen, branch)}({x}[1], out)",
            ]
        return [*lines, "else:", "    raise Unusual()"]
    raise _NotCompilable("union shape")


# ---------------------------------------------------------------------------- reading


def compile_reader(schema: Any) -> Reader | None:
    """A reader for a fastavro-parsed runtime schema, or None if the schema is not covered."""
    gen = _Gen("_r")
    try:
        inner = _reader_function(gen, _inline_named(schema))
    except _NotCompilable:
        return None
    gen.namespace["_inner"] = gen.build(inner)
    exec(_READ_ENTRY, gen.namespace)
    return gen.namespace["read"]


_READ_ENTRY = """
def read(buf, pos):
    try:
        return _inner(buf, pos)
    except (IndexError, UnicodeDecodeError, struct_error) as exc:
        raise Unusual(f"{type(exc).__name__}: {exc}") from None
"""


def _reader_function(gen: _Gen, schema: Any) -> str:
    """A generated `f(buf, pos) -> (value, pos)`; records read field by field, inline."""
    gen.namespace["struct_error"] = struct.error
    if _type_of(schema) == "record":
        lines = ["def {name}(buf, pos):", "    n = len(buf)"]
        names = []
        for i, field in enumerate(schema["fields"]):
            lines += _indent(_read_code(gen, field["type"], f"f{i}"))
            names.append(f"{field['name']!r}: f{i}")
        lines.append(f"    return {{{', '.join(names)}}}, pos")
        return gen.function(lines)
    body = _indent(_read_code(gen, schema, "v"))
    return gen.function(["def {name}(buf, pos):", "    n = len(buf)", *body, "    return v, pos"])


def _read_index(into: str) -> list[str]:
    """Read a varint into `into` (the same as `_read_long`, inline)."""
    return [
        "b = buf[pos]",
        "pos += 1",
        "if b < 128:",
        f"    {into} = (b >> 1) ^ -(b & 1)",
        "else:",
        "    z = b & 127",
        "    sh = 7",
        "    while True:",
        "        b = buf[pos]",
        "        pos += 1",
        "        z |= (b & 127) << sh",
        "        if b < 128:",
        "            break",
        "        sh += 7",
        "        if sh > 63:",
        "            raise Unusual()",
        "    if z >> 64:",
        "        raise Unusual()",
        f"    {into} = (z >> 1) ^ -(z & 1)",
    ]


def _read_code(gen: _Gen, schema: Any, v: str) -> list[str]:
    """Statements that read one value of `schema` at `pos` into variable `v`, moving `pos`."""
    kind = _type_of(schema)
    if kind == "null":
        return [f"{v} = None"]
    if kind == "boolean":
        return ["b = buf[pos]", "if b > 1:", "    raise Unusual()", f"{v} = b == 1", "pos += 1"]
    if kind in ("int", "long"):  # fastavro reads an int as a long, without a range check
        return _read_index(v)
    if kind in ("float", "double"):
        fn, size = ("_unpack_d", 8) if kind == "double" else ("_unpack_f", 4)
        return [f"{v} = {fn}(buf, pos)[0]", f"pos += {size}"]
    if kind in ("string", "bytes"):
        convert = ".decode()" if kind == "string" else ""
        return [
            "b = buf[pos]",
            "if b < 128 and not b & 1:",
            "    s = pos + 1",
            "    pos = s + (b >> 1)",
            "else:",
            "    k, s = _read_long(buf, pos)",
            "    if k < 0:",
            "        raise Unusual()",
            "    pos = s + k",
            "if pos > n:",
            "    raise Unusual()",
            f"{v} = buf[s:pos]{convert}",
        ]
    if kind == "fixed":
        size = int(schema["size"])
        return [
            f"if pos + {size} > n:",
            "    raise Unusual()",
            f"{v} = buf[pos:pos + {size}]",
            f"pos += {size}",
        ]
    if kind == "enum":
        symbols = gen.const(tuple(schema["symbols"]))
        return [
            *_read_index("i"),
            f"if not 0 <= i < {len(schema['symbols'])}:",
            "    raise Unusual()",
            f"{v} = {symbols}[i]",
        ]
    if kind == "record":
        return [f"{v}, pos = {_reader_function(gen, schema)}(buf, pos)"]
    if kind == "array":
        item = _reader_function(gen, schema["items"])
        return [
            f"{v} = []",
            "c, pos = _read_blocks(buf, pos)",
            "while c:",
            "    for _ in range(c):",
            f"        y, pos = {item}(buf, pos)",
            f"        {v}.append(y)",
            "    c, pos = _read_blocks(buf, pos)",
        ]
    if kind == "map":
        value = _reader_function(gen, schema["values"])
        key = _reader_function(gen, "string")
        return [
            f"{v} = {{}}",
            "c, pos = _read_blocks(buf, pos)",
            "while c:",
            "    for _ in range(c):",
            f"        y, pos = {key}(buf, pos)",
            f"        {v}[y], pos = {value}(buf, pos)",
            "    c, pos = _read_blocks(buf, pos)",
        ]
    return _union_read_code(gen, schema, v)


def _union_read_code(gen: _Gen, branches: list[Any], v: str) -> list[str]:
    kinds = [_type_of(b) for b in branches]
    if "union" in kinds:
        raise _NotCompilable("union in a union")
    # fastavro (return_record_name=True, return_record_name_override=True): a record branch
    # comes back as (full name, dict) unless it is the union's only record.
    named = kinds.count("record") > 1
    lines = _read_index("i")
    for i, (branch, kind) in enumerate(zip(branches, kinds, strict=True)):
        lines.append(f"{'if' if i == 0 else 'elif'} i == {i}:")
        if kind == "record":
            reader = _reader_function(gen, branch)
            if named:
                lines += [f"    y, pos = {reader}(buf, pos)", f"    {v} = ({branch['name']!r}, y)"]
            else:
                lines.append(f"    {v}, pos = {reader}(buf, pos)")
        else:
            lines += _indent(_read_code(gen, branch, v))
    return [*lines, "else:", "    raise Unusual()"]
