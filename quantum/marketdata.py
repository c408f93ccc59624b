"""Klines from Binance's public CSV files (data.binance.vision) into `market.ticks` records.

Binance kline CSV columns: open_time, open, high, low, close, volume, close_time,
quote_volume, count, taker_buy_volume, taker_buy_quote_volume, ignore. Newer files
carry a header line and microsecond times; both are accepted. Prices stay strings,
exactly as Binance wrote them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from quantum.paths import data_path

SAMPLE_DIR = data_path("data", "sample")


def _millis(raw: str) -> int:
    value = int(raw)
    return value // 1000 if value > 10**14 else value  # microseconds in 2025+ files


def read_kline_csv(
    path: Path, *, symbol: str, interval: str, source: str = "SAMPLE"
) -> Iterator[dict[str, Any]]:
    """Yield `Kline` records (schemas/market.ticks.avsc) in file order."""
    with path.open(newline="") as handle:
        for row in csv.reader(handle):
            if not row or not row[0].strip().isdigit():
                continue  # header line
            open_time = _millis(row[0])
            yield {
                "event_id": f"{symbol}:{interval}:{open_time}",
                "symbol": symbol,
                "interval": interval,
                "open_time": open_time,
                "close_time": _millis(row[6]),
                "open": row[1],
                "high": row[2],
                "low": row[3],
                "close": row[4],
                "volume": row[5],
                "trades": int(row[8]),
                "source": source,
            }


def sample_klines() -> Iterator[dict[str, Any]]:
    """The bundled sample: `data/sample/<SYMBOL>-<interval>-*.csv`, interleaved by time."""
    records: list[dict[str, Any]] = []
    for path in sorted(SAMPLE_DIR.glob("*.csv")):
        symbol, interval = path.stem.split("-")[:2]
        records.extend(read_kline_csv(path, symbol=symbol, interval=interval))
    records.sort(key=lambda r: (r["open_time"], r["symbol"]))
    yield from records
