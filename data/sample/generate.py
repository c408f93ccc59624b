"""Regenerates the bundled sample klines (a seeded random walk, Binance CSV layout).

The sample is synthetic on purpose: no network is needed to build or test the
project. Real history in the same format comes from data.binance.vision.
    python data/sample/generate.py
"""

from __future__ import annotations

import csv
import random
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE_MS = 60_000
SYMBOLS = {
    "BTCUSDT": ("95000.0", "0.1"),
    "ETHUSDT": ("3400.00", "0.01"),
    "SOLUSDT": ("190.000", "0.001"),
}


def main(minutes: int = 240, seed: int = 7) -> None:
    rng = random.Random(seed)
    for symbol, (start, tick) in SYMBOLS.items():
        step = Decimal(tick)
        price = Decimal(start)
        with (HERE / f"{symbol}-1m-sample.csv").open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(
                [
                    "open_time",
                    "open",
                    "high",
                    "low",
                    "close",
                    "volume",
                    "close_time",
                    "quote_volume",
                    "count",
                    "taker_buy_volume",
                    "taker_buy_quote_volume",
                    "ignore",
                ]
            )
            for i in range(minutes):
                open_ = price
                moves = [price * Decimal(rng.gauss(0, 0.0012)) for _ in range(4)]
                path = [open_]
                for m in moves:
                    path.append(max(step, (path[-1] + m).quantize(step)))
                close = path[-1]
                high, low = max(path), min(path)
                volume = Decimal(rng.uniform(5, 50)).quantize(Decimal("0.001"))
                t = START_MS + i * MINUTE_MS
                out.writerow(
                    [
                        t,
                        open_,
                        high,
                        low,
                        close,
                        volume,
                        t + MINUTE_MS - 1,
                        (volume * close).quantize(Decimal("0.01")),
                        rng.randrange(50, 900),
                        (volume / 2).quantize(Decimal("0.001")),
                        (volume * close / 2).quantize(Decimal("0.01")),
                        0,
                    ]
                )
                price = close


if __name__ == "__main__":
    main()
