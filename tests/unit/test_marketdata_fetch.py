"""`quantum data fetch`: archive planning, checksums, resume, REST paging; no network
(the `responses` library answers with a zip built here)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import responses

from quantum.marketdata import Kline, RowError, read_klines, replay_files
from quantum.marketdata.fetch import (
    ARCHIVE_BASE,
    REST_BASE,
    ArchiveFile,
    Fetcher,
    FetchError,
    Status,
    plan_archives,
)

URL = f"{ARCHIVE_BASE}/{{period}}/klines/BTCUSDT/1m/BTCUSDT-1m-{{label}}.zip"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def kline_rows(start_ms: int, n: int, *, micro: bool = False) -> list[str]:
    rows = []
    for i in range(n):
        t = start_ms + i * 60_000
        o, c = 42000 + i, 42000 + i + 0.5
        scale = 1000 if micro else 1
        close = (t + 59_999) * scale + (999 if micro else 0)
        rows.append(f"{t * scale},{o},{o + 1},{o - 1},{c},1.5,{close},63000.0,12,0.7,29400.0,0")
    return rows


def make_zip(name: str, rows: list[str], *, header: bool = True) -> bytes:
    text = "\n".join(
        (["open_time,open,high,low,close,volume,close_time,quote_volume,count,"
          "taker_buy_volume,taker_buy_quote_volume,ignore"] if header else []) + rows
    ) + "\n"  # fmt: skip
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name.replace(".zip", ".csv"), text)
    return buffer.getvalue()


def publish(rsps, period: str, label: str, payload: bytes, *, checksum: str | None = None):
    url = URL.format(period=period, label=label)
    name = url.rsplit("/", 1)[1]
    digest = checksum or hashlib.sha256(payload).hexdigest()
    rsps.add("GET", url + ".CHECKSUM", body=f"{digest}  {name}\n")
    rsps.add("GET", url, body=payload, content_type="application/zip")


def test_plan_whole_months_and_days() -> None:
    plan = plan_archives("BTCUSDT", "1m", ms("2024-01-30"), ms("2024-03-02"))
    assert [(f.period, f.label) for f in plan] == [
        ("daily", "2024-01-30"),
        ("daily", "2024-01-31"),
        ("monthly", "2024-02"),
        ("daily", "2024-03-01"),
    ]
    plan = plan_archives("BTCUSDT", "1m", ms("2024-01-01"), ms("2024-03-01"))
    assert [f.label for f in plan] == ["2024-01", "2024-02"]
    assert ArchiveFile("BTCUSDT", "1m", "monthly", "2024-02").range_ms() == (
        ms("2024-02-01"),
        ms("2024-03-01"),
    )


def test_download_verify_resume(tmp_path: Path) -> None:
    payload = make_zip("BTCUSDT-1m-2024-01-05.zip", kline_rows(ms("2024-01-05"), 5))
    with responses.RequestsMock() as rsps:
        publish(rsps, "daily", "2024-01-05", payload)
        lines: list[str] = []
        got = Fetcher(tmp_path, pause_s=0).fetch(
            ["BTCUSDT"], "1m", ms("2024-01-05"), ms("2024-01-06"), progress=lines.append
        )
        assert [r.status for r in got] == [Status.DOWNLOADED] and len(lines) == 1
        assert len(rsps.calls) == 2
    path = tmp_path / "BTCUSDT-1m-2024-01-05.zip"
    bars = [k for k in read_klines(path) if isinstance(k, Kline)]
    assert len(bars) == 5 and bars[0].open == Decimal("42000")
    assert not list(tmp_path.glob("*.part"))
    # second run: complete, nothing requested
    with responses.RequestsMock() as rsps:
        again = Fetcher(tmp_path, pause_s=0).fetch(
            ["BTCUSDT"], "1m", ms("2024-01-05"), ms("2024-01-06")
        )
        assert [r.status for r in again] == [Status.SKIPPED] and len(rsps.calls) == 0
    # a damaged file is fetched again
    path.write_bytes(payload[:-10])
    with responses.RequestsMock() as rsps:
        publish(rsps, "daily", "2024-01-05", payload)
        fixed = Fetcher(tmp_path, pause_s=0).fetch(
            ["BTCUSDT"], "1m", ms("2024-01-05"), ms("2024-01-06")
        )
        assert [r.status for r in fixed] == [Status.DOWNLOADED]
    assert path.read_bytes() == payload


def test_checksum_mismatch_leaves_no_file(tmp_path: Path) -> None:
    payload = make_zip("BTCUSDT-1m-2024-01-05.zip", kline_rows(ms("2024-01-05"), 3))
    with responses.RequestsMock() as rsps:
        publish(rsps, "daily", "2024-01-05", payload, checksum="0" * 64)
        with pytest.raises(FetchError):
            Fetcher(tmp_path, pause_s=0).fetch(
                ["BTCUSDT"], "1m", ms("2024-01-05"), ms("2024-01-06")
            )
    assert list(tmp_path.iterdir()) == []


def test_unpublished_month_by_day_then_rest(tmp_path: Path) -> None:
    """February not archived as a month yet: its days; the last day only over REST."""
    start, end = ms("2024-02-01"), ms("2024-03-01")
    days = ArchiveFile("BTCUSDT", "1m", "monthly", "2024-02").days()
    with responses.RequestsMock() as rsps:
        rsps.add("GET", URL.format(period="monthly", label="2024-02") + ".CHECKSUM", status=404)
        rsps.add("GET", URL.format(period="monthly", label="2024-02"), status=404)
        for d in days[:-1]:
            label = d.isoformat()
            # old-style file: no header row, and µs times (both read the same)
            rows = kline_rows(ms(label), 2, micro=d.day % 2 == 0)
            publish(rsps, "daily", label, make_zip(f"x-{label}.zip", rows, header=d.day % 3 != 0))
        last = days[-1].isoformat()
        rsps.add("GET", URL.format(period="daily", label=last) + ".CHECKSUM", status=404)
        rsps.add("GET", URL.format(period="daily", label=last), status=404)
        first_page = [
            [t, "1.0", "2.0", "0.5", "1.5", "10", t + 59_999, "15", 3, "5", "7.5", "0"]
            for t in range(ms(last), ms(last) + 1500 * 60_000, 60_000)
        ]
        # (a real page holds 1,500 bars; the day has 1,440, so one page ends it)
        rsps.add("GET", f"{REST_BASE}/fapi/v1/klines", json=first_page[:1440])
        got = Fetcher(tmp_path, pause_s=0, now_ms=lambda: ms("2024-03-05")).fetch(
            ["BTCUSDT"], "1m", start, end
        )
    assert [r.status for r in got].count(Status.DOWNLOADED) == len(days) - 1
    assert got[-1].status is Status.REST
    items = list(replay_files([tmp_path]))
    assert not [i for i in items if isinstance(i, RowError)]
    assert len(items) == 2 * (len(days) - 1) + 1440


def test_rest_pages_and_drops_the_open_bar(tmp_path: Path) -> None:
    start = ms("2024-01-01")
    page = lambda t0, n: [  # noqa: E731
        [t, "1", "2", "0.5", "1.5", "10", t + 59_999, "15", 3, "5", "7.5", "0"]
        for t in range(t0, t0 + n * 60_000, 60_000)
    ]
    with responses.RequestsMock() as rsps:
        rsps.add("GET", f"{REST_BASE}/fapi/v1/klines", json=page(start, 1500))
        rsps.add("GET", f"{REST_BASE}/fapi/v1/klines", json=page(start + 1500 * 60_000, 100))
        now = start + 1599 * 60_000 + 30_000  # the 1,600th bar is still open
        fetched = Fetcher(tmp_path, pause_s=0, now_ms=lambda: now).rest(
            "BTCUSDT", "1m", start, start + 2000 * 60_000
        )
        assert len(rsps.calls) == 2
        assert "startTime=" + str(start + 1500 * 60_000) in rsps.calls[1].request.url
    bars = [k for k in read_klines(fetched.path) if isinstance(k, Kline)]
    assert len(bars) == 1599 and bars[-1].close_time < now


def run_cli(argv: list[str]) -> int:
    """`quantum data ...` through the command group's own parser (the full CLI imports every
    agent, torch included: 20 s here for nothing this test needs)."""
    import argparse

    from quantum.marketdata import cli

    parser = argparse.ArgumentParser(prog="quantum")
    cli.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args, None))  # the fetch handler takes no settings


def test_cli_verb(tmp_path: Path, capsys) -> None:
    payload = make_zip("BTCUSDT-1m-2024-01.zip", kline_rows(ms("2024-01-01"), 3))
    with responses.RequestsMock() as rsps:
        publish(rsps, "monthly", "2024-01", payload)
        code = run_cli(
            ["data", "fetch", "--symbols", "BTCUSDT", "--start", "2024-01-01",
             "--end", "2024-02-01", "--interval", "1m", "--out", str(tmp_path)]
        )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "BTCUSDT-1m-2024-01.zip: downloaded" in out and "0 not available" in out
    assert (tmp_path / "BTCUSDT-1m-2024-01.zip.CHECKSUM").exists()
