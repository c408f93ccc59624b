"""What a backtest leaves behind: `summary.json` and `trades.csv`, read back from the
run's committed topics (never from an agent's memory), so the report is what the log says.

Deterministic by construction: records are sorted by their own ids and event times,
never by arrival, and the summary holds no wall-clock figure (those go to
`run.json`), so two runs over the same data and config give byte-identical files.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from agents.governor.io import audit_committed_log
from agents.governor.model import DecisionKind
from quantum.end_of_stream import marker_of
from quantum.errors import PoisonRecord
from quantum.kafka_util import end_offsets, read_range
from quantum.serde import AvroSerde
from topologies.declaration import POSITIONS, TOPOLOGY, TRADE_REJECTIONS, TRADES

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
    events = sorted(
        [(start, 1) for start, _ in intervals]
        + [(end, -1) for _, end in intervals if end is not None]
    )
    best = level = 0
    for _, step in events:
        level += step
        best = max(best, level)
    return best


def write_report(settings: Any, out_dir: Path, *, feed: dict[str, Any]) -> dict[str, Any]:
    serde = AvroSerde.from_settings(settings)
    trades = sorted(
        read_values(settings, TRADES, serde), key=lambda t: (t["exit_time"], t["trade_id"])
    )
    positions = list(read_values(settings, POSITIONS, serde))
    rejections = list(read_values(settings, TRADE_REJECTIONS, serde))
    audit, logged, _ = audit_committed_log(settings)

    with (out_dir / "trades.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TRADE_COLUMNS)
        for t in trades:
            writer.writerow([t[c] if t[c] is not None else "" for c in TRADE_COLUMNS])

    still_open: dict[str, int] = {}
    for p in sorted(positions, key=lambda p: (p["updated_at"], p["symbol"])):
        if p["status"] == "OPEN":
            still_open[p["symbol"]] = p["opened_at"]
        else:
            still_open.pop(p["symbol"], None)
    intervals = [(t["entry_time"], t["exit_time"]) for t in trades]
    intervals += [(t, None) for t in still_open.values()]

    net = sum((Decimal(t["net_pnl"]) for t in trades), Decimal(0))
    fees = sum((Decimal(t["fees"]) for t in trades), Decimal(0))
    wins = sum(1 for t in trades if Decimal(t["net_pnl"]) > 0)
    denials = Counter(
        d.decision.deny_reason.value
        for d in logged
        if d.decision.kind == DecisionKind.DENIED and d.decision.deny_reason is not None
    )
    kinds = Counter(d.decision.kind.value for d in logged)
    summary = {
        "bars": feed.get("bars", 0),
        "symbols": sorted(feed.get("per_symbol", {})),
        "trades": len(trades),
        "wins": wins,
        "net_pnl": str(net),
        "fees": str(fees),
        "exits_by_reason": dict(sorted(Counter(t["exit_reason"] for t in trades).items())),
        "max_open_positions_venue": max_concurrent(intervals),
        "max_occupied_governor": audit.max_occupied,
        "governor_audit_ok": audit.ok,
        "slot_requests": audit.requests,
        "requests_without_one_final_decision": len(audit.missing_decisions)
        + len(audit.duplicate_finals),
        "decisions_by_kind": dict(sorted(kinds.items())),
        "denials_by_reason": dict(sorted(denials.items())),
        "rejections_by_reason": dict(
            sorted(Counter(f"{r['stage']}:{r['reason']}" for r in rejections).items())
        ),
        "dead_letters": dead_letter_counts(settings),
        "open_at_end": sorted(still_open),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
