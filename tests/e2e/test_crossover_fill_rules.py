"""The crossover baseline, run as a user runs it — `quantum backtest --data` on plain OHLCV
CSVs with a `--config` TOML that switches every risk feature off — and every trade checked
by hand against the model's rule and the fill rules of docs/backtest.md:

- entered on the bar right after the one where the fast SMA crossed the slow one, long on
  a cross up, short on a cross down (the rule, recomputed here from the CSV's closes);
- at that next bar's open (rule 1; no slippage, no fees in this config);
- closed by the protective stop or take-profit only (harvest, guard and regime are off),
  at the trigger price when the bar reached it from inside (rule 3), at the open when the
  bar gapped through it (rule 4), the stop when one bar touched both (rule 5,
  ADVERSE_FIRST), never on the entry's own bar (rule 6);
- the net PnL is (exit - entry) x quantity for a long, the reverse for a short.

The report echoes the TOML's values (issue 10: "a config file that the report echoes").
"""

from __future__ import annotations

import csv
import json
import math
from decimal import Decimal
from pathlib import Path

import pytest

from exchange.rules import ExchangeRules
from quantum.app.cli import main
from quantum.marketdata import Kline, replay_files, sample_files
from topologies.apply import delete_run_topics

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
HOURS = 6
FAST, SLOW = 10, 30
STOP, TAKE = Decimal("0.004"), Decimal("0.006")
RULES = ExchangeRules.bundled()

CONFIG = f"""
# A plain crossover strategy: nothing of the platform's risk machinery in the way.
[ai_engine]
models = ["ma_crossover"]
weights = [1.0]

[ai_engine.ma_crossover]
fast = {FAST}
slow = {SLOW}

[regime]
enabled = false

[harvest]
enabled = false

[exit_guard]
enabled = false

[selector]
universe = {json.dumps(list(SYMBOLS))}
skip_flat_sell = false
max_correlation = 1.0  # no correlation filter

[governor]
symbol_cooldown_ms = 0

[sizing]
mode = "FIXED_NOTIONAL"
fixed_notional = "500"

[execution]
stop_loss_pct = "{STOP}"
take_profit_pct = "{TAKE}"

[paper_exchange]
taker_fee_rate = "0"
maker_fee_rate = "0"
market_slippage_bps = 0
stop_slippage_bps = 0
"""


def _write_plain_csvs(folder: Path) -> dict[str, list[Kline]]:
    """Six hours of three sample symbols as plain `time,open,high,low,close,volume` files
    (ISO times), the way a user exports bars from anywhere."""
    files = [f for f in sample_files() if f.name.split("-")[0] in SYMBOLS]
    bars = [b for b in replay_files(files) if isinstance(b, Kline)]
    start = min(b.open_time for b in bars)
    by_symbol: dict[str, list[Kline]] = {s: [] for s in SYMBOLS}
    for b in bars:
        if b.open_time < start + HOURS * 3_600_000:
            by_symbol[b.symbol].append(b)
    for symbol, rows in by_symbol.items():
        with (folder / f"{symbol}.csv").open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["time", "open", "high", "low", "close", "volume"])
            for b in rows:
                iso = f"{b.open_time // 1000}"  # seconds since the epoch
                out.writerow([iso, b.open, b.high, b.low, b.close, b.volume])
    return by_symbol


def _cross(closes: list[Decimal], t: int) -> int:
    """+1 where the fast SMA crosses above the slow one at bar t, -1 below, else 0 (the
    model's rule, cross-multiplied sums, recomputed independently)."""

    def relation(i: int) -> int:
        a = math.fsum(float(c) for c in closes[i - FAST + 1 : i + 1]) * SLOW
        b = math.fsum(float(c) for c in closes[i - SLOW + 1 : i + 1]) * FAST
        return (a > b) - (a < b)

    if t < SLOW:
        return 0
    now, before = relation(t), relation(t - 1)
    if now > 0 and before <= 0:
        return 1
    if now < 0 and before >= 0:
        return -1
    return 0


def _reached(bar: Kline, long: bool, stop: Decimal, take: Decimal) -> bool:
    if long:
        return bar.low <= stop or bar.high >= take
    return bar.high >= stop or bar.low <= take


def test_each_crossover_trade_follows_the_rule_and_the_fill_rules(settings, tmp_path: Path) -> None:
    by_symbol = _write_plain_csvs(tmp_path)
    config = tmp_path / "plain.toml"
    config.write_text(CONFIG)
    out = tmp_path / "report"
    files = [str(tmp_path / f"{s}.csv") for s in SYMBOLS]
    argv = ["--topic-prefix", settings.kafka.topic_prefix, "backtest", "--data", *files]
    argv += ["--engine", "inprocess", "--config", str(config), "--out", str(out), "--quiet"]
    try:
        assert main(argv) == 0
    finally:
        delete_run_topics(settings)

    run = json.loads((out / "run.json").read_text())
    assert run["config"]["execution"]["stop_loss_pct"] == str(STOP)
    assert run["config"]["harvest"]["enabled"] is False
    assert str(STOP) in (out / "report.html").read_text()  # the page echoes the config

    trades = list(csv.DictReader((out / "trades.csv").open()))
    assert len(trades) >= 5, "too few trades for the test to say much"
    for t in trades:
        bars = by_symbol[t["symbol"]]
        index = {b.open_time: i for i, b in enumerate(bars)}
        closes = [b.close for b in bars]
        entry_time = int(t["entry_time"])
        assert entry_time in index, f"{t['trade_id']}: entry not at a bar's open"
        k = index[entry_time]
        entry = Decimal(t["entry_price"])
        exit_price = Decimal(t["exit_price"])
        qty = Decimal(t["quantity"])
        long = t["side"] == "LONG"
        # the rule: a cross on the bar before, in the trade's direction
        assert _cross(closes, k - 1) == (1 if long else -1), t
        # rule 1: at that next bar's open, no slippage
        assert entry == bars[k].open, t
        # rules 3-6: the protective bracket from the entry fill
        stop = entry * (1 - STOP) if long else entry * (1 + STOP)
        take = entry * (1 + TAKE) if long else entry * (1 - TAKE)
        assert t["exit_reason"] in {"STOP_LOSS", "TAKE_PROFIT"}, t
        bar = next(b for b in bars[k + 1 :] if _reached(b, long, stop, take))  # rule 6
        gap_stop = bar.open <= stop if long else bar.open >= stop
        gap_take = bar.open >= take if long else bar.open <= take
        touches_stop = bar.low <= stop if long else bar.high >= stop
        if gap_stop or gap_take:  # rule 4: through the trigger at the open
            expected_reason, expected = ("STOP_LOSS" if gap_stop else "TAKE_PROFIT"), bar.open
        elif touches_stop:  # rule 3, and rule 5 when both: the adverse extreme first
            expected_reason, expected = "STOP_LOSS", stop
        else:
            expected_reason, expected = "TAKE_PROFIT", take
        assert t["exit_reason"] == expected_reason, (t, bar)
        tick = RULES[t["symbol"]].price_filter.tick
        assert abs(exit_price - expected) <= tick, (t, expected, bar)  # to the tick
        pnl = (exit_price - entry) * qty if long else (entry - exit_price) * qty
        assert Decimal(t["net_pnl"]) == pnl and Decimal(t["fees"]) == 0, t
