"""Chaos on the real broker: the execution worker is SIGKILLed and restarted while the
governor grants slots, the paper exchange fills and positions closes and releases.

Three worker processes: the governor; the paper exchange and positions; execution alone
(killed at random moments in the middle of a step, at least three times). The test feeds
bars for ten symbols and, after each bar, sized plans with their SlotRequests, in lock-step
as the backtest driver does (every reader caught up before the next phase, so the order
in which fills, releases and grants meet is fixed and a grant never finds the previous
position on its symbol still open in execution's ledger).

Afterwards, from the logs: every intent has at most one entry client order id in
`orders` (a resend after a restart repeats the same id, and the paper exchange answers it
instead of placing it again), every GRANTED intent got exactly one, no client order id was
filled twice, and the paper exchange never held more positions than the cap (fills replayed
in the exchange's own trade-id order). The governor's audit of its decisions log holds too.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import pytest

from agents.governor.audit import audit_decisions
from agents.governor.io import CommandSender, read_decisions
from agents.governor.model import DecisionKind, Side, SlotRequest
from exchange.rules import ExchangeRules
from quantum.app.backtest.run import WorkerProcess, readers_of_processes
from quantum.app.settings import Settings
from quantum.marketdata import Kline
from quantum.quiescence import Quiescence
from quantum.serde import AvroSerde
from tests.exit_world import SUPERVISOR_ENV, supervisor_restarts
from tests.integration.venue_io import (
    MINUTE,
    T0,
    Feed,
    read_all,
    read_ledger,
    settle,
    sized_plan,
)
from topologies.apply import apply_topology
from topologies.declaration import (
    EXECUTION_RESULTS,
    ORDERS,
)

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

CAP = 4
STEPS = 90
KILLS = 3
REQUESTS_PER_STEP = 3
NOTIONAL = Decimal(200)
START = {
    "BTCUSDT": "60000", "ETHUSDT": "3000", "BNBUSDT": "600", "SOLUSDT": "150",
    "XRPUSDT": "0.6", "ADAUSDT": "0.45", "DOGEUSDT": "0.15", "AVAXUSDT": "30",
    "LINKUSDT": "15", "LTCUSDT": "80",
}  # fmt: skip
RULES = ExchangeRules.bundled()


def _bars(rng: random.Random, steps: int) -> list[list[Kline]]:
    """A random walk per symbol, ~0.8 % per bar, so stops (1.5 %) and targets (2.5 %)
    are hit within a few bars and slots free up again."""
    prices = {s: Decimal(p) for s, p in START.items()}
    out = []
    for i in range(steps):
        row = []
        for sym, o in prices.items():
            tick = RULES[sym].price_filter.tick
            c = o * (1 + Decimal(str(round(rng.gauss(0, 0.008), 5))))
            hi = max(o, c) * (1 + Decimal(str(round(abs(rng.gauss(0, 0.003)), 5))))
            lo = min(o, c) * (1 - Decimal(str(round(abs(rng.gauss(0, 0.003)), 5))))
            c, hi, lo = (
                (x / tick).to_integral_value(rounding=ROUND_FLOOR) * tick for x in (c, hi, lo)
            )
            lo = min(lo, o, c)
            hi = max(hi, o, c)
            start = T0 + i * MINUTE
            row.append(Kline(sym, "1m", start, start + MINUTE - 1, o, hi, lo, c, Decimal(10)))
            prices[sym] = c
        out.append(row)
    return out


def _wait_for_exec_work(quiet: Quiescence, group: str, timeout_s: float = 5.0) -> int:
    """Poll until execution's consumer group has input it has not committed (the
    governor's decisions of this step), so the kill lands mid-work. 1 if seen, else 0."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(key.startswith(group) for key in quiet.lag()):
            return 1
        time.sleep(0.002)  # polling a condition with a deadline
    return 0


def _quantity(symbol: str, price: Decimal) -> str:
    return str(RULES[symbol].floor_quantity(NOTIONAL / price))


def test_execution_sigkilled_mid_grant_never_sends_an_entry_twice(
    settings: Settings, tmp_path: Path
) -> None:
    assert apply_topology(settings).ok
    prefix = settings.kafka.topic_prefix
    base_env = {
        "QT_KAFKA__COMMIT_INTERVAL_S": "0.01",
        "QT_GOVERNOR__MAX_OPEN_POSITIONS": str(CAP),
        "QT_GOVERNOR__ACTIVE_SLOTS_BASE": str(CAP),
        # no reservation may lapse while execution is down (the feed waits meanwhile)
        "QT_GOVERNOR__RESERVATION_TTL_MS": str(3_600_000),
        # a killed member leaves the group after 6 s (the broker's minimum), not Faust's 60
        "BROKER_SESSION_TIMEOUT": "6",
        "BROKER_HEARTBEAT_INTERVAL": "1",
    }
    env = settings.child_env(**base_env, **SUPERVISOR_ENV)
    logs = tmp_path
    # Supervised, as in production: a kill SIGKILLs the worker under its supervisor, which
    # restarts it, also after a Faust restart stall or hole (docs/exits.md, "Restart").
    governor = WorkerProcess(("governor",), "gov", env, logs / "governor.log")
    venue = WorkerProcess(
        ("paper_exchange", "positions"), "venue", env, logs / "venue.log", supervise=True
    )
    execution = WorkerProcess(("execution",), "exec", env, logs / "execution.log", supervise=True)
    workers = (governor, venue, execution)
    # the readers each worker commits, as its supervisor sees them (the governor's group
    # derives from the topic prefix)
    readers, transactional = readers_of_processes(settings, workers)
    quiet = Quiescence(settings.kafka.bootstrap, readers, transactional=transactional)
    serde = AvroSerde.from_settings(settings)
    feed = Feed(settings, serde)
    sender = CommandSender(settings, serde=serde)
    rng = random.Random(20261126)
    kill_steps = sorted(rng.sample(range(10, STEPS - 5), KILLS))
    bars = _bars(rng, STEPS)
    all_log = logs / "execution.log"

    def alive() -> bool:
        return all(w.alive() for w in workers)

    t_start = time.monotonic()
    for w in workers:
        w.start()
    kills = 0
    in_flight = 0
    settle_s = 0.0
    try:
        for i, row in enumerate(bars):
            for k in row:
                feed.tick(k)
            feed.flush()
            settle_s += settle(quiet, alive, all_log, timeout_s=300)
            close = row[0].close_time
            for sym in rng.sample(sorted(START), REQUESTS_PER_STEP):
                price = next(k.close for k in row if k.symbol == sym)
                side = rng.choice([Side.LONG, Side.SHORT])
                intent = f"c{i}-{sym}"
                feed.plan(sized_plan(intent, sym, side, _quantity(sym, price), str(price), close))
                sender.send(SlotRequest(intent, sym, side, NOTIONAL, 0.7, close))
            feed.flush()
            sender.flush()
            if i in kill_steps:
                # SIGKILL the moment execution has this step's decisions to work on
                in_flight += _wait_for_exec_work(quiet, f"{prefix}exec/")
                execution.kill()
                kills += 1
                execution.start()
            settle_s += settle(quiet, alive, all_log, timeout_s=300)
        wall = time.monotonic() - t_start
    finally:
        for w in workers:
            w.stop()

    # ---- what the logs say ----------------------------------------------------------------
    decisions = read_decisions(settings, serde=serde)
    granted = {d.decision.intent_id for d in decisions if d.decision.kind == DecisionKind.GRANTED}
    orders = read_all(settings, serde, ORDERS)
    entries: dict[str, set[str]] = defaultdict(set)
    records_per_id: Counter[str] = Counter()
    for o in orders:
        if o["role"] == "ENTRY" and o["action"] == "NEW":
            entries[o["intent_id"]].add(o["client_order_id"])
            records_per_id[o["client_order_id"]] += 1
    results = read_all(settings, serde, EXECUTION_RESULTS)
    fills = sorted(
        (r for r in results if r["status"] == "FILLED" and r["trade_id"] is not None),
        key=lambda r: int(r["trade_id"]),
    )
    fills_per_id = Counter(r["client_order_id"] for r in fills)
    held: dict[str, Decimal] = defaultdict(Decimal)
    most_open = 0
    for r in fills:
        sign = 1 if r["order_side"] == "BUY" else -1
        held[r["symbol"]] += sign * Decimal(r["last_filled_quantity"])
        most_open = max(most_open, sum(1 for q in held.values() if q != 0))
    ledger = read_ledger(settings, serde)
    report = audit_decisions((d.offset, d.decision) for d in decisions)
    resent = sum(n - 1 for n in records_per_id.values())
    print(
        f"steps={STEPS} kills={kills} grants={len(granted)} entry_orders={len(records_per_id)} "
        f"resent_entries={resent} fills={len(fills)} most_open={most_open} "
        f"trades={len(read_all(settings, serde, 'trades'))} wall={wall:.1f}s "
        f"settling={settle_s:.1f}s starts={execution.worker_starts()} "
        f"kills_with_work_in_flight={in_flight}"
    )

    restarts = supervisor_restarts(all_log.read_text(errors="replace"))
    assert kills >= KILLS and execution.worker_starts() == KILLS + 1 + restarts
    assert in_flight >= 1, "no kill found execution with uncommitted input"
    assert len(granted) >= 40, f"only {len(granted)} grants: the load did not exercise much"
    many = {i: ids for i, ids in entries.items() if len(ids) > 1}
    assert not many, f"intents with more than one entry client id: {many}"
    missing = {i: ledger[i].note if i in ledger else None for i in granted - set(entries)}
    assert not missing, f"GRANTED intents without an entry order: {missing}"
    assert set(entries) <= granted, f"entries without a grant: {set(entries) - granted}"
    twice = {c: n for c, n in fills_per_id.items() if n > 1}
    assert not twice, f"client order ids filled more than once: {twice}"
    assert 0 < most_open <= CAP
    assert report.ok, report.render()
