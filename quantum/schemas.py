"""The Avro schema files under `schemas/`: loading, the registry text, the runtime parse.

Why three forms of one schema:
- `load_schema` gives the JSON exactly as written (docs, `x-decimal` markers), which the
  semantic validator and the schema tooling read.
- `schema_text` is the compact JSON sent to the registry; always the same string for the
  same file, so re-registration is idempotent and ids are stable.
- `runtime_schema` is the fastavro-parsed form with logical types removed: timestamps stay
  plain `int` epoch milliseconds in Python (fastavro would turn them into timezone-aware
  datetimes), which is what every event-time computation in the project uses.

Money, prices and quantities are Avro strings holding exact decimals; `format_decimal` and
`parse_decimal` are the one way to write and read them.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

import fastavro

from quantum.paths import data_path

SCHEMA_DIR = data_path("schemas")
NAMESPACE = "io.quantumtrader"

# Plain or exponent decimal; no whitespace, underscores, NaN or Infinity (Decimal() takes those).
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def schema_files() -> list[str]:
    """Every schema file name (e.g. `market.ticks.avsc`), sorted."""
    return sorted(p.name for p in SCHEMA_DIR.glob("*.avsc"))


@cache
def _load(schema_file: str) -> str:
    path = SCHEMA_DIR / schema_file
    if path.parent != SCHEMA_DIR or not path.is_file():
        raise FileNotFoundError(f"no schema file {schema_file!r} in {SCHEMA_DIR}")
    return path.read_text(encoding="utf-8")


def load_schema(schema_file: str) -> dict[str, Any]:
    """The schema as written in `schemas/<schema_file>` (a fresh copy; callers may mutate it)."""
    return json.loads(_load(schema_file))


@cache
def schema_text(schema_file: str) -> str:
    """Compact, deterministic JSON of the schema: the text registered in the registry."""
    return json.dumps(json.loads(_load(schema_file)), separators=(",", ":"), ensure_ascii=False)


def strip_logical_types(schema: Any) -> Any:
    """A copy of `schema` without `logicalType` annotations (values stay primitive)."""
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(s) for s in schema]
    return schema


def parse_runtime(schema: dict[str, Any] | str) -> Any:
    """fastavro-parse any schema (dict or JSON text) in the runtime form (no logical types)."""
    obj = json.loads(schema) if isinstance(schema, str) else schema
    return fastavro.parse_schema(strip_logical_types(obj))


@cache
def runtime_schema(schema_file: str) -> Any:
    """The parsed runtime form of a schema file (cached: parsing is the slow part)."""
    return parse_runtime(json.loads(_load(schema_file)))


def format_decimal(value: Decimal | int | str) -> str:
    """Canonical plain decimal string ("64123.5", never "6.41235E+4"); rejects NaN/Infinity."""
    d = value if isinstance(value, Decimal) else Decimal(value)
    if not d.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    return format(d, "f")


def parse_decimal(text: str) -> Decimal:
    """The exact Decimal of a decimal string; raises ValueError for NaN, Infinity or garbage."""
    if not isinstance(text, str) or not _DECIMAL_RE.fullmatch(text):
        raise ValueError(f"not a finite decimal: {text!r}")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only valid text
        raise ValueError(f"not a decimal: {text!r}") from exc
