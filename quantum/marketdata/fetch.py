"""Download real Binance USD-M klines into the files the backtest reads.

Two sources:

- **archives** (default): data.binance.vision's public kline zips,
  `data/futures/um/monthly/klines/<SYM>/<iv>/<SYM>-<iv>-<YYYY-MM>.zip` for whole months and
  `.../daily/klines/.../<SYM>-<iv>-<YYYY-MM-DD>.zip` for the days of partial months, each
  with a `.CHECKSUM` beside it (`<sha256>  <file name>`). The zips are stored as they are:
  the replay reads Binance's archive layout directly (`quantum.marketdata.files`: with or
  without header row, ms or µs times). A month not published yet falls back to its days; a
  day not published yet (archives appear the day after) falls back to REST.
- **REST**: `GET /fapi/v1/klines`, 1,500 bars a page, written as a Binance-layout CSV with a
  header row (`<SYM>-<iv>-rest-<from>-<to>.csv`). Bars not yet closed are left out.

Resume: a file already in the output directory is kept when it matches its `.CHECKSUM`
(stored beside it at download) or, without one, when it is a sound zip; otherwise it is
downloaded again. Downloads go to `<name>.part` and are renamed only after the checksum and
the zip check pass, so an interrupted run leaves no half file under a real name. When a
month's zip is complete its daily files (from an earlier, shorter run) are removed, so no
bar is read twice.

The HTTP session, the pause between REST pages and the clock are passed in: tests replay
recorded answers with the `responses` library, no network.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import requests

from quantum.marketdata.model import MarketDataError, interval_ms

ARCHIVE_BASE = "https://data.binance.vision/data/futures/um"
REST_BASE = "https://fapi.binance.com"
REST_PAGE = 1_500  # /fapi/v1/klines maximum `limit`
HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)
DAY_MS = 86_400_000


class FetchError(MarketDataError):
    """A download that cannot be completed (checksum mismatch, bad zip, HTTP error)."""


class Status(StrEnum):
    DOWNLOADED = "downloaded"
    SKIPPED = "complete, skipped"
    MISSING = "not published"
    REST = "from REST"


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    """One archive zip: symbol, interval, monthly or daily, and its date label."""

    symbol: str
    interval: str
    period: str  # "monthly" | "daily"
    label: str  # "2024-01" | "2024-01-15"

    @property
    def filename(self) -> str:
        return f"{self.symbol}-{self.interval}-{self.label}.zip"

    def url(self, base: str = ARCHIVE_BASE) -> str:
        return f"{base}/{self.period}/klines/{self.symbol}/{self.interval}/{self.filename}"

    def days(self) -> list[date]:
        if self.period == "daily":
            return [date.fromisoformat(self.label)]
        first = date.fromisoformat(f"{self.label}-01")
        following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
        return [first + timedelta(days=i) for i in range((following - first).days)]

    def range_ms(self) -> tuple[int, int]:
        days = self.days()
        return _day_ms(days[0]), _day_ms(days[-1]) + DAY_MS


def _day_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * 1000


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def plan_archives(symbol: str, interval: str, start_ms: int, end_ms: int) -> list[ArchiveFile]:
    """Whole months as monthly zips, the other days as daily zips, covering [start, end).

    The range is widened to whole UTC days (archives are per day at the finest); the replay
    cuts it back with its own --from/--to.
    """
    if end_ms <= start_ms:
        raise MarketDataError(f"empty range: {start_ms} >= {end_ms}")
    first, last = _day(start_ms), _day(end_ms - 1)
    out: list[ArchiveFile] = []
    d = first
    while d <= last:
        month_start = d.replace(day=1)
        month = ArchiveFile(symbol, interval, "monthly", d.strftime("%Y-%m"))
        month_end = month.days()[-1]
        if d == month_start and month_end <= last:
            out.append(month)
            d = month_end + timedelta(days=1)
        else:
            out.append(ArchiveFile(symbol, interval, "daily", d.isoformat()))
            d += timedelta(days=1)
    return out


def parse_checksum(text: str, filename: str) -> str:
    """The sha256 of a `.CHECKSUM` file (`<hex>  <name>`)."""
    parts = text.split()
    if not parts or len(parts[0]) != 64 or (len(parts) > 1 and parts[1] != filename):
        raise FetchError(f"{filename}.CHECKSUM: unexpected content {text[:100]!r}")
    return parts[0].lower()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sound_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None and any(n.endswith(".csv") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


@dataclass(frozen=True, slots=True)
class Fetched:
    name: str
    status: Status
    path: Path | None
    size: int


class Fetcher:
    """Downloads archives (with resume and checksums) and REST pages into `out`."""

    def __init__(
        self,
        out: Path,
        *,
        session: requests.Session | None = None,
        archive_base: str = ARCHIVE_BASE,
        rest_base: str = REST_BASE,
        pause_s: float = 0.25,
        sleep: Callable[[float], None] = time.sleep,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        timeout_s: float = 30.0,
    ) -> None:
        self.out = out
        self._http = session or requests.Session()
        self._archive = archive_base
        self._rest = rest_base
        self._pause = pause_s
        self._sleep = sleep
        self._now = now_ms
        self._timeout = timeout_s

    # --- HTTP ----------------------------------------------------------------------------

    def _get(self, url: str, **params: object) -> requests.Response | None:
        """The answer, None on 404; retries a 429/5xx once after its Retry-After."""
        for attempt in range(2):
            try:
                r = self._http.get(url, params=params or None, timeout=self._timeout)
            except requests.RequestException as exc:
                raise FetchError(f"GET {url}: {type(exc).__name__}") from None
            if r.status_code == 404:
                return None
            if r.status_code == 200:
                return r
            if attempt == 0 and (r.status_code == 429 or r.status_code >= 500):
                self._sleep(float(r.headers.get("Retry-After", "5")))
                continue
            raise FetchError(f"GET {url}: HTTP {r.status_code} {r.text[:200]}")
        raise AssertionError("unreachable")

    # --- archives ------------------------------------------------------------------------

    def archive(self, f: ArchiveFile) -> Fetched:
        """One archive: skipped when complete, else downloaded and verified."""
        path = self.out / f.filename
        stored = self.out / f"{f.filename}.CHECKSUM"
        if path.exists():
            if stored.exists():
                if _sha256(path) == parse_checksum(stored.read_text(), f.filename):
                    return Fetched(f.filename, Status.SKIPPED, path, path.stat().st_size)
            elif _sound_zip(path):
                return Fetched(f.filename, Status.SKIPPED, path, path.stat().st_size)
        answer = self._get(f.url(self._archive) + ".CHECKSUM")
        expected = parse_checksum(answer.text, f.filename) if answer is not None else None
        if path.exists() and expected is not None and _sha256(path) == expected:
            stored.write_text(answer.text if answer is not None else "")
            return Fetched(f.filename, Status.SKIPPED, path, path.stat().st_size)
        body = self._get(f.url(self._archive))
        if body is None:
            return Fetched(f.filename, Status.MISSING, None, 0)
        part = self.out / f"{f.filename}.part"
        part.write_bytes(body.content)
        if expected is not None and _sha256(part) != expected:
            part.unlink()
            raise FetchError(f"{f.filename}: sha256 does not match its .CHECKSUM")
        if not _sound_zip(part):
            part.unlink()
            raise FetchError(f"{f.filename}: not a readable kline zip")
        part.replace(path)
        if answer is not None:
            stored.write_text(answer.text)
        if f.period == "monthly":
            self._drop_days_of(f)
        return Fetched(f.filename, Status.DOWNLOADED, path, path.stat().st_size)

    def _drop_days_of(self, month: ArchiveFile) -> None:
        for d in month.days():
            day = ArchiveFile(month.symbol, month.interval, "daily", d.isoformat())
            for p in (self.out / day.filename, self.out / f"{day.filename}.CHECKSUM"):
                p.unlink(missing_ok=True)

    # --- REST ----------------------------------------------------------------------------

    def rest_rows(
        self, symbol: str, interval: str, start_ms: int, end_ms: int
    ) -> Iterator[list[object]]:
        """Closed klines with start <= open_time < end, paging 1,500 at a time."""
        step = interval_ms(interval)
        now = self._now()
        cursor = start_ms
        while cursor < end_ms:
            r = self._get(
                f"{self._rest}/fapi/v1/klines",
                symbol=symbol,
                interval=interval,
                startTime=cursor,
                endTime=end_ms - 1,
                limit=REST_PAGE,
            )
            rows = r.json() if r is not None else []
            if not rows:
                return
            for row in rows:
                if int(row[0]) >= end_ms or int(row[6]) > now:
                    return  # past the range, or the bar is still open
                yield row
            cursor = int(rows[-1][0]) + step
            if self._pause:
                self._sleep(self._pause)

    def rest(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> Fetched:
        name = f"{symbol}-{interval}-rest-{start_ms}-{end_ms}.csv"
        path = self.out / name
        if path.exists():
            return Fetched(name, Status.SKIPPED, path, path.stat().st_size)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        count = 0
        for row in self.rest_rows(symbol, interval, start_ms, end_ms):
            writer.writerow(row)
            count += 1
        if count == 0:
            return Fetched(name, Status.MISSING, None, 0)
        part = self.out / f"{name}.part"
        part.write_text(HEADER + "\n" + buffer.getvalue(), encoding="utf-8")
        part.replace(path)
        return Fetched(name, Status.REST, path, path.stat().st_size)

    # --- the whole range -----------------------------------------------------------------

    def fetch(
        self,
        symbols: list[str],
        interval: str,
        start_ms: int,
        end_ms: int,
        *,
        source: str = "archive",
        progress: Callable[[str], None] = lambda _line: None,
    ) -> list[Fetched]:
        """Everything for [start, end); `progress` gets one line per file."""
        interval_ms(interval)  # MarketDataError on a bad interval, before any request
        self.out.mkdir(parents=True, exist_ok=True)
        done: list[Fetched] = []
        for symbol in symbols:
            if source == "rest":
                todo: list[ArchiveFile | None] = [None]
            else:
                todo = list(plan_archives(symbol, interval, start_ms, end_ms))
            while todo:
                item = todo.pop(0)
                if item is None:
                    result = self.rest(symbol, interval, start_ms, end_ms)
                else:
                    result = self.archive(item)
                    if result.status is Status.MISSING and item.period == "monthly":
                        days = [ArchiveFile(symbol, interval, "daily", d.isoformat())
                                for d in item.days()]  # fmt: skip
                        todo = days + todo
                        progress(f"{symbol}: {item.filename} not published, by day")
                        continue
                    if result.status is Status.MISSING:
                        lo, hi = item.range_ms()
                        result = self.rest(symbol, interval, max(lo, start_ms), min(hi, end_ms))
                done.append(result)
                progress(f"[{len(done)}] {result.name}: {result.status} ({result.size:,} bytes)")
        return done
