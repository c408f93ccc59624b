"""Regenerates the bundled sample: 3 days of synthetic 1-minute klines for 10 symbols.

The sample is synthetic on purpose: no network is needed to build or test the project.
It is Binance's kline archive layout (one zip per symbol holding one CSV with a header
row), so the default run reads it through the same code as real data from
data.binance.vision. The generator is `quantum.marketdata.generator` (docs/market-data.md);
the same seed gives the same bytes, and tests/unit/test_marketdata_generator.py checks
that these files are exactly what it writes.

    python data/sample/generate.py      # or: quantum data generate --sample
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # this checkout's code, whatever is installed

from quantum.marketdata.generator import write_sample  # noqa: E402

if __name__ == "__main__":
    for path in write_sample(HERE):
        print(path)
