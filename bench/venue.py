"""Venue agents benchmark on the real broker: records/s of the paper exchange, positions and
execution shells, each alone in its own worker, consuming a backlog.

For each agent: a fresh topic prefix, a `quantum worker --agents <name>`, one warm-up
record (so Faust startup and table recovery are not timed), then a bulk of input records
produced at once; the figure is input records per second from the first bulk send until
the agent's consumer group has committed the end of every input partition
(`quantum.quiescence`), and the outputs it wrote meanwhile.

- paper_exchange: 1-minute bars of the ten bundled symbols, and per bar two entries with a
  stop and a take-profit each 0.6 % away, so positions close within a few bars and the
  open orders stay few, as in a run (orders and bars race, as they do live; an entry on
  a held symbol is refused, its stop and take-profit wait with the position's and go
  when it closes);
- positions: the paper exchange run's own execution.results and bars, copied byte for byte;
- execution: sized plans (two per bar, each on a symbol of its own), then their GRANTED
  decisions (each: a ledger record and the entry order), then a NEW and a FILLED report
  for every entry (each fill: a ledger record, a stop, a take-profit and a SlotFilled);
  each bulk timed once the previous one has settled.

Writes bench/results/venue.json.

    python -m bench.venue [--bars N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from agents.governor.model import DecisionKind, Side
from bench.machine import KAFKA_BROKER, machine
from exchange.rules import ExchangeRules
from quantum.app.backtest.run import WorkerProcess
from quantum.app.settings import Settings
from quantum.kafka_util import end_offsets, read_range
from quantum.quiescence import Quiescence, Reader
from quantum.serde import AvroSerde
from tests.integration.venue_io import MINUTE, T0, Feed, bar, decision, read_all, sized_plan
from topologies.apply import apply_topology, delete_run_topics
from topologies.declaration import (
    EXECUTION_LEDGER,
    EXECUTION_RESULTS,
    EXIT_INTENTS,
    MARKET_TICKS,
    ORDERS,
    PORTFOLIO,
    PORTFOLIO_DECISIONS,
    POSITIONS,
    SIZED_INTENTS,
    TRADES,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "venue.json"
LOG_DIR = Path(os.environ.get("QT_BENCH_LOG_DIR", "/tmp"))
RULES = ExchangeRules.bundled()
START = {
    "BTCUSDT": 60000, "ETHUSDT": 3000, "BNBUSDT": 600, "SOLUSDT": 150, "XRPUSDT": 0.6,
    "ADAUSDT": 0.45, "DOGEUSDT": 0.15, "AVAXUSDT": 30, "LINKUSDT": 15, "LTCUSDT": 80,
}  # fmt: skip
READS = {
    "paper_exchange": (ORDERS, MARKET_TICKS),
    "positions": (EXECUTION_RESULTS, MARKET_TICKS),
    "execution": (PORTFOLIO_DECISIONS, SIZED_INTENTS, EXIT_INTENTS, EXECUTION_RESULTS),
}
WRITES = {
    "paper_exchange": (EXECUTION_RESULTS,),
    "positions": (POSITIONS, TRADES, PORTFOLIO),
    "execution": (EXECUTION_LEDGER, ORDERS, PORTFOLIO),
}


def _price(sym: str, i: int, rng: random.Random) -> Decimal:
    tick = RULES[sym].price_filter.tick
    p = Decimal(str(START[sym])) * Decimal(str(1 + 0.01 * (rng.random() - 0.5) + 0.0001 * i))
    return (p / tick).to_integral_value() * tick


def _qty(sym: str, price: Decimal) -> Decimal:
    return RULES[sym].floor_quantity(Decimal(200) / price)


class Run:
    """One agent in its own worker on its own prefix."""

    def __init__(self, base: Settings, agent: str) -> None:
        self.settings = base.model_copy(
            update={
                "kafka": base.kafka.model_copy(
                    update={"topic_prefix": f"bench-{uuid.uuid4().hex[:8]}."}
                )
            }
        )
        assert apply_topology(self.settings).ok
        self.agent = agent
        self.serde = AvroSerde.from_settings(self.settings)
        self.feed = Feed(self.settings, self.serde)
        env = self.settings.child_env(QT_KAFKA__COMMIT_INTERVAL_S="0.05")
        self.log = LOG_DIR / f"bench-venue-{agent}.log"
        self.worker = WorkerProcess((agent,), "bench", env, self.log)
        group = f"{self.settings.kafka.topic_prefix}bench"
        topics = tuple(map(self.settings.topic, READS[agent]))
        self.quiet = Quiescence(self.settings.kafka.bootstrap, [Reader(group, topics)])

    def outputs(self) -> int:
        boot = self.settings.kafka.bootstrap
        return sum(
            sum(end_offsets(boot, self.settings.topic(t), 10).values()) for t in WRITES[self.agent]
        )

    def settle(self, timeout_s: float = 600) -> None:
        start = time.monotonic()
        while True:
            try:
                self.quiet.wait(5)
                return
            except Exception:
                if not self.worker.alive() or time.monotonic() - start > timeout_s:
                    raise

    def timed(self, produce: Any) -> dict[str, float]:
        """Produce a bulk (`produce()` returns how many records), wait, measure."""
        before = self.outputs()
        started = time.perf_counter()
        n = produce()
        self.feed.flush()
        self.settle()
        elapsed = time.perf_counter() - started
        out = self.outputs() - before
        return {
            "inputs": n,
            "outputs": out,
            "seconds": round(elapsed, 2),
            "inputs_per_s": round(n / elapsed, 1),
            "outputs_per_s": round(out / elapsed, 1),
        }

    def close(self) -> None:
        self.worker.stop()
        delete_run_topics(self.settings)


def bench_paper_exchange(base: Settings, bars: int) -> tuple[dict[str, Any], list, list]:
    run = Run(base, "paper_exchange")
    rng = random.Random(7)
    try:
        run.worker.start()
        run.feed.tick(bar("BTCUSDT", 0, "60000", "60000", "60000", "60000"))
        run.feed.flush()
        run.settle()

        def produce() -> int:
            n = 0
            for i in range(1, bars + 1):
                for sym in START:
                    p = _price(sym, i, rng)
                    tick = RULES[sym].price_filter.tick
                    hi, lo = p * Decimal("1.004"), p * Decimal("0.996")
                    hi, lo = ((x / tick).to_integral_value() * tick for x in (hi, lo))
                    run.feed.tick(bar(sym, i, str(p), str(hi), str(lo), str(p)))
                    n += 1
                for sym in rng.sample(sorted(START), 2):
                    p = _price(sym, i, rng)
                    n += _bracket(run.feed, f"b{i}{sym}", sym, p, T0 + i * MINUTE - 1)
            return n

        figure = run.timed(produce)
        boot, topic = run.settings.kafka.bootstrap, run.settings.topic
        results = [(m.key(), m.value()) for m in read_range(boot, topic(EXECUTION_RESULTS))]
        ticks = [(m.key(), m.value()) for m in read_range(boot, topic(MARKET_TICKS))]
        return figure, results, ticks
    finally:
        run.close()


def _bracket(feed: Feed, intent: str, sym: str, p: Decimal, at: int) -> int:
    """An entry market order with its stop and take-profit (reduce-only), as orders."""
    tick = RULES[sym].price_filter.tick
    q = str(_qty(sym, p))
    common = {"intent_id": intent, "symbol": sym, "quantity": q, "price": None,
              "event_time": at, "action": "NEW"}  # fmt: skip
    for coid, side, otype, trig, reduce, role in (
        (f"E-{intent}", "BUY", "MARKET", None, False, "ENTRY"),
        (f"S-{intent}", "SELL", "STOP_MARKET", p * Decimal("0.994"), True, "STOP_LOSS"),
        (f"T-{intent}", "SELL", "TAKE_PROFIT_MARKET", p * Decimal("1.006"), True, "TAKE_PROFIT"),
    ):
        trigger = None if trig is None else str((trig / tick).to_integral_value() * tick)
        value = {
            **common,
            "client_order_id": coid,
            "side": side,
            "order_type": otype,
            "trigger_price": trigger,
            "reduce_only": reduce,
            "role": role,
            "exit_reason": None if role == "ENTRY" else role,
            "leverage": 10 if role == "ENTRY" else None,
        }
        feed.send(ORDERS, value, sym.encode())
    return 3


def bench_positions(base: Settings, results: list, ticks: list) -> dict[str, Any]:
    run = Run(base, "positions")
    try:
        run.worker.start()
        run.feed.tick(bar("BTCUSDT", 0, "60000", "60000", "60000", "60000"))
        run.feed.flush()
        run.settle()

        def produce() -> int:
            for key, value in ticks[1:]:
                run.feed.raw(MARKET_TICKS, value, key)
            for key, value in results:
                run.feed.raw(EXECUTION_RESULTS, value, key)
            return len(ticks) - 1 + len(results)

        return run.timed(produce)
    finally:
        run.close()


def bench_execution(base: Settings, bars: int) -> dict[str, Any]:
    run = Run(base, "execution")
    rng = random.Random(11)
    try:
        run.worker.start()
        run.feed.decide(decision(DecisionKind.RELEASED, None, None, T0, 0))
        run.feed.flush()
        run.settle()
        plans: dict[str, dict[str, Any]] = {}
        grants: list[dict[str, Any]] = []
        for i in range(1, bars + 1):
            at = T0 + i * MINUTE - 1
            for j in range(2):  # symbols of their own: no grant is blocked
                sym = f"S{2 * i + j:04d}USDT"
                intent = f"x{i}{sym}"
                price = str(Decimal(100) + rng.randrange(100))
                plans[intent] = sized_plan(intent, sym, Side.LONG, "1.5", price, at)
                grants.append(decision(DecisionKind.GRANTED, intent, sym, at, 2 * i + j))

        def send_plans() -> int:
            for plan in plans.values():
                run.feed.plan(plan)
            return len(plans)

        def send_grants() -> int:
            for g in grants:
                run.feed.decide(g)
            return len(grants)

        # plans first: a grant that finds its plan places the entry at once (one arriving
        # minutes of event time after the newest decision would be a stale grant)
        planned = run.timed(send_plans)
        granted = run.timed(send_grants)
        placed = [o for o in read_all(run.settings, run.serde, ORDERS) if o["role"] == "ENTRY"]

        def fills() -> int:
            for o in placed:
                p = plans[o["intent_id"]]["entry_price"]
                for status, filled in (("NEW", "0"), ("FILLED", o["quantity"])):
                    run.feed.send(EXECUTION_RESULTS, _result(o, status, filled, p), b"k")
            return 2 * len(placed)

        filled = run.timed(fills)
        return {
            "plans": planned,
            "grants": granted,
            "fills": filled,
            "entries_placed": len(placed),
        }
    finally:
        run.close()


def _result(o: dict[str, Any], status: str, filled: str, price: str) -> dict[str, Any]:
    fill = status == "FILLED"
    return {
        "client_order_id": o["client_order_id"],
        "intent_id": o["intent_id"],
        "symbol": o["symbol"],
        "status": status,
        "filled_quantity": filled,
        "average_price": price if fill else None,
        "commission": "0",
        "commission_asset": "USDT",
        "realized_pnl": "0",
        "reason": None,
        "event_time": o["event_time"] + 1,
        "trade_id": f"t-{o['client_order_id']}" if fill else None,
        "last_filled_quantity": filled,
        "last_filled_price": price if fill else None,
        "order_side": o["side"],
        "order_type": o["order_type"],
        "reduce_only": False,
        "role": "ENTRY",
        "exit_reason": None,
        "trigger_price": None,
        "leverage": o["leverage"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=300, help="1-minute bars of 10 symbols")
    args = parser.parse_args()
    base = Settings()
    load_before = os.getloadavg()  # the machine is shared: say how busy it was
    venue, results, ticks = bench_paper_exchange(base, args.bars)
    print("paper_exchange", venue, flush=True)
    positions = bench_positions(base, results, ticks)
    print("positions", positions, flush=True)
    execution = bench_execution(base, args.bars)
    print("execution", execution, flush=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "venue",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": machine(
                    kafka_broker=KAFKA_BROKER,
                    load_average_1m=[round(load_before[0], 2), round(os.getloadavg()[0], 2)],
                ),
                "settings": {"bars": args.bars, "symbols": len(START), "commit_interval_s": 0.05},
                "note": "one worker per agent, a backlog produced at once; input records/s "
                "until the group committed every input's end (Faust startup excluded)",
                "paper_exchange": venue,
                "positions": positions,
                "execution": execution,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
