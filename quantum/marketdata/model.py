"""Klines as values: the `market.ticks` record, bar intervals, and what a bad file row is.

A `Kline` holds exact `Decimal` prices; `to_record` gives the Avro value of
schemas/market.ticks.avsc (decimal strings), `from_record` reads one back. A row of a
file that cannot become a valid kline is a `RowError`: a value, not an exception, so a
reader yields one per bad row in its place and the feed shell can dead-letter it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from quantum.end_of_stream import FIELD as MARKER_FIELD
from quantum.end_of_stream import EndOfStream, marker_of, marker_record
from quantum.errors import InvalidRecord
from quantum.schemas import format_decimal, parse_decimal

SYMBOL_RE = re.compile(r"[A-Z0-9]{2,20}")

# Binance's interval names (GET /fapi/v1/klines, data.binance.vision). "1M" (a calendar
# month) has no fixed length, so it cannot be inferred or checked and is not accepted.
BINANCE_INTERVALS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}
_UNIT_MS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000}
_INTERVAL_RE = re.compile(r"([1-9][0-9]*)([smhdw])")


class MarketDataError(ValueError):
    """A whole file or request is unusable (unknown layout, no symbol, bad interval):
    nothing row by row can be said, so the caller must fix its input."""


class KlineSource(StrEnum):
    LIVE = "LIVE"
    REPLAY = "REPLAY"
    SAMPLE = "SAMPLE"


def interval_ms(name: str) -> int:
    """Milliseconds of an interval name ("1m", "4h", also "90s" or "7m" for any bar size)."""
    m = _INTERVAL_RE.fullmatch(name)
    if m is None:
        raise MarketDataError(f"not a fixed bar interval: {name!r} (e.g. 1m, 5m, 1h, 90s)")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def interval_name(ms: int) -> str:
    """The interval name of a bar length: Binance's name if it has one, else the largest
    whole unit ("7m", "90s"). Sub-second bars are not klines here."""
    for name, length in BINANCE_INTERVALS.items():
        if length == ms:
            return name
    if ms <= 0 or ms % 1000:
        raise MarketDataError(f"bar length {ms} ms is not a whole number of seconds")
    for unit in ("d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    raise AssertionError("unreachable: every whole second divides by 's'")


@dataclass(frozen=True, slots=True)
class Kline:
    """One closed bar. Event time is `close_time` (a bar is known once it has closed);
    Binance's close_time is open_time + interval - 1 ms."""

    symbol: str
    interval: str
    open_time: int
    close_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int = 0
    source: KlineSource = KlineSource.REPLAY

    @property
    def event_id(self) -> str:
        return f"{self.symbol}:{self.interval}:{self.open_time}"

    @property
    def event_time(self) -> int:
        return self.close_time

    def to_record(self) -> dict[str, Any]:
        """The market.ticks Avro value."""
        return {
            "event_id": self.event_id,
            "symbol": self.symbol,
            "interval": self.interval,
            "open_time": self.open_time,
            "close_time": self.close_time,
            "open": format_decimal(self.open),
            "high": format_decimal(self.high),
            "low": format_decimal(self.low),
            "close": format_decimal(self.close),
            "volume": format_decimal(self.volume),
            "trades": self.trades,
            "source": self.source.value,
            MARKER_FIELD: None,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Kline:
        """A decoded, validated market.ticks value (not a marker: see `marker_of`)."""
        if record.get(MARKER_FIELD) is not None:
            raise ValueError("an end-of-stream marker is not a kline")
        return cls(
            symbol=record["symbol"],
            interval=record["interval"],
            open_time=int(record["open_time"]),
            close_time=int(record["close_time"]),
            open=parse_decimal(record["open"]),
            high=parse_decimal(record["high"]),
            low=parse_decimal(record["low"]),
            close=parse_decimal(record["close"]),
            volume=parse_decimal(record["volume"]),
            trades=int(record["trades"]),
            source=KlineSource(record["source"]),
        )


def end_of_stream_record(
    marker: EndOfStream, partition: int, source: KlineSource = KlineSource.REPLAY
) -> dict[str, Any]:
    """A market.ticks value that is the end-of-stream marker for `partition`.

    The kline fields are placeholders (validation skips them for a marker); the event id
    names the partition so a log reader can tell the markers apart.
    """
    value = marker_record("market.ticks.avsc", marker)
    value["event_id"] = f"END_OF_STREAM:{partition}"
    value["source"] = source.value
    return value


def is_end_of_stream(record: dict[str, Any]) -> bool:
    return marker_of(record) is not None


@dataclass(frozen=True, slots=True)
class RowError:
    """A file row that is not a valid kline, yielded in the row's place.

    source: the file (and zip member: `archive.zip!member.csv`); line: 1-based line number;
    raw: the line as read (without its newline), the bytes a dead letter keeps;
    symbol: the file's symbol, the dead letter's key.
    """

    source: str
    line: int
    raw: str
    error: InvalidRecord
    symbol: str

    @property
    def reason(self) -> str:
        return self.error.reason

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}: {self.error}"


def row_error(source: str, line: int, raw: str, symbol: str, reason: str, message: str) -> RowError:
    return RowError(source, line, raw, InvalidRecord(reason, message), symbol)


def bar_problem(
    open_: Decimal, high: Decimal, low: Decimal, close: Decimal, volume: Decimal
) -> str | None:
    """What is wrong with a bar's values, or None: the market.ticks rules of
    `quantum.validation` (prices > 0, volume >= 0, low <= open, close <= high), checked
    here directly because a replay reads millions of rows (a test keeps the two in step)."""
    for name, price in (("open", open_), ("high", high), ("low", low), ("close", close)):
        if price <= 0:
            return f"field '{name}' = {price} must be > 0"
    if volume < 0:
        return f"field 'volume' = {volume} must be >= 0"
    if high < low:
        return f"field 'high' = {high} is below low {low}"
    for name, price in (("open", open_), ("close", close)):
        if not low <= price <= high:
            return f"field '{name}' = {price} is outside the bar's range [{low}, {high}]"
    return None


def decimal_or_error(text: str, what: str) -> Decimal:
    """The exact decimal of a CSV field; ValueError naming the column if it is not one."""
    try:
        return parse_decimal(text)
    except ValueError:
        raise ValueError(f"{what} = {text!r} is not a decimal number") from None
