"""Frozen model dataclasses <-> Avro dicts, one converter pair generated per class.

`to_avro(obj)` gives the dict fastavro writes; `from_avro(cls, d)` builds the dataclass
from what `AvroSerde.decode` returns. The field names are the Avro field names (or
`field(metadata={"avro": "name"})`). Per field type:

- str, int, float, bool, bytes, Literal[...]: as they are;
- Enum / StrEnum: its value (Avro enum symbol or string), back through `Cls(value)`;
- Decimal: a canonical decimal string (`quantum.schemas.format_decimal`), back through
  `parse_decimal`, which refuses NaN, Infinity and garbage;
- X | None: None stays None;
- a nested dataclass: a nested record, converted the same way;
- list[X], tuple[X, ...]: an Avro array; dict[str, X]: an Avro map.

Why generated code: the converters run once per record on every hot path, and walking
`dataclasses.fields` and type hints per call costs several times the conversion itself.
The first use of a class resolves its type hints and `exec`s one plain function per
direction (field reads and a dict display, nothing else); later calls are one dict
lookup and that function. A type it cannot map (a union of two records, a set) raises
TypeError when the class is first used, not on some later record.

A value that cannot be converted back (missing field, unknown enum symbol, bad decimal)
raises `InvalidRecord("INVALID_VALUE", ...)` naming the class, so an agent's shell
dead-letters it like any other poison record.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from quantum.errors import InvalidRecord
from quantum.schemas import NAMESPACE, format_decimal, parse_decimal

T = TypeVar("T")

_NONE_TYPE = type(None)
_PLAIN = (str, int, float, bool, bytes)

_TO: dict[type, Callable[[Any], dict[str, Any]]] = {}
_FROM: dict[type, Callable[[dict[str, Any]], Any]] = {}
_COMPILING: set[type] = set()


def to_avro(obj: Any) -> dict[str, Any]:
    """The Avro dict of a dataclass instance."""
    cls = type(obj)
    fn = _TO.get(cls)
    if fn is None:
        fn = _compile(cls)[0]
    return fn(obj)


def from_avro(cls: type[T], data: dict[str, Any]) -> T:
    """The `cls` instance of a decoded Avro dict; InvalidRecord if it does not convert."""
    fn = _FROM.get(cls)
    if fn is None:
        fn = _compile(cls)[1]
    return fn(data)


def converters(
    cls: type[T],
) -> tuple[Callable[[T], dict[str, Any]], Callable[[dict[str, Any]], T]]:
    """(to_avro, from_avro) for `cls`, compiled now: for hot loops, and to fail early."""
    return _compile(cls)


class _Builder:
    """Generates the source of one class's two functions, naming helpers in `ns`."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.ns: dict[str, Any] = {
            "_fmt_dec": format_decimal,
            "_parse_dec": parse_decimal,
            "_Invalid": InvalidRecord,
            "_cls": cls,
        }
        self.depth = 0

    def name(self, value: Any, hint: str) -> str:
        key = f"_{hint}{len(self.ns)}"
        self.ns[key] = value
        return key

    # Each returns the expression converting `x`, or None when the value passes unchanged.

    def out(self, tp: Any, x: str) -> str | None:
        kind, args = _classify(tp, self.cls)
        if kind == "plain":
            return None
        if kind == "decimal":
            return f"_fmt_dec({x})"
        if kind == "enum":
            return f"{x}.value"
        if kind == "record":
            return f"{self.name(_lazy_to(args[0]), 'to')}({x})"
        if kind == "optional":
            inner = self.out(args[0], x)
            return None if inner is None else f"(None if {x} is None else {inner})"
        v = self._loop_var()
        if kind in ("list", "tuple"):
            inner = self.out(args[0], v)
            return f"list({x})" if inner is None else f"[{inner} for {v} in {x}]"
        if kind == "map":
            inner = self.out(args[0], v)
            return f"dict({x})" if inner is None else f"{{k: {inner} for k, {v} in {x}.items()}}"
        raise AssertionError(kind)

    def back(self, tp: Any, x: str) -> str | None:
        kind, args = _classify(tp, self.cls)
        if kind == "plain":
            return None
        if kind == "decimal":
            return f"_parse_dec({x})"
        if kind == "enum":
            return f"{self.name(args[0], 'enum')}({x})"
        if kind == "record":
            return f"{self.name(_lazy_from(args[0]), 'from')}({x})"
        if kind == "optional":
            inner = self.back(args[0], x)
            return None if inner is None else f"(None if {x} is None else {inner})"
        v = self._loop_var()
        inner = self.back(args[0], v)
        if kind == "list":
            return f"list({x})" if inner is None else f"[{inner} for {v} in {x}]"
        if kind == "tuple":
            return f"tuple({x})" if inner is None else f"tuple([{inner} for {v} in {x}])"
        if kind == "map":
            return f"dict({x})" if inner is None else f"{{k: {inner} for k, {v} in {x}.items()}}"
        raise AssertionError(kind)

    def _loop_var(self) -> str:
        self.depth += 1
        return f"v{self.depth}"


def _classify(tp: Any, owner: type) -> tuple[str, tuple[Any, ...]]:
    if tp in _PLAIN or tp is Any:
        return "plain", ()
    if tp is Decimal:
        return "decimal", ()
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "enum", (tp,)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return "record", (tp,)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "plain", ()
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not _NONE_TYPE]
        if len(rest) == 1 and len(args) == 2:
            return "optional", (rest[0],)
    elif origin is list and len(args) == 1:
        return "list", args
    elif origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return "tuple", (args[0],)
    elif origin is dict and len(args) == 2 and args[0] is str:
        return "map", (args[1],)
    raise TypeError(f"{owner.__name__}: no Avro mapping for field type {tp!r}")


def _lazy_to(cls: type) -> Callable[[Any], dict[str, Any]]:
    """The nested class's converter: compiled now, or, for a class that nests itself
    (directly or not), looked up at call time."""
    if cls not in _COMPILING:
        return _compile(cls)[0]
    return lambda obj: _TO[cls](obj)


def _lazy_from(cls: type) -> Callable[[dict[str, Any]], Any]:
    if cls not in _COMPILING:
        return _compile(cls)[1]
    return lambda data: _FROM[cls](data)


def _compile(cls: type) -> tuple[Callable[[Any], dict[str, Any]], Callable[[dict[str, Any]], Any]]:
    if cls in _TO:
        return _TO[cls], _FROM[cls]
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass")
    _COMPILING.add(cls)
    try:
        return _generate(cls)
    finally:
        _COMPILING.discard(cls)


def _generate(
    cls: type,
) -> tuple[Callable[[Any], dict[str, Any]], Callable[[dict[str, Any]], Any]]:
    hints = typing.get_type_hints(cls)
    b = _Builder(cls)
    out_items, back_items, out_pre, back_pre = [], [], [], []
    for i, f in enumerate(f for f in dataclasses.fields(cls) if f.init):
        avro = f.metadata.get("avro", f.name)
        tp = hints[f.name]
        out = b.out(tp, f"a{i}")
        if out is None:
            out_items.append(f"{avro!r}: obj.{f.name}")
        else:
            out_pre.append(f"    a{i} = obj.{f.name}")
            out_items.append(f"{avro!r}: {out}")
        back = b.back(tp, f"b{i}")
        if back is None:
            back_items.append(f"{f.name}=d[{avro!r}]")
        else:
            back_pre.append(f"        b{i} = d[{avro!r}]")
            back_items.append(f"{f.name}={back}")
    source = "\n".join(
        [
            "def to_avro(obj):",
            *out_pre,
            f"    return {{{', '.join(out_items)}}}",
            "",
            "def from_avro(d):",
            "    try:",
            *back_pre,
            f"        return _cls({', '.join(back_items)})",
            "    except (KeyError, ValueError, TypeError, AttributeError) as exc:",
            "        raise _Invalid(",
            f'            "INVALID_VALUE", f"{cls.__name__}: {{type(exc).__name__}}: {{exc}}"',
            "        ) from exc",
        ]
    )
    code = compile(source, f"<quantum.records {cls.__module__}.{cls.__qualname__}>", "exec")
    exec(code, b.ns)
    to_fn, from_fn = b.ns["to_avro"], b.ns["from_avro"]
    to_fn.__qualname__ = f"to_avro[{cls.__qualname__}]"
    from_fn.__qualname__ = f"from_avro[{cls.__qualname__}]"
    _TO[cls], _FROM[cls] = to_fn, from_fn
    return to_fn, from_fn


def tagged(obj: Any, namespace: str = NAMESPACE) -> tuple[str, dict[str, Any]]:
    """`obj` as one branch of an Avro union of records, in fastavro's tuple notation
    `(full record name, fields)`: the writer is told the branch instead of guessing it
    (two records with the same fields, like the governor's Resume and Clock, would be
    ambiguous otherwise). The record's name is the class's name."""
    return f"{namespace}.{type(obj).__name__}", to_avro(obj)


class RecordUnion:
    """An Avro union of records, each branch one dataclass named like its record."""

    def __init__(self, *classes: type, namespace: str = NAMESPACE) -> None:
        self.namespace = namespace
        self.by_name = {cls.__name__: cls for cls in classes}
        for cls in classes:
            converters(cls)  # fail now on an unmappable class

    def to_avro(self, obj: Any) -> tuple[str, dict[str, Any]]:
        if type(obj).__name__ not in self.by_name:
            raise TypeError(f"{type(obj).__name__} is not a branch of this union")
        return tagged(obj, self.namespace)

    def from_avro(self, value: Any) -> Any:
        """A branch in tuple notation `(name, fields)` (what `AvroSerde.decode` returns)
        or `-type` notation; InvalidRecord for an unknown or unnamed branch."""
        if isinstance(value, tuple | list) and len(value) == 2:
            name, body = value
        elif isinstance(value, dict) and "-type" in value:
            name, body = value["-type"], {k: v for k, v in value.items() if k != "-type"}
        else:
            raise InvalidRecord("INVALID_VALUE", f"union value without a branch name: {value!r}")
        cls = self.by_name.get(str(name).rsplit(".", 1)[-1])
        if cls is None:
            raise InvalidRecord("INVALID_VALUE", f"unknown union branch {name!r}")
        return from_avro(cls, body)
