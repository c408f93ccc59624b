"""What a backtest leaves behind, read back from the run's committed topics (never from an
agent's memory), so the report is what the log says:

- `summary.json`: the headline figures (docs/backtest.md, "The report");
- `trades.csv`: one row per closed trade, with its initial stop and result in R;
- `equity.png`, `open_positions.png`, `r_distribution.png`, `exits.png`: the charts;
- `report.html`: all of it on one self-contained page (images inline, no script).

Deterministic by construction: records are sorted by their own ids and event times,
never by arrival, and the summary holds no wall-clock figure (those go to
`run.json`), so two runs over the same data and config give byte-identical files.
`collect` does the reading; `analyse` is a function of the records alone.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from agents.governor.io import audit_committed_log
from agents.governor.model import DecisionKind
from quantum.app.backtest import metrics as m
from quantum.end_of_stream import marker_of
from quantum.errors import PoisonRecord
from quantum.kafka_util import end_offsets, read_range
from quantum.serde import AvroSerde
from topologies.declaration import (
    EXECUTION_RESULTS,
    ORDERS,
    POSITIONS,
    TOPOLOGY,
    TRADE_REJECTIONS,
    TRADES,
)

TRADE_COLUMNS = (
    "trade_id",
    "symbol",
    "side",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "quantity",
    "leverage",
    "realized_pnl",
    "fees",
    "net_pnl",
    "exit_reason",
    "intent_id",
)
EXTRA_COLUMNS = ("initial_stop", "r_multiple")
R_BIN = 0.25  # width of the R histogram's bins
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(value: Any) -> int:
    """Epoch milliseconds of an Avro timestamp-millis as decoded (int or datetime)."""
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(milliseconds=1)
    return int(value)


def iso(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def read_values(settings: Any, logical: str, serde: AvroSerde) -> Iterator[dict[str, Any]]:
    """Every committed value of a run topic; markers and poison left out (the agents that
    read the topic dead-lettered the poison, and the summary counts dead letters)."""
    topic = settings.topic(logical)
    schema = TOPOLOGY.topic(logical).schema or ""
    for msg in read_range(settings.kafka.bootstrap, topic, timeout_s=120):
        try:
            value = serde.decode(topic, msg.value() or b"", schema_file=schema)
        except PoisonRecord:
            continue
        if marker_of(value) is None:
            yield value


def dead_letter_counts(settings: Any) -> dict[str, int]:
    counts = {}
    for spec in TOPOLOGY.all_topics():
        if spec.name.endswith(".dlq"):
            n = sum(end_offsets(settings.kafka.bootstrap, settings.topic(spec.name), 30).values())
            if n:
                counts[spec.name] = n
    return dict(sorted(counts.items()))


def max_concurrent(intervals: list[tuple[int, int | None]]) -> int:
    """Most intervals open at once; a close at t frees before an open at t takes."""
    return m.max_concurrent(intervals)


@dataclass
class RunRecords:
    """What the report reads from a run's topics (decoded Avro values)."""

    trades: list[dict[str, Any]]
    positions: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    results: list[dict[str, Any]]
    rejections: list[dict[str, Any]]
    denials: Counter[str] = field(default_factory=Counter)
    decisions_by_kind: Counter[str] = field(default_factory=Counter)
    audit: dict[str, Any] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)


def collect(settings: Any) -> RunRecords:
    """Read every committed record the report needs from the run's topics."""
    serde = AvroSerde.from_settings(settings)
    audit, logged, _ = audit_committed_log(settings)
    denials = Counter(
        d.decision.deny_reason.value
        for d in logged
        if d.decision.kind == DecisionKind.DENIED and d.decision.deny_reason is not None
    )
    return RunRecords(
        trades=list(read_values(settings, TRADES, serde)),
        positions=list(read_values(settings, POSITIONS, serde)),
        orders=list(read_values(settings, ORDERS, serde)),
        results=list(read_values(settings, EXECUTION_RESULTS, serde)),
        rejections=list(read_values(settings, TRADE_REJECTIONS, serde)),
        denials=denials,
        decisions_by_kind=Counter(d.decision.kind.value for d in logged),
        audit={
            "ok": audit.ok,
            "max_occupied": audit.max_occupied,
            "requests": audit.requests,
            "without_one_final": len(audit.missing_decisions) + len(audit.duplicate_finals),
        },
        dead_letters=dead_letter_counts(settings),
    )


def _enum(value: Any) -> str:
    """An Avro enum as decoded (a string, or a (name, symbol) pair with record names)."""
    if isinstance(value, tuple):
        return str(value[1])
    return "" if value is None else str(value)


def initial_stops(orders: list[dict[str, Any]]) -> dict[str, Decimal]:
    """The first protective stop placed for each intent: its trigger is the initial stop
    (a later one, e.g. after a partial exit or a move to break-even, is not)."""
    first: dict[str, tuple[int, str, Decimal]] = {}
    for o in orders:
        if _enum(o.get("role")) != "STOP_LOSS" or _enum(o.get("action")) == "CANCEL":
            continue
        if o.get("trigger_price") is None:
            continue
        key = (ms(o["event_time"]), o["client_order_id"], Decimal(o["trigger_price"]))
        held = first.get(o["intent_id"])
        if held is None or key[:2] < held[:2]:
            first[o["intent_id"]] = key
    return {intent: key[2] for intent, key in first.items()}


def venue_refusals(results: list[dict[str, Any]]) -> Counter[str]:
    """Orders the exchange rejected or expired, by role and the reason's first word."""
    out: Counter[str] = Counter()
    for r in results:
        status = _enum(r.get("status"))
        if status not in ("REJECTED", "EXPIRED"):
            continue
        reason = (r.get("reason") or "").split(":")[0].split(" ")[0] or "unknown"
        out[f"{_enum(r.get('role')) or 'ORDER'} {status.lower()}: {reason}"] += 1
    return out


@dataclass
class Analysis:
    """The report's content: the summary, the tables and the series the charts draw."""

    summary: dict[str, Any]
    trades: list[dict[str, Any]]  # sorted, with initial_stop and r_multiple added
    equity: list[tuple[int, Decimal]]
    drawdown: list[Decimal]
    open_steps: list[tuple[int, int]]
    r_values: list[float]
    per_symbol: list[dict[str, Any]]
    monthly: list[tuple[str, float]]
    venue_refusals: dict[str, int]


def _r4(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def analyse(
    records: RunRecords,
    *,
    feed: dict[str, Any],
    initial_balance: Decimal,
) -> Analysis:
    """Every figure of the report from the records (no I/O)."""
    unique: dict[str, dict[str, Any]] = {}
    for t in records.trades:  # readers dedupe by trade id (a redelivered close)
        unique.setdefault(t["trade_id"], t)
    stops = initial_stops(records.orders)
    trades = []
    for t in sorted(unique.values(), key=lambda t: (ms(t["exit_time"]), t["trade_id"])):
        stop = stops.get(t["intent_id"])
        r = m.r_multiple(
            Decimal(t["net_pnl"]), Decimal(t["entry_price"]), stop, Decimal(t["quantity"])
        )
        trades.append({**t, "initial_stop": stop, "r_multiple": r})

    # open at the end: the symbol's latest position record is OPEN and its intent has no
    # closed trade (the trade and the CLOSED record are written together)
    closed = {t["intent_id"] for t in trades}
    still_open: dict[str, dict[str, Any]] = {}
    for p in sorted(records.positions, key=lambda p: (ms(p["updated_at"]), p["symbol"])):
        if _enum(p["status"]) == "OPEN" and p["intent_id"] not in closed:
            still_open[p["symbol"]] = p
        else:
            still_open.pop(p["symbol"], None)
    intervals: list[tuple[int, int | None]] = [
        (ms(t["entry_time"]), ms(t["exit_time"])) for t in trades
    ]
    intervals += [(ms(p["opened_at"]), None) for p in still_open.values()]

    # equity: open positions' marks, then the closed trades (which win a tie)
    marks = [
        m.Mark(
            ms(p["updated_at"]),
            p["intent_id"],
            Decimal(p["realized_pnl"]) + Decimal(p["unrealized_pnl"]) - Decimal(p["fees"]),
        )
        for p in sorted(records.positions, key=lambda p: (ms(p["updated_at"]), p["symbol"]))
        if _enum(p["status"]) == "OPEN"
    ]
    marks += [m.Mark(ms(t["exit_time"]), t["intent_id"], Decimal(t["net_pnl"])) for t in trades]
    start = feed.get("first_ms")
    end = feed.get("last_ms")
    curve = m.equity_curve(initial_balance, marks)
    if start is not None and (not curve or curve[0][0] > start):
        curve.insert(0, (start, initial_balance))
    if end is not None and curve and curve[-1][0] < end:
        curve.append((end, curve[-1][1]))
    values = [v for _, v in curve] or [initial_balance]
    final_equity = values[-1]
    dd_abs, dd_pct = m.max_drawdown(values)

    period = int(feed.get("step_ms") or m.MINUTE_MS)
    returns: list[float] = []
    if start is not None and end is not None:
        samples = m.sample_equity(curve, initial_balance, start, end, period)
        returns = m.period_returns(samples)
    per_year = m.YEAR_MS / period

    results = [Decimal(t["net_pnl"]) for t in trades]
    net = sum(results, Decimal(0))
    # every fee paid: the closed trades' and the entry fees of positions still open
    fees = sum((Decimal(t["fees"]) for t in trades), Decimal(0)) + sum(
        (Decimal(p["fees"]) for p in still_open.values()), Decimal(0)
    )
    r_values = [t["r_multiple"] for t in trades if t["r_multiple"] is not None]
    refusals = venue_refusals(records.results)

    per_symbol = []
    for symbol in sorted({t["symbol"] for t in trades} | set(feed.get("per_symbol", {}))):
        mine = [t for t in trades if t["symbol"] == symbol]
        res = [Decimal(t["net_pnl"]) for t in mine]
        rs = [t["r_multiple"] for t in mine if t["r_multiple"] is not None]
        per_symbol.append(
            {
                "symbol": symbol,
                "bars": feed.get("per_symbol", {}).get(symbol, 0),
                "trades": len(mine),
                "win_rate": m.win_rate(res),
                "net_pnl": sum(res, Decimal(0)),
                "fees": sum((Decimal(t["fees"]) for t in mine), Decimal(0)),
                "expectancy_r": m.mean(rs),
                "best": max(res) if res else None,
                "worst": min(res) if res else None,
            }
        )

    summary = {
        "bars": feed.get("bars", 0),
        "symbols": sorted(feed.get("per_symbol", {})),
        "start": iso(start) if start is not None else None,
        "end": iso(end) if end is not None else None,
        "initial_balance": str(initial_balance),
        "final_equity": str(final_equity),
        "trades": len(trades),
        "wins": sum(1 for r in results if r > 0),
        "net_pnl": str(net),
        "return_pct": _r4(float((final_equity - initial_balance) / initial_balance * 100)),
        "fees": str(fees),
        "profit_factor": _r4(m.profit_factor(results)),
        "win_rate": _r4(m.win_rate(results)),
        "expectancy_r": _r4(m.mean(r_values)),
        "trades_without_stop": len(trades) - len(r_values),
        "max_drawdown": str(dd_abs),
        "max_drawdown_pct": _r4(dd_pct * 100),
        "sharpe": _r4(m.sharpe(returns, per_year)),
        "sortino": _r4(m.sortino(returns, per_year)),
        "ratio_period_ms": period,
        "exposure": _r4(
            m.exposure(intervals, start, end) if start is not None and end is not None else None
        ),
        "exits_by_reason": dict(sorted(Counter(_enum(t["exit_reason"]) for t in trades).items())),
        "max_open_positions_venue": m.max_concurrent(intervals),
        "max_occupied_governor": records.audit.get("max_occupied"),
        "governor_audit_ok": records.audit.get("ok"),
        "slot_requests": records.audit.get("requests"),
        "requests_without_one_final_decision": records.audit.get("without_one_final"),
        "decisions_by_kind": dict(sorted(records.decisions_by_kind.items())),
        "denials_by_reason": dict(sorted(records.denials.items())),
        "rejections_by_reason": dict(
            sorted(Counter(f"{r['stage']}:{r['reason']}" for r in records.rejections).items())
        ),
        "dead_letters": records.dead_letters,
        "dlq_count": sum(records.dead_letters.values()),
        "open_at_end": sorted(still_open),
    }
    return Analysis(
        summary=summary,
        trades=trades,
        equity=curve,
        drawdown=m.drawdowns(values),
        open_steps=m.open_count_steps(intervals),
        r_values=r_values,
        per_symbol=per_symbol,
        monthly=m.monthly_returns(curve, initial_balance),
        venue_refusals=dict(sorted(refusals.items())),
    )


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(_enum(value) if isinstance(value, tuple) else value)


def write_report(
    settings: Any,
    out_dir: Path,
    *,
    feed: dict[str, Any],
    config: dict[str, Any] | None = None,
    charts: bool = True,
) -> dict[str, Any]:
    """Read the run's topics and write summary.json, trades.csv, the charts and
    report.html into `out_dir`. Returns the summary."""
    initial = Decimal(str(settings.paper_exchange.initial_balance))
    analysis = analyse(collect(settings), feed=feed, initial_balance=initial)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "trades.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TRADE_COLUMNS + EXTRA_COLUMNS)
        for t in analysis.trades:
            writer.writerow([_csv_cell(t[c]) for c in TRADE_COLUMNS + EXTRA_COLUMNS])
    summary = analysis.summary
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    # Counts that depend on the order in which concurrent records met, not on what the
    # strategy did (docs/replay.md, "Determinism"): beside the summary, not in it.
    diagnostics = {"venue_refusals": analysis.venue_refusals}
    (out_dir / "diagnostics.json").write_text(
        json.dumps(diagnostics, indent=2, sort_keys=True) + "\n"
    )
    if charts:
        from quantum.app.backtest.page import write_html

        write_html(analysis, out_dir, config=config or {})
    return summary
