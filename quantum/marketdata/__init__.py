"""Market data: klines from files (Binance archives, plain CSV), the synthetic generator,
the bundled sample, and the end-of-stream marker record of `market.ticks`.

See docs/market-data.md. The feed shell reads with `replay_files`, sends each `Kline`'s
`to_record()` keyed by symbol, dead-letters each `RowError`, and ends with
`end_of_stream_record(...)` on every partition.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from quantum.marketdata.files import (
    FileSpec,
    expand_paths,
    names_from_filename,
    parse_time_ms,
    read_klines,
    replay_files,
)
from quantum.marketdata.model import (
    BINANCE_INTERVALS,
    Kline,
    KlineSource,
    MarketDataError,
    RowError,
    end_of_stream_record,
    interval_ms,
    interval_name,
    is_end_of_stream,
)
from quantum.paths import data_path

SAMPLE_DIR = data_path("data", "sample")

__all__ = [
    "BINANCE_INTERVALS",
    "SAMPLE_DIR",
    "FileSpec",
    "Kline",
    "KlineSource",
    "MarketDataError",
    "RowError",
    "end_of_stream_record",
    "expand_paths",
    "interval_ms",
    "interval_name",
    "is_end_of_stream",
    "names_from_filename",
    "parse_time_ms",
    "read_klines",
    "replay_files",
    "sample_files",
    "sample_klines",
]


def sample_files() -> list[Path]:
    """The bundled sample's files (`data/sample/<SYMBOL>-1m-sample.zip`), sorted."""
    return sorted(SAMPLE_DIR.glob("*-1m-sample.zip"))


def sample_klines() -> Iterator[dict[str, Any]]:
    """The bundled sample as market.ticks records, merged in event-time order.

    The sample is generated and clean: a row error here is a broken checkout, so it raises.
    """
    for item in replay_files(sample_files(), source=KlineSource.SAMPLE):
        if isinstance(item, RowError):
            raise MarketDataError(f"the bundled sample is damaged: {item}")
        yield item.to_record()
