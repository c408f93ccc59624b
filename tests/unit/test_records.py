"""quantum.records: dataclass <-> Avro dict, exact both ways, and through real Avro bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Literal

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.governor.model import Clock, Side, SlotRequest
from quantum.errors import InvalidRecord, PoisonRecord
from quantum.records import RecordUnion, converters, from_avro, to_avro
from quantum.schemas import NAMESPACE


class Colour(StrEnum):
    RED = "RED"
    GREEN = "GREEN"


class Level(Enum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True, slots=True)
class Leg:
    price: Decimal
    qty: Decimal | None
    colour: Colour


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    legs: tuple[Leg, ...]
    tags: list[str]
    fees: dict[str, Decimal]
    main: Leg
    backup: Leg | None
    level: Level
    ratio: float
    count: int
    live: bool
    kind: Literal["a", "b"]
    note: str | None = None
    renamed: int = field(default=0, metadata={"avro": "avro_name"})


@dataclass(frozen=True, slots=True)
class Node:
    """A class that nests itself."""

    name: str
    children: list[Node]


def _order() -> Order:
    leg = Leg(Decimal("64123.50"), Decimal("0.001"), Colour.RED)
    return Order(
        order_id="o-1",
        legs=(leg, Leg(Decimal("1E-8"), None, Colour.GREEN)),
        tags=["x", "y"],
        fees={"taker": Decimal("0.0004")},
        main=leg,
        backup=None,
        level=Level.HIGH,
        ratio=0.5,
        count=3,
        live=True,
        kind="b",
        renamed=7,
    )


def test_to_avro_writes_decimal_strings_enum_values_and_nested_records() -> None:
    d = to_avro(_order())
    assert d["legs"][0] == {"price": "64123.50", "qty": "0.001", "colour": "RED"}
    assert d["legs"][1] == {"price": "0.00000001", "qty": None, "colour": "GREEN"}
    assert d["fees"] == {"taker": "0.0004"} and d["level"] == 2 and d["backup"] is None
    assert d["avro_name"] == 7 and "renamed" not in d
    assert isinstance(d["legs"], list) and d["tags"] == ["x", "y"]


def test_round_trip_is_exact_including_tuples_and_decimal_exponents() -> None:
    order = _order()
    back = from_avro(Order, to_avro(order))
    assert back == order
    assert isinstance(back.legs, tuple) and back.legs[0].price.as_tuple().exponent == -2


def test_a_class_that_nests_itself() -> None:
    tree = Node("a", [Node("b", []), Node("c", [Node("d", [])])])
    assert to_avro(tree)["children"][1]["children"][0] == {"name": "d", "children": []}
    assert from_avro(Node, to_avro(tree)) == tree


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda d: d.pop("count"), "KeyError"),
        (lambda d: d.update(level=9), "ValueError"),
        (lambda d: d["main"].update(colour="BLUE"), "ValueError"),
        (lambda d: d["main"].update(price="NaN"), "not a finite decimal"),
        (lambda d: d["fees"].update(taker="1,5"), "not a finite decimal: '1,5'"),
    ],
)
def test_values_that_do_not_convert_are_invalid_records(change, what: str) -> None:
    d = to_avro(_order())
    change(d)
    with pytest.raises(InvalidRecord, match=what) as info:
        from_avro(Order, d)
    assert isinstance(info.value, PoisonRecord) and info.value.reason == "INVALID_VALUE"


def test_unsupported_field_types_fail_when_the_class_is_first_used() -> None:
    @dataclass(frozen=True)
    class Bad:
        either: int | str

    with pytest.raises(TypeError, match="no Avro mapping"):
        converters(Bad)
    with pytest.raises(TypeError, match="not a dataclass"):
        to_avro(object())


def test_converters_are_compiled_once_per_class() -> None:
    first, second = converters(Leg), converters(Leg)
    assert first[0] is second[0] and first[1] is second[1]


def test_governor_commands_through_real_avro_bytes() -> None:
    """The generic codec writes what the portfolio schema accepts, and reads it back."""
    from quantum.schemas import runtime_schema

    schema = runtime_schema("portfolio.avsc")
    for cmd in (
        SlotRequest("i1", "BTCUSDT", Side.LONG, Decimal("250.5"), 0.75, 1_000),
        Clock("clock:5000", 5_000),
    ):
        record = {"command": (f"{NAMESPACE}.{type(cmd).__name__}", to_avro(cmd))}
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, record)
        buf.seek(0)
        _, body = fastavro.schemaless_reader(buf, schema, return_record_name=True)["command"]
        assert from_avro(type(cmd), body) == cmd


decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d.adjusted()) < 40
)
legs = st.builds(
    Leg, price=decimals, qty=st.none() | decimals, colour=st.sampled_from(list(Colour))
)
orders = st.builds(
    Order,
    order_id=st.text(),
    legs=st.lists(legs, max_size=4).map(tuple),
    tags=st.lists(st.text(), max_size=4),
    fees=st.dictionaries(st.text(), decimals, max_size=3),
    main=legs,
    backup=st.none() | legs,
    level=st.sampled_from(list(Level)),
    ratio=st.floats(allow_nan=False),
    count=st.integers(-(2**63), 2**63 - 1),
    live=st.booleans(),
    kind=st.sampled_from(["a", "b"]),
    note=st.none() | st.text(),
    renamed=st.integers(-(2**31), 2**31 - 1),
)


@given(orders)
def test_round_trip_property(order: Order) -> None:
    back = from_avro(Order, to_avro(order))
    assert back == order
    # Exact, not merely equal: 0.10 stays 0.10 (a positive exponent is written out: 1E+3
    # travels as "1000", the same number).
    for a, b in zip((order.main, *order.legs), (back.main, *back.legs), strict=True):
        if a.price.as_tuple().exponent <= 0:
            assert a.price.as_tuple() == b.price.as_tuple()


def test_record_union_names_its_branch_and_refuses_strangers() -> None:
    from agents.governor.model import Resume

    union = RecordUnion(SlotRequest, Clock, Resume)
    clock, resume = Clock("c", 5), Resume("c", 5)  # same fields: only the name tells them apart
    assert union.to_avro(clock) == (f"{NAMESPACE}.Clock", {"command_id": "c", "event_time_ms": 5})
    assert union.from_avro(union.to_avro(resume)) == resume
    assert union.from_avro({"-type": f"{NAMESPACE}.Clock", **to_avro(clock)}) == clock
    with pytest.raises(InvalidRecord, match="unknown union branch"):
        union.from_avro(("x.Halt", {}))
    with pytest.raises(InvalidRecord, match="without a branch name"):
        union.from_avro({"command_id": "c"})
    with pytest.raises(TypeError, match="not a branch"):
        union.to_avro(_order())
