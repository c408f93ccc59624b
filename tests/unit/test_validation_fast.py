"""`validate` answers exactly as its checking functions do: the generated fast predicate
only lets through records every check passes, and everything else gets the same error.

Random records are drawn from every schema in `schemas/` (strings from a pool of valid and
invalid symbols and amounts), then fields are replaced by hostile values."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantum.errors import InvalidRecord
from quantum.schemas import runtime_schema, schema_files
from quantum.validation import _check, _fast, validate
from tests.unit.test_avro_compiled import values
from tests.unit.test_governor_decode_path import TEXT
from tests.unit.test_serde import sample_records

SCHEMAS = schema_files()
UNIVERSES = st.sampled_from([None, frozenset({"BTCUSDT", "100", "25"}), frozenset()])
ODD = [None, "", "NaN", "-1", "0", "1e3", " 1", "BTCUSDT", "btcusdt", True, False, 0, -5]
ODD += [1.5, math.nan, math.inf, -0.0, 2**63, [], {}, ("io.quantumtrader.Clock", {})]
HOSTILE = st.one_of(st.sampled_from(ODD), TEXT, st.integers(), st.floats())


def _outcome(fn: Any, schema_file: str, value: Any, universe: Any) -> Any:
    try:
        fn(schema_file, value, universe)
    except InvalidRecord as exc:
        return exc.reason, str(exc)
    return "valid"


def _validate(schema_file: str, value: Any, universe: Any) -> None:
    validate(schema_file, value, universe=universe)


def _mutate(value: Any, data: st.DataObject) -> Any:
    """Replace one field (of the record, or of a union branch inside it) by a hostile one."""
    if not isinstance(value, dict) or not value:
        return value
    name = data.draw(st.sampled_from(sorted(value)))
    inner = value[name]
    nested = isinstance(inner, tuple) and len(inner) == 2 and isinstance(inner[1], dict)
    if nested and data.draw(st.booleans()):
        return {**value, name: (inner[0], _mutate(inner[1], data))}
    return {**value, name: data.draw(HOSTILE)}


@pytest.mark.parametrize("schema_file", SCHEMAS)
def test_samples_take_the_fast_path(schema_file: str) -> None:
    assert _fast(schema_file)(sample_records()[schema_file], None) is True


@given(schema_file=st.sampled_from(SCHEMAS), data=st.data(), universe=UNIVERSES)
def test_validate_answers_as_the_checks_do(
    schema_file: str, data: st.DataObject, universe: Any
) -> None:
    value = data.draw(values(runtime_schema(schema_file), TEXT))
    if data.draw(st.booleans()):
        value = _mutate(value, data)
    expected = _outcome(_check, schema_file, value, universe)
    try:
        fast = _fast(schema_file)(value, universe)
    except Exception:
        fast = False
    if fast:
        assert expected == "valid"
    assert _outcome(_validate, schema_file, value, universe) == expected


@given(schema_file=st.sampled_from(SCHEMAS), data=st.data(), universe=UNIVERSES)
def test_one_field_off_a_valid_record(schema_file: str, data: st.DataObject, universe: Any) -> None:
    """Records one field away from valid, where a too lenient predicate would show."""
    value = _mutate(sample_records()[schema_file], data)
    expected = _outcome(_check, schema_file, value, universe)
    try:
        fast = _fast(schema_file)(value, universe)
    except Exception:
        fast = False
    if fast:
        assert expected == "valid"
    assert _outcome(_validate, schema_file, value, universe) == expected
