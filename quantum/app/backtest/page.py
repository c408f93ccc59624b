"""The backtest report's charts (PNG, matplotlib's Agg backend) and its one HTML page.

The page is self-contained: the charts are inline `data:image/png;base64` images, the CSS
is in the page, there is no script, so it opens from disk in any browser, or as a mail
attachment, with nothing else.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quantum.app.backtest.report import Analysis

CHARTS = ("equity", "open_positions", "r_distribution", "exits")


def _dt(time_ms: int) -> datetime:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def render_charts(a: Analysis) -> dict[str, bytes]:
    """The four charts as PNG bytes, by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}
    times = [_dt(t) for t, _ in a.equity]
    equity = [float(v) for _, v in a.equity]

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot(times, equity, color="#1f5fa8", lw=1.4, drawstyle="steps-post")
    top.axhline(float(a.summary["initial_balance"]), color="#888", lw=0.8, ls="--")
    top.set_ylabel("equity (USDT)")
    top.set_title("Equity (marked to market at every bar close) and drawdown")
    top.grid(alpha=0.3)
    bottom.fill_between(
        times, [-float(d) for d in a.drawdown], 0, step="post", color="#c0392b", alpha=0.5
    )
    bottom.set_ylabel("drawdown")
    bottom.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    out["equity"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 3))
    steps = list(a.open_steps)
    if a.equity:
        first, last = a.equity[0][0], a.equity[-1][0]
        if not steps or steps[0][0] > first:
            steps.insert(0, (first, 0))
        if steps[-1][0] < last:
            steps.append((last, steps[-1][1]))
    if steps:
        xs = [_dt(t) for t, _ in steps]
        ys = [n for _, n in steps]
        ax.step(xs, ys, where="post", color="#2c7a4b")
        ax.fill_between(xs, ys, step="post", color="#2c7a4b", alpha=0.2)
    ax.set_title(f"Open positions on the venue (highest: {a.summary['max_open_positions_venue']})")
    ax.set_ylabel("positions")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    out["open_positions"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    if a.r_values:
        lo = min(a.r_values)
        hi = max(a.r_values)
        edges = _bins(lo, hi, 0.25)
        ax.hist(a.r_values, bins=edges, color="#6c5ce7", edgecolor="white")
        ax.axvline(0, color="#333", lw=0.8)
    else:
        _nothing(ax, "no trade with an initial stop")
    missing = a.summary["trades_without_stop"]
    ax.set_title(
        f"Trade results in R ({len(a.r_values)} trades"
        + (f"; {missing} without a stop left out)" if missing else ")")
    )
    ax.set_xlabel("R (net PnL / initial risk)")
    ax.set_ylabel("trades")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out["r_distribution"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    exits = a.summary["exits_by_reason"]
    if exits:
        names = list(exits)
        ax.barh(names, [exits[n] for n in names], color="#e67e22")
        ax.invert_yaxis()
    else:
        _nothing(ax, "no closed trades")
    ax.set_title("Exits by reason")
    ax.set_xlabel("trades")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    out["exits"] = _png(fig)
    plt.close(fig)
    return out


def _nothing(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#888")
    ax.set_xticks([])
    ax.set_yticks([])


def _bins(lo: float, hi: float, width: float) -> list[float]:
    import math

    start = math.floor(lo / width) * width
    stop = (math.floor(hi / width) + 1) * width
    n = max(1, round((stop - start) / width))
    return [start + i * width for i in range(n + 1)]


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;
color:#222;background:#fff;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;
border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px;
margin-top:12px}
.card{border:1px solid #e3e3e3;border-radius:6px;padding:8px 10px;background:#fafafa}
.card b{display:block;font-size:18px}.card span{color:#666;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin:4px 0}
th,td{border:1px solid #e3e3e3;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.neg{color:#b03a2e}.pos{color:#1e7b45}
img{max-width:100%;border:1px solid #eee}
.row{display:flex;gap:16px;flex-wrap:wrap}.row>div{flex:1;min-width:320px}
pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto;max-height:420px}
"""


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, Decimal):
        return f"{value:,.{digits}f}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return html.escape(str(value))


def _signed(value: Any, digits: int = 2) -> str:
    cls = ""
    if value is not None:
        number = float(value)
        cls = "pos" if number > 0 else "neg" if number < 0 else ""
    return f'<td class="{cls}">{_fmt(value, digits)}</td>'


def _counter_table(title: str, counts: dict[str, int]) -> str:
    if not counts:
        return f"<p class=sub>{html.escape(title)}: none</p>"
    rows = "".join(
        f'<tr><td class="l">{html.escape(k)}</td><td>{v}</td></tr>' for k, v in counts.items()
    )
    return f'<table><tr><th class="l">{html.escape(title)}</th><th>count</th></tr>{rows}</table>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_html(a: Analysis, charts: dict[str, bytes], config: dict[str, Any]) -> str:
    """The page: headline figures, charts, tables and the configuration echo."""
    s = a.summary

    def pct(x: float | None, digits: int = 1) -> str:
        return "&ndash;" if x is None else f"{x * 100:,.{digits}f} %"

    def num(x: Any, unit: str = "") -> str:
        return "&ndash;" if x is None else f"{_fmt(x)}{unit}"

    cards = [
        ("net PnL (closed trades)", _fmt(Decimal(s["net_pnl"]))),
        ("return (final equity)", num(s["return_pct"], " %")),
        ("final equity", _fmt(Decimal(s["final_equity"]))),
        ("trades", _fmt(s["trades"])),
        ("win rate", pct(s["win_rate"])),
        ("profit factor", _fmt(s["profit_factor"])),
        ("expectancy", num(s["expectancy_r"], " R")),
        ("max drawdown", f"{_fmt(Decimal(s['max_drawdown']))} ({_fmt(s['max_drawdown_pct'])} %)"),
        ("Sharpe (ann.)", _fmt(s["sharpe"])),
        ("Sortino (ann.)", _fmt(s["sortino"])),
        ("exposure", pct(s["exposure"])),
        ("fees", _fmt(Decimal(s["fees"]))),
        ("max open positions", _fmt(s["max_open_positions_venue"])),
        ("dead letters", _fmt(s["dlq_count"])),
        ("governor audit", "OK" if s["governor_audit_ok"] else "VIOLATED"),
    ]
    card_html = "".join(f"<div class=card><b>{v}</b><span>{k}</span></div>" for k, v in cards)

    sym_rows = "".join(
        f'<tr><td class="l">{html.escape(p["symbol"])}</td><td>{p["bars"]}</td>'
        f"<td>{p['trades']}</td><td>{pct(p['win_rate'])}</td>"
        f"{_signed(p['net_pnl'])}<td>{_fmt(p['fees'])}</td>{_signed(p['expectancy_r'])}"
        f"{_signed(p['best'])}{_signed(p['worst'])}</tr>"
        for p in a.per_symbol
    )
    month_rows = "".join(
        f'<tr><td class="l">{html.escape(month)}</td>{_signed(ret * 100)}</tr>'
        for month, ret in a.monthly
    )
    trade_rows = "".join(
        f'<tr><td class="l">{html.escape(str(t["symbol"]))}</td>'
        f'<td class="l">{html.escape(str(t["side"]))}</td>'
        f'<td class="l">{html.escape(str(t["entry_time"]))[:16]}</td>'
        f'<td class="l">{html.escape(str(t["exit_time"]))[:16]}</td>'
        f"<td>{html.escape(t['entry_price'])}</td><td>{html.escape(t['exit_price'])}</td>"
        f"<td>{_fmt(t['initial_stop'], 4)}</td>"
        f"<td>{html.escape(t['quantity'])}</td>{_signed(Decimal(t['net_pnl']))}"
        f"{_signed(t['r_multiple'])}"
        f'<td class="l">{html.escape(str(t["exit_reason"]))}</td></tr>'
        for t in a.trades
    )
    span = f"{s['start']} → {s['end']} UTC" if s["start"] else ""
    ratio = (
        f"Sharpe and Sortino: simple returns of the equity sampled every "
        f"{s['ratio_period_ms'] // 1000} s of event time, annualised over 365 days; "
        "risk-free rate 0 (docs/backtest.md)."
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Backtest report</title><style>{CSS}</style></head><body>
<h1>Backtest report</h1>
<div class=sub>{html.escape(span)} · {s["bars"]} bars · {len(s["symbols"])} symbols ·
initial balance {_fmt(Decimal(s["initial_balance"]))} USDT</div>
<div class=cards>{card_html}</div>
<h2>Equity and drawdown</h2>
{_img(charts["equity"], "equity and drawdown")}
<p class=sub>{html.escape(ratio)}</p>
<h2>Open positions over time</h2>
{_img(charts["open_positions"], "open positions over time")}
<div class=row>
<div><h2>Trade results in R</h2>{_img(charts["r_distribution"], "R distribution")}</div>
<div><h2>Exits by reason</h2>{_img(charts["exits"], "exits by reason")}</div>
</div>
<h2>Per symbol</h2>
<table><tr><th class="l">symbol</th><th>bars</th><th>trades</th><th>win %</th>
<th>net PnL</th><th>fees</th><th>expectancy R</th><th>best</th><th>worst</th></tr>
{sym_rows}</table>
<h2>Monthly returns (%)</h2>
<table><tr><th class="l">month</th><th>return %</th></tr>{month_rows}</table>
<h2>Denials and rejections</h2>
<div class=row>
<div>{_counter_table("governor denials", s["denials_by_reason"])}</div>
<div>{_counter_table("candidates rejected (stage:reason)", s["rejections_by_reason"])}</div>
<div>{_counter_table("orders refused by the venue", a.venue_refusals)}</div>
<div>{_counter_table("dead letters", s["dead_letters"])}</div>
</div>
<h2>Trades</h2>
<table><tr><th class="l">symbol</th><th class="l">side</th><th class="l">entry</th>
<th class="l">exit</th><th>entry price</th><th>exit price</th><th>initial stop</th>
<th>qty</th><th>net PnL</th><th>R</th><th class="l">exit reason</th></tr>
{trade_rows}</table>
<h2>Summary (summary.json)</h2>
<pre>{html.escape(json.dumps(s, indent=2, sort_keys=True))}</pre>
<h2>Configuration</h2>
<pre>{html.escape(json.dumps(config, indent=2, sort_keys=True, default=str))}</pre>
</body></html>
"""


def write_html(a: Analysis, out_dir: Path, *, config: dict[str, Any]) -> Path:
    """The charts as PNG files and report.html beside them; returns the page's path."""
    charts = render_charts(a)
    for name, png in charts.items():
        (out_dir / f"{name}.png").write_bytes(png)
    page = out_dir / "report.html"
    page.write_text(render_html(a, charts, config), encoding="utf-8")
    return page
