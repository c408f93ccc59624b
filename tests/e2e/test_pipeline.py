"""The sample through every agent on the real broker, lock-step, to paper fills (issue 8).

* with the execution agent in its own worker, SIGKILLed and restarted three times mid-run,
  and a poison record on every topic an agent reads: the governor's log audits clean, the
  venue never holds more positions than the cap, every request has one final decision,
  every grant at most one entry order, every poison record is in its topic's DLQ;
* the crossover rule model, fixed notional, no fees, twice: the same trades, byte for byte.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Producer

from agents.registry import REGISTRY
from quantum.app.backtest.report import read_values, write_report
from quantum.app.backtest.run import Backtest, pipeline_agents
from quantum.marketdata import Kline, replay_files, sample_files
from quantum.serde import AvroSerde
from tests.exit_world import SUPERVISOR_ENV, supervisor_restarts
from topologies.apply import delete_run_topics
from topologies.declaration import GOVERNOR_SNAPSHOTS, ORDERS, PORTFOLIO_DECISIONS, dlq_topic

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

HOUR_MS = 3_600_000
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT"]


def sample_hours(hours: float, symbols: list[str] = SYMBOLS) -> list[Kline]:
    files = [f for f in sample_files() if f.name.split("-")[0] in symbols]
    bars = [b for b in replay_files(files) if isinstance(b, Kline)]
    start = bars[0].open_time
    return [b for b in bars if b.open_time < start + hours * HOUR_MS]


def quick_exits_env() -> dict[str, str]:
    """Tight stops so that a few hours of 1-minute bars open and close trades."""
    return {
        "QT_SELECTOR__UNIVERSE": json.dumps(SYMBOLS),
        "QT_SELECTOR__SKIP_FLAT_SELL": "false",
        "QT_EXECUTION__STOP_LOSS_PCT": "0.004",
        "QT_EXECUTION__TAKE_PROFIT_PCT": "0.006",
        # a restarted worker rejoins its group once the killed member's session ends
        "BROKER_SESSION_TIMEOUT": "6",
    }


def crossover_env() -> dict[str, str]:
    return {
        **quick_exits_env(),
        "QT_AI_ENGINE__MODELS": '["ma_crossover"]',
        "QT_AI_ENGINE__WEIGHTS": "[1.0]",
        "QT_REGIME__ENABLED": "false",
        "QT_SIZING__MODE": "FIXED_NOTIONAL",
        "QT_SIZING__FIXED_NOTIONAL": "500",
        "QT_PAPER_EXCHANGE__TAKER_FEE_RATE": "0",
        "QT_PAPER_EXCHANGE__MAKER_FEE_RATE": "0",
        "QT_PAPER_EXCHANGE__MARKET_SLIPPAGE_BPS": "0",
    }


def _poison_every_input(settings, producer: Producer, agents: list[str]) -> set[str]:
    """Garbage bytes on every topic one of `agents` reads; returns those topics. Not on the
    governor's own transactional log (portfolio.decisions), which no one else writes: its
    readers' dead-lettering is shown in tests/integration/test_venue_agents.py, and the
    audit must keep treating a foreign record there as an error."""
    topics = {t for spec in REGISTRY.select(",".join(agents)) for t in spec.reads} - {
        GOVERNOR_SNAPSHOTS,
        PORTFOLIO_DECISIONS,
    }
    for logical in sorted(topics):
        producer.produce(settings.topic(logical), key=b"POISONUSDT", value=b"\x00not avro")
    producer.flush(30)
    return topics


@pytest.mark.chaos
def test_sample_to_paper_fills_with_workers_killed(settings, tmp_path: Path) -> None:
    bars = sample_hours(5)
    agents = pipeline_agents()
    workers = [[a for a in agents if a != "execution"], ["execution"]]
    # Supervised as in production: a kill below SIGKILLs a worker (execution three times,
    # the one with every other agent, the governor's thread included, twice) and its
    # supervisor restarts it (also after a Faust restart stall or hole, docs/exits.md).
    env = {**quick_exits_env(), **SUPERVISOR_ENV}
    # A bar may wait for a kill, a Faust restart stall (seen in CI: faust-streaming #596),
    # the supervisor's 60 s stall timeout and a second start: more than the default 120 s.
    bt = Backtest(
        settings, tmp_path, workers=workers, env=env, supervise=True, settle_timeout_s=300
    )
    others, execution = bt.processes
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap})
    poisoned: set[str] = set()
    kills_at = {60, 120, 180}
    others_killed_at = {90, 150}

    def chaos(stats) -> None:
        if stats.steps == 20:
            poisoned.update(_poison_every_input(settings, producer, agents))
        if stats.steps in kills_at:
            execution.kill()
        if stats.steps in others_killed_at:
            others.kill()

    try:
        quiescence = bt.start()
        stats = bt.feed(bars, quiescence, chaos)
    finally:
        bt.stop()
    for proc, kills in ((execution, kills_at), (others, others_killed_at)):
        extra = supervisor_restarts(proc.log_path.read_text(errors="replace"))
        assert proc.worker_starts() == 1 + len(kills) + extra, proc.log_path
    summary = write_report(settings, tmp_path, feed=vars(stats))

    # the cap, in the governor's book and on the venue
    assert summary["governor_audit_ok"], summary
    assert summary["max_occupied_governor"] <= 10
    assert summary["max_open_positions_venue"] <= 10
    assert summary["slot_requests"] > 0 and summary["trades"] > 0, summary
    assert summary["requests_without_one_final_decision"] == 0
    # each grant at most one entry order, whatever the kills did
    serde = AvroSerde.from_settings(settings)
    entries: dict[str, set[str]] = defaultdict(set)
    for order in read_values(settings, ORDERS, serde):
        if order["role"] == "ENTRY" and order["action"] == "NEW":
            entries[order["intent_id"]].add(order["client_order_id"])
    assert entries and all(len(ids) == 1 for ids in entries.values()), entries
    granted = summary["decisions_by_kind"].get("GRANTED", 0)
    assert len(entries) <= granted
    # rejected candidates carry their reasons
    assert summary["rejections_by_reason"]
    assert all(":" in k and k.split(":")[1] for k in summary["rejections_by_reason"])
    # every poison record is in its topic's dead-letter topic; the agents went on
    for logical in poisoned:
        assert summary["dead_letters"].get(dlq_topic(logical), 0) >= 1, logical


def test_crossover_fixed_notional_no_fees_trades_the_same_twice(settings, tmp_path: Path) -> None:
    bars = sample_hours(4)
    outputs = []
    for run in range(2):
        run_settings = settings.with_prefix(f"{settings.kafka.topic_prefix}r{run}.")
        out = tmp_path / f"run{run}"
        try:
            stats, _ = Backtest(run_settings, out, env=crossover_env()).run(bars)
            write_report(run_settings, out, feed=vars(stats))
        finally:
            delete_run_topics(run_settings)
        outputs.append(((out / "trades.csv").read_bytes(), (out / "summary.json").read_bytes()))
    assert outputs[0] == outputs[1]
    with (tmp_path / "run0" / "trades.csv").open() as handle:
        trades = list(csv.DictReader(handle))
    assert trades, "the crossover traded nothing: the test would prove nothing"
    assert all(t["fees"] in ("0", "0E-8", "0.00000000") or float(t["fees"]) == 0 for t in trades)
