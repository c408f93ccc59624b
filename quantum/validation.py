"""Semantic validation: what a schema cannot say, checked before any agent acts on a record.

Avro only knows that a price is a string, so "NaN", "-3" or "abc" decode fine; acting on
them would be a real-money bug. The rules come mostly from the schema files themselves:

- a field marked `"x-decimal": "positive" | "non_negative" | "signed"` must hold a finite
  decimal (> 0, >= 0, any sign);
- a `timestamp-millis` field must be > 0;
- a field named `symbol` must match `^[A-Z0-9]{2,20}$` and, when a universe is given,
  be in it (else UNKNOWN_SYMBOL);
- a few cross-field rules per record (a kline's low <= open, close <= high and its event
  id, order prices by type, confidence and probabilities in [0, 1], vote weights > 0,
  leverage >= 1, finite scores);
- a record whose `end_of_stream` field is set is an end-of-stream marker
  (`quantum.end_of_stream`): only the marker is checked, the other fields are placeholders.

Every failure is an `InvalidRecord` naming the field, so the dead letter says what to fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

from quantum.end_of_stream import FIELD as MARKER_FIELD
from quantum.end_of_stream import EndOfStream
from quantum.errors import InvalidRecord
from quantum.schemas import load_schema, parse_decimal

SYMBOL_RE = re.compile(r"[A-Z0-9]{2,20}")
CLIENT_ORDER_ID_RE = re.compile(r"[\.A-Z\:/a-z0-9_-]{1,36}")

_Check = Callable[[dict[str, Any], str, frozenset[str] | None], None]


def _bad(path: str, problem: str, reason: str = "INVALID_VALUE") -> InvalidRecord:
    return InvalidRecord(reason, f"field '{path}' {problem}")


def decimal_field(value: dict[str, Any], name: str, path: str) -> Decimal | None:
    """Parse the decimal string `value[name]` (None stays None); INVALID_VALUE if not finite."""
    raw = value.get(name)
    if raw is None:
        return None
    try:
        return parse_decimal(raw)
    except ValueError:
        raise _bad(path, f"= {raw!r} is not a finite decimal") from None


def _nullable(avro_type: Any) -> tuple[bool, Any]:
    """(may be null, the non-null type) of a field type."""
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        return len(rest) < len(avro_type), rest[0] if len(rest) == 1 else rest
    return False, avro_type


def _record_name(schema: dict[str, Any]) -> str:
    return str(schema["name"]).rsplit(".", 1)[-1]


def _compile_record(schema: dict[str, Any]) -> _Check:
    """One checking function for a record schema (nested record unions included)."""
    checks: list[_Check] = []
    rec_name = _record_name(schema)
    for field in schema["fields"]:
        name: str = field["name"]
        nullable, ftype = _nullable(field["type"])
        kind = field.get("x-decimal")
        if kind:
            checks.append(_decimal_check(name, rec_name, kind, nullable))
        elif isinstance(ftype, dict) and ftype.get("logicalType") == "timestamp-millis":
            checks.append(_timestamp_check(name, rec_name, nullable))
        elif name == "symbol" and ftype == "string":
            checks.append(_symbol_check(name, rec_name, nullable))
        elif isinstance(ftype, list) and all(
            isinstance(t, dict) and t.get("type") == "record" for t in ftype
        ):
            checks.append(_union_check(name, rec_name, ftype))
        elif not nullable and ftype in ("int", "long", "double", "string", "boolean"):
            checks.append(_present_check(name, rec_name))
    extra = _EXTRA.get(rec_name)
    if extra is not None:
        checks.append(extra)
    carries_marker = any(f["name"] == MARKER_FIELD for f in schema["fields"])

    def check(value: dict[str, Any], prefix: str, universe: frozenset[str] | None) -> None:
        if not isinstance(value, dict):
            raise InvalidRecord("INVALID_VALUE", f"{prefix or rec_name}: not a record")
        if carries_marker and value.get(MARKER_FIELD) is not None:
            _end_of_stream(value[MARKER_FIELD], prefix + MARKER_FIELD)
            return  # a marker's other fields are placeholders
        for c in checks:
            c(value, prefix, universe)

    return check


def _present_check(name: str, rec: str) -> _Check:
    def check(value: dict[str, Any], prefix: str, _u: frozenset[str] | None) -> None:
        if value.get(name) is None:
            raise _bad(prefix + name, "is missing")

    return check


def _decimal_check(name: str, rec: str, kind: str, nullable: bool) -> _Check:
    def check(value: dict[str, Any], prefix: str, _u: frozenset[str] | None) -> None:
        path = prefix + name
        if value.get(name) is None:
            if nullable:
                return
            raise _bad(path, "is missing")
        d = decimal_field(value, name, path)
        assert d is not None
        if kind == "positive" and d <= 0:
            raise _bad(path, f"= {value[name]!r} must be > 0")
        if kind == "non_negative" and d < 0:
            raise _bad(path, f"= {value[name]!r} must be >= 0")

    return check


def _timestamp_check(name: str, rec: str, nullable: bool) -> _Check:
    def check(value: dict[str, Any], prefix: str, _u: frozenset[str] | None) -> None:
        ts = value.get(name)
        if ts is None and nullable:
            return
        if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0:
            raise _bad(prefix + name, f"= {ts!r} is not a positive epoch-millisecond timestamp")

    return check


def _symbol_check(name: str, rec: str, nullable: bool) -> _Check:
    def check(value: dict[str, Any], prefix: str, universe: frozenset[str] | None) -> None:
        sym = value.get(name)
        if sym is None and nullable:
            return
        if not isinstance(sym, str) or not SYMBOL_RE.fullmatch(sym):
            raise _bad(prefix + name, f"= {sym!r} is not a symbol (^[A-Z0-9]{{2,20}}$)")
        if universe is not None and sym not in universe:
            raise _bad(prefix + name, f"= {sym!r} is not in the trading universe", "UNKNOWN_SYMBOL")

    return check


def _union_check(name: str, rec: str, branches: list[dict[str, Any]]) -> _Check:
    """A union of records: find the branch by tuple notation, `-type`, or by its fields."""
    compiled = {_record_name(b): _compile_record(b) for b in branches}
    field_sets = {_record_name(b): {f["name"] for f in b["fields"]} for b in branches}

    def check(value: dict[str, Any], prefix: str, universe: frozenset[str] | None) -> None:
        item = value.get(name)
        branch: str | None = None
        if isinstance(item, tuple) and len(item) == 2:
            branch, item = str(item[0]).rsplit(".", 1)[-1], item[1]
        elif isinstance(item, dict) and "-type" in item:
            branch = str(item["-type"]).rsplit(".", 1)[-1]
        elif isinstance(item, dict):
            keys = set(item) - {"-type"}
            matches = [n for n, fs in field_sets.items() if fs == keys]
            branch = matches[0] if len(matches) == 1 else None
        if branch not in compiled or not isinstance(item, dict):
            raise _bad(prefix + name, f"is not one of {sorted(compiled)} (got {branch!r})")
        compiled[branch](item, f"{prefix}{name}.{branch}.", universe)

    return check


# ---- cross-field rules per record name ---------------------------------------------------


def _kline(value: dict[str, Any], prefix: str, _u: frozenset[str] | None) -> None:
    high = decimal_field(value, "high", prefix + "high")
    low = decimal_field(value, "low", prefix + "low")
    if high is not None and low is not None and high < low:
        raise _bad(prefix + "high", f"= {value['high']!r} is below low {value['low']!r}")
    for name in ("open", "close"):
        price = decimal_field(value, name, prefix + name)
        if price is not None and high is not None and low is not None and not low <= price <= high:
            raise _bad(
                prefix + name,
                f"= {value[name]!r} is outside the bar's range [{value['low']}, {value['high']}]",
            )
    if value["close_time"] < value["open_time"]:
        raise _bad(prefix + "close_time", "is before open_time")
    expected = f"{value['symbol']}:{value['interval']}:{value['open_time']}"
    if value.get("event_id") != expected:
        raise _bad(prefix + "event_id", f"= {value.get('event_id')!r}, expected {expected!r}")


def _end_of_stream(marker: Any, path: str) -> None:
    """An end-of-stream marker (quantum.end_of_stream): what it covers must add up."""
    try:
        EndOfStream.from_avro(marker)
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(path, f"is not a valid end-of-stream marker ({exc})") from None


def _finite(
    value: dict[str, Any], name: str, path: str, *, lo: float | None = None, hi: float | None = None
) -> None:
    x = value.get(name)
    if x is None:
        return
    if not isinstance(x, int | float) or isinstance(x, bool) or not math.isfinite(x):
        raise _bad(path, f"= {x!r} is not a finite number")
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        raise _bad(path, f"= {x!r} is outside [{lo}, {hi}]")


def _signal(value: dict[str, Any], prefix: str, _u: frozenset[str] | None) -> None:
    for name in ("confidence", "probability", "raw_probability"):
        _finite(value, name, prefix + name, lo=0.0, hi=1.0)
    votes = value.get("votes", [])
    if not isinstance(votes, list):
        raise _bad(prefix + "votes", "is not a list")
    for i, vote in enumerate(votes):
        path = f"{prefix}votes[{i}]."
        if not isinstance(vote, dict) or not vote.get("model"):
            raise _bad(path + "model", "is missing")
        _finite(vote, "probability", path + "probability", lo=0.0, hi=1.0)
        _finite(vote, "weight", path + "weight")
        if not vote.get("weight", 0) > 0:
            raise _bad(path + "weight", f"= {vote.get('weight')!r} must be > 0")


def _scored(value: dict[str, Any], prefix: str, _u: frozenset[str] | None) -> None:
    _finite(value, "score", prefix + "score")


def _leveraged(value: dict[str, Any], prefix: str, u: frozenset[str] | None) -> None:
    lev = value.get("leverage")
    if not isinstance(lev, int) or lev < 1:
        raise _bad(prefix + "leverage", f"= {lev!r} must be an integer >= 1")
    _scored(value, prefix, u)


def _order(value: dict[str, Any], prefix: str, _u: frozenset[str] | None) -> None:
    coid = value.get("client_order_id")
    if not isinstance(coid, str) or not CLIENT_ORDER_ID_RE.fullmatch(coid):
        raise _bad(prefix + "client_order_id", f"= {coid!r} breaks ^[\\.A-Z\\:/a-z0-9_-]{{1,36}}$")
    otype = value.get("order_type")
    if otype == "LIMIT" and value.get("price") is None:
        raise _bad(prefix + "price", "is required for a LIMIT order")
    if otype in ("STOP_MARKET", "TAKE_PROFIT_MARKET") and value.get("trigger_price") is None:
        raise _bad(prefix + "trigger_price", f"is required for a {otype} order")


def _decision(value: dict[str, Any], prefix: str, u: frozenset[str] | None) -> None:
    _scored(value, prefix, u)
    for name in ("open_after", "reserved_after", "active_slots", "max_open_positions"):
        n = value.get(name)
        if not isinstance(n, int) or n < 0:
            raise _bad(prefix + name, f"= {n!r} must be an integer >= 0")
    if value.get("input_offset", -1) < 0:
        raise _bad(prefix + "input_offset", f"= {value.get('input_offset')!r} must be >= 0")


_EXTRA: dict[str, _Check] = {
    "Kline": _kline,
    "Signal": _signal,
    "TradeIntent": _leveraged,
    "Position": _leveraged,
    "SlotRequest": _scored,
    "Order": _order,
    "PortfolioDecision": _decision,
}


@cache
def _validator(schema_file: str) -> _Check:
    return _compile_record(load_schema(schema_file))


def validate(
    schema_file: str, value: dict[str, Any], *, universe: frozenset[str] | None = None
) -> None:
    """Raise InvalidRecord (INVALID_VALUE / UNKNOWN_SYMBOL) if `value` makes no sense.

    `value` is a decoded record of `schema_file` (as `AvroSerde.decode` returns it);
    `universe`, if given, is the set of symbols the run trades.
    """
    try:
        _validator(schema_file)(value, "", universe)
    except InvalidRecord:
        raise
    except (KeyError, TypeError, AttributeError) as exc:  # a shape the schema cannot produce
        raise InvalidRecord(
            "INVALID_VALUE", f"{schema_file}: malformed record ({type(exc).__name__}: {exc})"
        ) from exc
