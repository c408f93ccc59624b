"""Replay klines from files: Binance's public kline archives and plain OHLCV CSVs.

Accepted, per file (a `.csv`, or a `.zip` whose `.csv` members are read in name order):

- **Binance kline CSV** (data.binance.vision, `data/futures/um/{monthly,daily}/klines/`):
  12 columns `open_time, open, high, low, close, volume, close_time, quote_volume, count,
  taker_buy_volume, taker_buy_quote_volume, ignore`; with a header row (USD-M files since
  2022) or without (older ones); open/close times in milliseconds, or microseconds (spot
  files since 2025). The interval is `close_time - open_time + 1 ms`.
- **Plain CSV** `time,open,high,low,close,volume[,trades]`: with a header naming those
  columns (any order, a few aliases), or exactly 6 columns without one. Time in seconds,
  milliseconds, microseconds or nanoseconds since the epoch (told apart by magnitude), or
  ISO-8601 (no zone = UTC). The interval is given, or read from the file name, or
  inferred from the data (the most common gap between the first rows' times).

Symbol and interval come from the arguments, else from the file name as Binance names its
files (`BTCUSDT-1m-2024-01.zip`, `BTCUSDT-1m-2024-01-15.csv`, or just `BTCUSDT.csv`).

Each row becomes a `Kline` or, if it cannot, a `RowError` in its place (MALFORMED_ROW: not
parseable; INVALID_VALUE: parsed but breaks a market.ticks rule, e.g. high < low;
OUT_OF_ORDER / DUPLICATE_BAR: earlier than / same bar as one already read). Nothing is
skipped silently: the feed dead-letters the errors. Only blank lines are not rows.

`replay_files` merges several files (several symbols, several archives per symbol) into
one stream in event-time order (close time), ties broken by symbol, then by file and line:
the same files always give the same sequence. It streams: memory holds one row per file.
"""

from __future__ import annotations

import heapq
import io
import itertools
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from quantum.errors import InvalidRecord
from quantum.marketdata.model import (
    _INTERVAL_RE,
    SYMBOL_RE,
    Kline,
    KlineSource,
    MarketDataError,
    RowError,
    bar_problem,
    decimal_or_error,
    interval_ms,
    interval_name,
    row_error,
)

BINANCE_COLUMNS = 12
INFER_ROWS = 50  # rows looked at to infer a plain file's interval

_TIME_NAMES = ("time", "timestamp", "date", "datetime", "open_time", "opentime", "ts")
_PLAIN_ALIASES = {
    "time": _TIME_NAMES,
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
    "trades": ("trades", "count", "number_of_trades", "num_trades"),
}
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

Item = Kline | RowError
# ((event time, symbol, file index, member index, line), item, stream name, raw line)
_Key = tuple[int, str, int, int, int]
_Keyed = tuple[_Key, Item, str, str]


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One file to replay; `symbol` / `interval` override what the name says."""

    path: Path
    symbol: str | None = None
    interval: str | None = None


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds of a time field: s, ms, µs or ns by magnitude, or ISO-8601.

    Magnitudes: < 1e11 seconds (until year 5138), < 1e14 ms, < 1e17 µs, else ns; a
    fraction is allowed only on seconds. ValueError if it is none of these.
    """
    t = text.strip()
    if t.isdigit():  # the common case, fast: an integer epoch
        n = int(t)
        if 0 < n < 10**11:
            return n * 1000
        if 0 < n < 10**20:
            return n if n < 10**14 else n // 1_000 if n < 10**17 else n // 1_000_000
    if _NUMBER_RE.fullmatch(t):
        try:
            value = Decimal(t)
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            raise ValueError(f"time {text!r} is not a number") from None
        if value <= 0:
            raise ValueError(f"time {text!r} is not after the epoch")
        if value < Decimal(10) ** 11:
            return int(value * 1000)
        if value != value.to_integral_value():
            raise ValueError(f"time {text!r}: only seconds may have a fraction")
        n = int(value)
        if n < 10**14:
            return n
        if n < 10**17:
            return n // 1_000
        if n < 10**20:
            return n // 1_000_000
        raise ValueError(f"time {text!r} is too large for an epoch time")
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"time {text!r} is neither an epoch number nor ISO-8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ms = (dt - _EPOCH) // _MS
    if ms <= 0:
        raise ValueError(f"time {text!r} is not after the epoch")
    return ms


def names_from_filename(name: str) -> tuple[str | None, str | None]:
    """(symbol, interval) as Binance's file names give them, each None if absent."""
    stem = name.rsplit("/", 1)[-1]
    for suffix in (".zip", ".csv"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    tokens = stem.split("-")
    symbol = tokens[0] if SYMBOL_RE.fullmatch(tokens[0]) else None
    interval = tokens[1] if len(tokens) > 1 and _INTERVAL_RE.fullmatch(tokens[1]) else None
    return symbol, interval


def expand_paths(paths: Iterable[Path | str | FileSpec]) -> list[FileSpec]:
    """FileSpecs for files and directories (a directory: its .csv and .zip files, sorted)."""
    out: list[FileSpec] = []
    for item in paths:
        spec = item if isinstance(item, FileSpec) else FileSpec(Path(item))
        if spec.path.is_dir():
            for p in sorted(spec.path.iterdir()):
                if p.suffix.lower() in (".csv", ".zip") and p.is_file():
                    out.append(FileSpec(p, spec.symbol, spec.interval))
        elif spec.path.is_file():
            out.append(spec)
        else:
            raise MarketDataError(f"{spec.path}: no such file or directory")
    return out


# ---- one CSV stream -------------------------------------------------------------------


def _split(line: str) -> list[str]:
    if '"' in line:
        return [f.strip().strip('"').strip() for f in line.split(",")]
    return [f.strip() for f in line.split(",")]


def _is_number(field: str) -> bool:
    return bool(_NUMBER_RE.fullmatch(field))


class _CsvStream:
    """One CSV text (a file or a zip member): its rows as keyed items in file order."""

    def __init__(
        self,
        name: str,
        lines: Iterable[str],
        *,
        index: tuple[int, int],
        symbol: str,
        interval: str | None,
        source: KlineSource,
        start_ms: int | None,
        end_ms: int | None,
    ) -> None:
        self.name = name
        self._lines = lines
        self.index = index
        self.symbol = symbol
        self._interval_ms: int | None = None
        self._interval = ""
        if interval:
            self._set_interval(interval_ms(interval))
        self._source = source
        self._start = start_ms
        self._end = end_ms
        self._last_key: _Key = (0, symbol, *index, 0)
        self._last_open: int | None = None

    def _set_interval(self, length: int) -> None:
        self._interval = interval_name(length)  # MarketDataError if not whole seconds
        self._interval_ms = length

    # -- driving --

    def items(self) -> Iterator[_Keyed]:
        rows = self._rows()
        first = next(rows, None)
        if first is None:
            return
        _, _, fields = first
        header = None if any(_is_number(f) for f in fields) else [f.lower() for f in fields]
        if header is None:
            rows = _chain_one(first, rows)
        ncols = len(header) if header is not None else len(fields)
        if ncols == BINANCE_COLUMNS and (header is None or "close_time" in header):
            yield from self._binance(rows)
            return
        columns = self._plain_columns(header, ncols)
        yield from self._plain(rows, columns)

    def _rows(self) -> Iterator[tuple[int, str, list[str]]]:
        for lineno, line in enumerate(self._lines, 1):
            raw = line.rstrip("\r\n")
            if lineno == 1:
                raw = raw.lstrip("\ufeff")
            if raw.strip():
                yield lineno, raw, _split(raw)

    def _plain_columns(self, header: list[str] | None, ncols: int) -> dict[str, int]:
        if header is None:
            if ncols != 6:
                raise MarketDataError(
                    f"{self.name}: {ncols} columns and no header: expected Binance's 12 "
                    "(open_time,...,ignore) or 6 (time,open,high,low,close,volume)"
                )
            return {k: i for i, k in enumerate(("time", "open", "high", "low", "close", "volume"))}
        columns: dict[str, int] = {}
        for key, aliases in _PLAIN_ALIASES.items():
            for i, name in enumerate(header):
                if name in aliases:
                    columns[key] = i
                    break
        missing = [
            k for k in ("time", "open", "high", "low", "close", "volume") if k not in columns
        ]
        if missing:
            raise MarketDataError(
                f"{self.name}: header {','.join(header)!r} lacks {', '.join(missing)} "
                "(expected time,open,high,low,close,volume[,trades])"
            )
        return columns

    # -- emitting --

    def _error(self, lineno: int, raw: str, reason: str, message: str) -> _Keyed:
        key = (self._last_key[0], self.symbol, *self.index, lineno)
        return key, row_error(self.name, lineno, raw, self.symbol, reason, message), self.name, raw

    def _in_range(self, open_time: int) -> bool:
        return (self._start is None or open_time >= self._start) and (
            self._end is None or open_time < self._end
        )

    def _emit(
        self,
        lineno: int,
        raw: str,
        open_time: int,
        close_time: int,
        ohlcv: list[str],
        trades: int,
    ) -> _Keyed:
        """The kline of a parsed row, or its error: values, then order within the file."""
        assert self._interval_ms is not None
        try:
            o = decimal_or_error(ohlcv[0], "open")
            h = decimal_or_error(ohlcv[1], "high")
            low = decimal_or_error(ohlcv[2], "low")
            c = decimal_or_error(ohlcv[3], "close")
            v = decimal_or_error(ohlcv[4], "volume")
        except ValueError as exc:
            return self._error(lineno, raw, "MALFORMED_ROW", str(exc))
        problem = bar_problem(o, h, low, c, v)
        if problem is not None:
            return self._error(lineno, raw, "INVALID_VALUE", problem)
        kline = Kline(
            symbol=self.symbol,
            interval=self._interval,
            open_time=open_time,
            close_time=close_time,
            open=o,
            high=h,
            low=low,
            close=c,
            volume=v,
            trades=trades,
            source=self._source,
        )
        if self._last_open is not None and open_time <= self._last_open:
            reason = "DUPLICATE_BAR" if open_time == self._last_open else "OUT_OF_ORDER"
            return self._error(
                lineno, raw, reason, f"open_time {open_time} after {self._last_open} in this file"
            )
        self._last_open = open_time
        self._last_key = (kline.close_time, self.symbol, *self.index, lineno)
        return self._last_key, kline, self.name, raw

    # -- Binance layout --

    def _binance(self, rows: Iterator[tuple[int, str, list[str]]]) -> Iterator[_Keyed]:
        for lineno, raw, fields in rows:
            if len(fields) != BINANCE_COLUMNS:
                yield self._error(
                    lineno, raw, "MALFORMED_ROW", f"{len(fields)} columns, Binance klines have 12"
                )
                continue
            try:
                open_time = parse_time_ms(fields[0])
                close_time = parse_time_ms(fields[6])
                trades = int(fields[8])
            except ValueError as exc:
                yield self._error(lineno, raw, "MALFORMED_ROW", str(exc))
                continue
            if not self._in_range(open_time):
                continue
            length = close_time - open_time + 1
            if self._interval_ms is None:
                try:
                    self._set_interval(length)
                except MarketDataError as exc:
                    yield self._error(lineno, raw, "MALFORMED_ROW", str(exc))
                    continue
            if length != self._interval_ms:
                yield self._error(
                    lineno,
                    raw,
                    "INVALID_VALUE",
                    f"close_time - open_time + 1 = {length} ms, the file's bars are "
                    f"{self._interval_ms} ms ({self._interval})",
                )
                continue
            yield self._emit(lineno, raw, open_time, close_time, fields[1:6], trades)

    # -- plain layout --

    def _plain(
        self, rows: Iterator[tuple[int, str, list[str]]], columns: dict[str, int]
    ) -> Iterator[_Keyed]:
        width = max(columns.values()) + 1
        if self._interval_ms is None:
            head = [r for _, r in zip(range(INFER_ROWS), rows, strict=False)]
            self._set_interval(self._infer_interval(head, columns))
            rows = _chain(head, rows)
        assert self._interval_ms is not None
        for lineno, raw, fields in rows:
            if len(fields) < width:
                yield self._error(
                    lineno, raw, "MALFORMED_ROW", f"{len(fields)} columns, expected {width}"
                )
                continue
            try:
                open_time = parse_time_ms(fields[columns["time"]])
                trades = int(fields[columns["trades"]]) if "trades" in columns else 0
            except ValueError as exc:
                yield self._error(lineno, raw, "MALFORMED_ROW", str(exc))
                continue
            if not self._in_range(open_time):
                continue
            ohlcv = [fields[columns[k]] for k in ("open", "high", "low", "close", "volume")]
            close_time = open_time + self._interval_ms - 1
            yield self._emit(lineno, raw, open_time, close_time, ohlcv, trades)

    def _infer_interval(
        self, head: list[tuple[int, str, list[str]]], columns: dict[str, int]
    ) -> int:
        times: list[int] = []
        for _, _, fields in head:
            try:
                times.append(parse_time_ms(fields[columns["time"]]))
            except (ValueError, IndexError):
                continue
        gaps = Counter(b - a for a, b in itertools.pairwise(times) if b > a)
        if not gaps:
            raise MarketDataError(
                f"{self.name}: cannot infer the bar interval from {len(times)} readable "
                "time(s); give the interval"
            )
        best = max(gaps.values())
        length = min(g for g, n in gaps.items() if n == best)
        try:
            interval_name(length)
        except MarketDataError as exc:
            raise MarketDataError(f"{self.name}: inferred interval: {exc}") from None
        return length


def _chain_one(first: tuple[int, str, list[str]], rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _chain(head: list, rest: Iterator) -> Iterator:
    yield from head
    yield from rest


# ---- files and the merge --------------------------------------------------------------


def _resolve_symbol(name: str, *fallbacks: str | None) -> str:
    for candidate in fallbacks:
        if candidate:
            if not SYMBOL_RE.fullmatch(candidate):
                raise MarketDataError(f"{name}: {candidate!r} is not a symbol (^[A-Z0-9]{{2,20}}$)")
            return candidate
    raise MarketDataError(
        f"{name}: cannot tell the symbol from the file name (e.g. BTCUSDT-1m-2024-01.csv); give it"
    )


def _stream_items(
    spec: FileSpec,
    file_index: int,
    *,
    source: KlineSource,
    start_ms: int | None,
    end_ms: int | None,
) -> list[Iterator[_Keyed]]:
    """One keyed item iterator per CSV text of a file: the file itself, or each .csv member
    of a zip (name order). Each is in event-time order on its own; members are separate
    streams of the merge, so a zip holding several symbols' files still merges right."""
    path = spec.path
    file_symbol, file_interval = names_from_filename(path.name)
    common = {"source": source, "start_ms": start_ms, "end_ms": end_ms}
    if path.suffix.lower() != ".zip":
        name = str(path)
        symbol = _resolve_symbol(name, spec.symbol, file_symbol)

        def plain() -> Iterator[_Keyed]:
            with path.open(encoding="utf-8", errors="replace", newline="") as text:
                stream = _CsvStream(
                    name,
                    text,
                    index=(file_index, 0),
                    symbol=symbol,
                    interval=spec.interval or file_interval,
                    **common,  # type: ignore[arg-type]
                )
                yield from stream.items()

        return [plain()]
    with zipfile.ZipFile(path) as archive:
        members = sorted(n for n in archive.namelist() if n.lower().endswith(".csv"))
    if not members:
        raise MarketDataError(f"{path}: the archive holds no .csv file")

    def member_items(offset: int, member: str) -> Iterator[_Keyed]:
        m_symbol, m_interval = names_from_filename(member)
        name = f"{path}!{member}"
        symbol = _resolve_symbol(name, spec.symbol, m_symbol, file_symbol)
        with (
            zipfile.ZipFile(path) as archive,
            archive.open(member) as raw,
            io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as text,
        ):
            stream = _CsvStream(
                name,
                text,
                index=(file_index, offset),
                symbol=symbol,
                interval=spec.interval or m_interval or file_interval,
                **common,  # type: ignore[arg-type]
            )
            yield from stream.items()

    return [member_items(i, m) for i, m in enumerate(members)]


def read_klines(
    path: Path | str,
    *,
    symbol: str | None = None,
    interval: str | None = None,
    source: KlineSource = KlineSource.REPLAY,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> Iterator[Item]:
    """One file's klines (and row errors) in file order; `start_ms <= open_time < end_ms`."""
    spec = FileSpec(Path(path), symbol, interval)
    for stream in _stream_items(spec, 0, source=source, start_ms=start_ms, end_ms=end_ms):
        for _, item, _, _ in stream:
            yield item


def replay_files(
    paths: Iterable[Path | str | FileSpec],
    *,
    symbols: Iterable[str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    source: KlineSource = KlineSource.REPLAY,
) -> Iterator[Item]:
    """Every file's klines merged in event-time order (ties: symbol, file, line).

    symbols: if given, files of other symbols are left out (a file-level choice). A bar that
    another file already gave (same symbol, interval and open time) is a DUPLICATE_BAR
    error, so overlapping archives (a month and one of its days) are visible, not merged.
    """
    wanted = None if symbols is None else frozenset(symbols)
    specs = expand_paths(paths)
    iterators: list[Iterator[_Keyed]] = []
    for i, spec in enumerate(specs):
        if wanted is not None:
            named = spec.symbol or names_from_filename(spec.path.name)[0]
            if named is not None and named not in wanted:
                continue
        iterators.extend(_stream_items(spec, i, source=source, start_ms=start_ms, end_ms=end_ms))
    last_open: dict[tuple[str, str], int] = {}
    for key, item, name, raw in heapq.merge(*iterators, key=lambda keyed: keyed[0]):
        if isinstance(item, RowError):
            yield item
            continue
        if wanted is not None and item.symbol not in wanted:
            continue
        series = (item.symbol, item.interval)
        previous = last_open.get(series)
        if previous is not None and item.open_time <= previous:
            yield RowError(
                source=name,
                line=key[4],
                raw=raw,
                error=InvalidRecord(
                    "DUPLICATE_BAR" if item.open_time == previous else "OUT_OF_ORDER",
                    f"{item.event_id}: another file already gave this symbol's bars up to "
                    f"open_time {previous}",
                ),
                symbol=item.symbol,
            )
            continue
        last_open[series] = item.open_time
        yield item
