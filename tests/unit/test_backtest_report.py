"""The backtest report from a hand-made run (tests/unit/report_world.py): the summary's
figures worked out by hand, and the page's parts."""

from __future__ import annotations

import base64
import re
from decimal import Decimal

from quantum.app.backtest.page import CHARTS, render_charts, render_html, write_html
from quantum.app.backtest.report import analyse, initial_stops
from tests.unit import report_world as w

D = Decimal
PNG = b"\x89PNG\r\n\x1a\n"


def test_summary_by_hand() -> None:
    a = analyse(w.world(), feed=w.FEED, initial_balance=w.INITIAL)
    s = a.summary
    assert s["trades"] == 3  # the redelivered trade counts once
    assert s["net_pnl"] == "110"  # 144 - 48 + 14
    assert s["fees"] == "16.5"  # 15 closed + d's 1.5 entry fee
    assert s["wins"] == 2 and s["win_rate"] == 0.6667
    assert s["profit_factor"] == 3.2917  # 158 / 48
    # R: a = 144 / 90 = 1.6, b = -48 / 45 = -1.0667; c has no stop order
    assert s["expectancy_r"] == round((1.6 + -48 / 45) / 2, 4)
    assert s["trades_without_stop"] == 1
    # equity ends at 10,000 + 110 closed + d's 30 - 1.5 open
    assert s["final_equity"] == "10138.5"
    assert s["return_pct"] == 1.385
    # peak 10,144 (a closed, b at -11.5) ... lowest after: b closed -48 -> 10,096
    assert s["max_drawdown"] == "48.0"
    assert s["max_drawdown_pct"] == round(48 / 10144 * 100, 4)
    # open: a [0, 60), b [90, 150), c [180, 200), d [300, end=360): 200 of 360 minutes
    assert s["exposure"] == round(200 / 360, 4)
    assert s["max_open_positions_venue"] == 1
    assert s["exits_by_reason"] == {"HARVEST": 1, "STOP_LOSS": 1, "TAKE_PROFIT": 1}
    assert s["rejections_by_reason"] == {
        "SELECTION:BELOW_CONFIDENCE_FLOOR": 2,
        "SIZING:MIN_NOTIONAL": 1,
    }
    assert a.venue_refusals == {"ENTRY rejected: INSUFFICIENT_MARGIN": 1}
    assert "venue_refusals" not in s  # order-dependent: diagnostics.json
    assert s["denials_by_reason"] == {"COOLDOWN": 2}
    assert s["dlq_count"] == 2
    assert s["open_at_end"] == ["ETHUSDT"]
    assert s["ratio_period_ms"] == 60_000
    assert s["sharpe"] is not None and s["sortino"] is not None


def test_equity_curve_and_tables() -> None:
    a = analyse(w.world(), feed=w.FEED, initial_balance=w.INITIAL)
    start = w.START
    assert a.equity[0] == (start, D(10000))  # the run's start, before any mark
    assert a.equity[1] == (start + 30 * w.MIN, D(9960))  # a marked at -37 - 3 fees
    assert a.equity[-1] == (w.END, D("10138.5"))
    assert [t["trade_id"] for t in a.trades] == ["1", "2", "3"]
    assert [t["initial_stop"] for t in a.trades] == [D(59100), D(2955), None]
    assert a.trades[2]["r_multiple"] is None
    # months: January ends at 10,000 + 144 (a closed at 23:00); February at 10,138.5
    assert [mo for mo, _ in a.monthly] == ["2026-01", "2026-02"]
    assert round(a.monthly[0][1], 6) == 0.0144
    btc = next(p for p in a.per_symbol if p["symbol"] == "BTCUSDT")
    assert (btc["trades"], btc["net_pnl"], btc["expectancy_r"]) == (2, D(158), 1.6)


def test_initial_stop_is_the_first_stop_placed() -> None:
    assert initial_stops(w.world().orders) == {"a": D(59100), "b": D(2955)}


def test_page_is_self_contained(tmp_path) -> None:
    a = analyse(w.world(), feed=w.FEED, initial_balance=w.INITIAL)
    charts = render_charts(a)
    assert set(charts) == set(CHARTS)
    assert all(png.startswith(PNG) for png in charts.values())
    page = render_html(a, charts, w.config())
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(CHARTS)
    assert all(base64.b64decode(i).startswith(PNG) for i in images)
    # nothing fetched from anywhere, nothing run
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "initial_balance" in page  # the configuration echo
    path = write_html(a, tmp_path, config=w.config())
    assert path.read_text(encoding="utf-8") == page
    for name in CHARTS:
        assert (tmp_path / f"{name}.png").read_bytes() == charts[name]
