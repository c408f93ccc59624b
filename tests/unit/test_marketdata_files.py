"""Replay from files: Binance kline archives and plain CSVs, typed row errors, the merge."""

from __future__ import annotations

import itertools
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantum.errors import InvalidRecord
from quantum.marketdata import (
    FileSpec,
    Kline,
    KlineSource,
    MarketDataError,
    RowError,
    interval_ms,
    interval_name,
    parse_time_ms,
    read_klines,
    replay_files,
)
from quantum.marketdata.model import bar_problem
from quantum.validation import validate

HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)
# 2024-01-01T00:00Z; rows in the layout of data.binance.vision's USD-M BTCUSDT 1m files.
T0 = 1_704_067_200_000


def _binance(t: int, ohlcv: str, quote: str, count: int, taker: str) -> str:
    return f"{t},{ohlcv},{t + 59_999},{quote},{count},{taker},0"


BTC_ROWS = [
    _binance(T0, "42314.00,42335.80,42289.60,42331.90,289.641", "12254964.35240", 3071,
             "175.211,7413370.10070"),
    _binance(T0 + 60_000, "42331.90,42370.00,42331.80,42362.20,215.236", "9115813.38320", 2340,
             "140.077,5932823.92940"),
    _binance(T0 + 120_000, "42362.20,42364.30,42339.70,42351.50,97.932", "4147234.98730", 1377,
             "36.456,1543869.64250"),
]  # fmt: skip
ETH_ROWS = [
    _binance(T0, "2281.87,2284.20,2280.62,2283.61,2139.854", "4883849.11690", 3392,
             "1233.905,2816199.02180"),
    _binance(T0 + 60_000, "2283.61,2285.00,2282.50,2284.88,1544.061", "3527065.62060", 2441,
             "923.017,2108467.52180"),
]  # fmt: skip


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _zip(path: Path, members: dict[str, list[str]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, lines in members.items():
            archive.writestr(name, "\n".join(lines) + "\n")
    return path


def _klines(items: list[Kline | RowError]) -> list[Kline]:
    assert all(isinstance(i, Kline) for i in items), [
        str(i) for i in items if isinstance(i, RowError)
    ]
    return items  # type: ignore[return-value]


def _errors(items: list[Kline | RowError]) -> list[RowError]:
    return [i for i in items if isinstance(i, RowError)]


# ---- Binance archives ---------------------------------------------------------------------


def test_monthly_zip_with_header(tmp_path: Path) -> None:
    path = _zip(
        tmp_path / "BTCUSDT-1m-2024-01.zip", {"BTCUSDT-1m-2024-01.csv": [HEADER, *BTC_ROWS]}
    )
    klines = _klines(list(read_klines(path)))
    assert [k.open_time for k in klines] == [T0, T0 + 60_000, T0 + 120_000]
    first = klines[0]
    assert (first.symbol, first.interval, first.close_time) == ("BTCUSDT", "1m", T0 + 59_999)
    assert first.open == Decimal("42314.00") and first.high == Decimal("42335.80")
    assert first.volume == Decimal("289.641") and first.trades == 3071
    assert first.source == KlineSource.REPLAY
    record = first.to_record()
    assert record["event_id"] == f"BTCUSDT:1m:{T0}" and record["close"] == "42331.90"
    validate("market.ticks.avsc", record)
    assert Kline.from_record(record) == first


def test_daily_csv_without_header_and_microsecond_times(tmp_path: Path) -> None:
    micro = []
    for row in BTC_ROWS:
        f = row.split(",")
        f[0], f[6] = f[0] + "000", f[6] + "999"  # 2025+ files: open/close in microseconds
        micro.append(",".join(f))
    plain = _klines(list(read_klines(_write(tmp_path / "BTCUSDT-1m-2024-01-01.csv", BTC_ROWS))))
    us = _klines(list(read_klines(_write(tmp_path / "BTCUSDT-1m-2025-01-01.csv", micro))))
    assert plain == us
    assert us[1].open_time == T0 + 60_000 and us[1].close_time == T0 + 119_999


def test_interval_comes_from_the_bars_and_must_agree_with_the_name(tmp_path: Path) -> None:
    five = [
        f"{T0},1.0,1.2,0.9,1.1,10,{T0 + 299_999},11,3,5,5.5,0",
        f"{T0 + 300_000},1.1,1.3,1.0,1.2,10,{T0 + 599_999},12,3,5,6,0",
    ]
    assert [
        k.interval for k in _klines(list(read_klines(_write(tmp_path / "XRPUSDT.csv", five))))
    ] == [
        "5m",
        "5m",
    ]
    items = list(read_klines(_write(tmp_path / "XRPUSDT-1m-2024-01.csv", five)))
    assert [e.reason for e in _errors(items)] == ["INVALID_VALUE", "INVALID_VALUE"]
    assert "300000 ms" in str(_errors(items)[0].error)


def test_zip_with_several_members_is_read_in_name_order(tmp_path: Path) -> None:
    path = _zip(
        tmp_path / "BTCUSDT-1m-2024-01.zip",
        {"BTCUSDT-1m-2024-01-02.csv": [BTC_ROWS[2]], "BTCUSDT-1m-2024-01-01.csv": BTC_ROWS[:2]},
    )
    assert [k.open_time for k in _klines(list(read_klines(path)))] == [
        T0,
        T0 + 60_000,
        T0 + 120_000,
    ]


# ---- plain CSV ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "times",
    [
        [str(T0 // 1000 + 300 * i) for i in range(4)],  # seconds
        [str(T0 + 300_000 * i) for i in range(4)],  # milliseconds
        [str((T0 + 300_000 * i) * 1000) for i in range(4)],  # microseconds
        [str((T0 + 300_000 * i) * 1_000_000) for i in range(4)],  # nanoseconds
        [f"2024-01-01T00:{5 * i:02d}:00Z" for i in range(4)],  # ISO-8601, UTC
        [f"2024-01-01 01:{5 * i:02d}:00+01:00" for i in range(4)],  # ISO-8601 with an offset
        [f"2024-01-01T00:{5 * i:02d}:00" for i in range(4)],  # ISO-8601 without zone = UTC
    ],
)
def test_plain_csv_any_time_unit_interval_inferred(tmp_path: Path, times: list[str]) -> None:
    lines = ["time,open,high,low,close,volume"] + [
        f"{t},{100 + i},{101 + i},{99 + i},{100.5 + i},{12.5 * (i + 1)}"
        for i, t in enumerate(times)
    ]
    klines = _klines(list(read_klines(_write(tmp_path / "SOLUSDT.csv", lines))))
    assert [k.open_time for k in klines] == [T0 + 300_000 * i for i in range(4)]
    assert {k.interval for k in klines} == {"5m"}
    assert klines[0].close_time == T0 + 299_999
    assert klines[3].close == Decimal("103.5") and klines[0].trades == 0


def test_plain_csv_header_any_order_with_trades_and_given_symbol(tmp_path: Path) -> None:
    lines = [
        "Volume,Close,Low,High,Open,Timestamp,Trades",
        f"5,10.5,9.5,11,10,{T0},7",
        f"6,10.7,10.1,10.9,10.5,{T0 + 3_600_000},8",
    ]
    path = _write(tmp_path / "export.csv", lines)
    with pytest.raises(MarketDataError, match="symbol"):
        list(read_klines(path))
    klines = _klines(list(read_klines(path, symbol="LINKUSDT")))
    assert [(k.symbol, k.interval, k.open, k.close, k.trades) for k in klines] == [
        ("LINKUSDT", "1h", Decimal(10), Decimal("10.5"), 7),
        ("LINKUSDT", "1h", Decimal("10.5"), Decimal("10.7"), 8),
    ]


def test_plain_csv_without_header_and_a_given_interval(tmp_path: Path) -> None:
    path = _write(tmp_path / "ADAUSDT.csv", [f"{T0},1,1.1,0.9,1.05,100"])
    with pytest.raises(MarketDataError, match="infer"):
        list(read_klines(path))  # one row: no gap to infer the interval from
    [kline] = _klines(list(read_klines(path, interval="15m")))
    assert kline.close_time == T0 + 900_000 - 1 and kline.interval == "15m"


def test_unknown_layouts_are_file_errors(tmp_path: Path) -> None:
    with pytest.raises(MarketDataError, match="columns"):
        list(read_klines(_write(tmp_path / "BTCUSDT.csv", [f"{T0},1,2,3"])))
    with pytest.raises(MarketDataError, match="lacks"):
        list(read_klines(_write(tmp_path / "BTCUSDT.csv", ["time,price,size", f"{T0},1,2"])))
    with pytest.raises(MarketDataError, match="no such file"):
        list(replay_files([tmp_path / "missing.csv"]))
    with pytest.raises(MarketDataError, match=r"no \.csv"):
        list(read_klines(_zip(tmp_path / "BTCUSDT-1m.zip", {"readme.txt": ["x"]})))


# ---- malformed rows are typed errors in their place -------------------------------------------


def test_each_bad_row_is_a_typed_error_in_its_place(tmp_path: Path) -> None:
    rows = [
        HEADER,
        BTC_ROWS[0],
        f"{T0 + 60_000},42331.90,42370.00,42331.80",  # truncated
        _binance(T0 + 60_000, "42331.90,abc,42331.80,42362.20,1", "1", 1, "1,1"),  # not a number
        _binance(T0 + 60_000, "42331.90,42300.00,42331.80,42362.20,1", "1", 1, "1,1"),  # high<low
        _binance(T0 + 60_000, "NaN,42370.00,42331.80,42362.20,1", "1", 1, "1,1"),  # NaN
        _binance(T0 + 60_000, "42331.90,42370.00,42331.80,42362.20,-1", "1", 1, "1,1"),  # volume
        _binance(T0 + 60_000, "42331.90,42370.00,42331.80,42380.00,1", "1", 1, "1,1"),  # close>high
        f"yesterday,42331.90,42370.00,42331.80,42362.20,1,{T0 + 119_999},1,1,1,1,0",  # time
        "",  # a blank line is not a row
        BTC_ROWS[2],
        BTC_ROWS[1],  # earlier than the row before it
        BTC_ROWS[2],  # the same bar again
    ]
    items = list(read_klines(_write(tmp_path / "BTCUSDT-1m-2024-01.csv", rows)))
    summary = [("bar", i.open_time) if isinstance(i, Kline) else (i.reason, i.line) for i in items]
    assert summary == [
        ("bar", T0),
        ("MALFORMED_ROW", 3),
        ("MALFORMED_ROW", 4),
        ("INVALID_VALUE", 5),
        ("MALFORMED_ROW", 6),
        ("INVALID_VALUE", 7),
        ("INVALID_VALUE", 8),
        ("MALFORMED_ROW", 9),
        ("bar", T0 + 120_000),
        ("OUT_OF_ORDER", 12),
        ("DUPLICATE_BAR", 13),
    ]
    errors = _errors(items)
    assert all(isinstance(e.error, InvalidRecord) and e.symbol == "BTCUSDT" for e in errors)
    assert errors[0].raw == rows[2] and errors[0].source.endswith("BTCUSDT-1m-2024-01.csv")
    assert "high" in str(errors[2]) and "'close'" in str(errors[5])


def test_row_errors_in_a_zip_name_the_member(tmp_path: Path) -> None:
    path = _zip(
        tmp_path / "ETHUSDT-1m-2024-01.zip",
        {"ETHUSDT-1m-2024-01.csv": [HEADER, ETH_ROWS[0], "garbage"]},
    )
    [_, error] = list(read_klines(path))
    assert isinstance(error, RowError)
    assert error.source == f"{path}!ETHUSDT-1m-2024-01.csv" and error.line == 3
    assert error.raw == "garbage"


# ---- merge, range, determinism ----------------------------------------------------------------


def _files(tmp_path: Path) -> list[Path]:
    return [
        _zip(tmp_path / "BTCUSDT-1m-2024-01.zip", {"BTCUSDT-1m-2024-01.csv": [HEADER, *BTC_ROWS]}),
        _write(tmp_path / "ETHUSDT-1m-2024-01-01.csv", ETH_ROWS),
        _write(
            tmp_path / "SOLUSDT.csv",
            ["time,open,high,low,close,volume"]
            + [f"{T0 + 60_000 * i},101.5,102,101,101.75,{10 + i}" for i in range(3)],
        ),
    ]


def test_merge_is_by_event_time_then_symbol_whatever_the_file_order(tmp_path: Path) -> None:
    files = _files(tmp_path)
    expected = [
        ("BTCUSDT", T0),
        ("ETHUSDT", T0),
        ("SOLUSDT", T0),
        ("BTCUSDT", T0 + 60_000),
        ("ETHUSDT", T0 + 60_000),
        ("SOLUSDT", T0 + 60_000),
        ("BTCUSDT", T0 + 120_000),
        ("SOLUSDT", T0 + 120_000),
    ]
    for order in itertools.permutations(files):
        klines = _klines(list(replay_files(order)))
        assert [(k.symbol, k.open_time) for k in klines] == expected
    # a directory is its csv and zip files
    assert [(k.symbol, k.open_time) for k in _klines(list(replay_files([tmp_path])))] == expected


def test_bars_of_different_intervals_merge_by_close_time(tmp_path: Path) -> None:
    five = _write(
        tmp_path / "BTCUSDT-5m-2024-01.csv", [f"{T0},1,2,0.5,1.5,3,{T0 + 299_999},1,1,1,1,0"]
    )
    one = _write(
        tmp_path / "ETHUSDT-1m-2024-01.csv",
        [f"{T0 + 60_000 * i},1,2,0.5,1.5,3,{T0 + 60_000 * i + 59_999},1,1,1,1,0" for i in range(6)],
    )
    order = [(k.symbol, k.close_time) for k in _klines(list(replay_files([five, one])))]
    # after ETH's four earlier closes; tied with ETH's fifth, and B sorts before E
    assert order.index(("BTCUSDT", T0 + 299_999)) == 4
    assert order[5] == ("ETHUSDT", T0 + 299_999)


def test_time_range_symbols_and_overlapping_archives(tmp_path: Path) -> None:
    files = _files(tmp_path)
    ranged = _klines(list(replay_files(files, start_ms=T0 + 60_000, end_ms=T0 + 120_000)))
    assert {k.open_time for k in ranged} == {T0 + 60_000} and len(ranged) == 3
    only = _klines(list(replay_files(files, symbols={"SOLUSDT", "ETHUSDT"})))
    assert {k.symbol for k in only} == {"SOLUSDT", "ETHUSDT"}
    # a daily archive that repeats a day of the monthly one: each repeat is a dead letter
    (tmp_path / "daily").mkdir()
    daily = _write(tmp_path / "daily" / "BTCUSDT-1m-2024-01-01.csv", BTC_ROWS[1:])
    items = list(replay_files([files[0], daily]))
    assert [e.reason for e in _errors(items)] == ["DUPLICATE_BAR", "DUPLICATE_BAR"]
    assert {e.source for e in _errors(items)} == {str(daily)}
    assert len([i for i in items if isinstance(i, Kline)]) == 3


def test_file_spec_overrides_the_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "BTCUSDT-1m-2024-01.csv", BTC_ROWS)
    klines = _klines(list(replay_files([FileSpec(path, symbol="BTCDOMUSDT")])))
    assert {k.symbol for k in klines} == {"BTCDOMUSDT"}


# ---- times, intervals, and the reader's rules vs the validator's --------------------------------


def test_time_units() -> None:
    assert parse_time_ms("1704067200") == T0
    assert parse_time_ms("1704067200.5") == T0 + 500
    assert parse_time_ms(str(T0)) == T0
    assert parse_time_ms(str(T0 * 1000 + 999)) == T0
    assert parse_time_ms("2024-01-01T00:00:00.250Z") == T0 + 250
    for bad in ("0", "-5", "", "soon", "1704067200000.5", "1" * 21):
        with pytest.raises(ValueError):
            parse_time_ms(bad)


def test_interval_names() -> None:
    assert interval_ms("1m") == 60_000 and interval_ms("4h") == 14_400_000
    assert interval_name(60_000) == "1m" and interval_name(604_800_000) == "1w"
    assert interval_name(420_000) == "7m" and interval_name(90_000) == "90s"
    for bad in ("1M", "0m", "m", "1.5h"):
        with pytest.raises(MarketDataError):
            interval_ms(bad)
    with pytest.raises(MarketDataError):
        interval_name(1_500)


_price = st.decimals(min_value=Decimal("-5"), max_value=Decimal("200"), places=2)


@settings(max_examples=300, deadline=None)
@given(o=_price, h=_price, low=_price, c=_price, v=_price)
def test_reader_rules_agree_with_the_validator(
    o: Decimal, h: Decimal, low: Decimal, c: Decimal, v: Decimal
) -> None:
    """The reader checks bars itself for speed; it must accept exactly what the feed's
    consumers accept, or a replayed row would pass here and die in the first agent."""
    kline = Kline("BTCUSDT", "1m", T0, T0 + 59_999, o, h, low, c, v)
    try:
        validate("market.ticks.avsc", kline.to_record())
        valid = True
    except InvalidRecord:
        valid = False
    assert (bar_problem(o, h, low, c, v) is None) == valid


def test_a_zip_holding_several_symbols_merges_by_time(tmp_path: Path) -> None:
    path = _zip(
        tmp_path / "bundle.zip",
        {"ETHUSDT-1m-2024-01.csv": [HEADER, *ETH_ROWS], "BTCUSDT-1m-2024-01.csv": BTC_ROWS},
    )
    klines = _klines(list(replay_files([path])))
    assert [(k.symbol, k.open_time) for k in klines] == [
        ("BTCUSDT", T0),
        ("ETHUSDT", T0),
        ("BTCUSDT", T0 + 60_000),
        ("ETHUSDT", T0 + 60_000),
        ("BTCUSDT", T0 + 120_000),
    ]
    # read on its own, a file comes in file order: member by member
    assert [k.symbol for k in _klines(list(read_klines(path)))] == ["BTCUSDT"] * 3 + ["ETHUSDT"] * 2
