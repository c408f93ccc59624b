"""`fast_init` builds the same frozen dataclass instances as the dataclass's own __init__."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.governor.model import Decision, SlotRequest
from quantum.frozen import fast_init


@dataclasses.dataclass(frozen=True, slots=True)
class Reference:
    a: int
    b: str
    c: float | None = None
    d: tuple[int, ...] = ()


@fast_init
@dataclasses.dataclass(frozen=True, slots=True)
class Fast:
    a: int
    b: str
    c: float | None = None
    d: tuple[int, ...] = ()


@given(st.integers(), st.text(), st.none() | st.floats(allow_nan=False), st.lists(st.integers()))
def test_same_fields_equality_and_hash_as_the_dataclass_init(a, b, c, d) -> None:
    fast, ref = Fast(a, b, c, tuple(d)), Reference(a=a, b=b, c=c, d=tuple(d))
    assert dataclasses.astuple(fast) == dataclasses.astuple(ref)
    assert fast == Fast(a=a, b=b, c=c, d=tuple(d)) and hash(fast) == hash(Fast(a, b, c, tuple(d)))
    assert Fast(a, b) == Fast(a, b, None, ())  # the defaults


def test_still_frozen_and_replace_and_pickle_work() -> None:
    fast = Fast(1, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.a = 2  # type: ignore[misc]
    assert dataclasses.replace(fast, b="y") == Fast(1, "y")
    assert pickle.loads(pickle.dumps(fast)) == fast
    with pytest.raises(TypeError, match="missing"):
        Fast(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword"):
        Fast(1, "x", e=3)  # type: ignore[call-arg]


def test_post_init_still_runs() -> None:
    @fast_init
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("negative")

    assert Checked(1).n == 1
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)


def test_refuses_what_it_cannot_build() -> None:
    with pytest.raises(TypeError, match="frozen, slotted"):
        fast_init(
            dataclasses.dataclass(slots=True)(type("Loose", (), {"__annotations__": {"a": int}}))
        )
    with pytest.raises(TypeError, match="plain fields only"):

        @fast_init
        @dataclasses.dataclass(frozen=True, slots=True)
        class WithFactory:
            xs: list[int] = dataclasses.field(default_factory=list)


def test_the_governor_models_use_it() -> None:
    # the hot path's classes: a change to model.py that drops the decorator shows here
    for cls in (Decision, SlotRequest):
        assert "_s0" in cls.__init__.__code__.co_names  # the slot setters, not object.__setattr__
