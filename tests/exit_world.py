"""A small world for the exit processors' tests: record builders, a ladder-walking scenario
generated together with its expected exits, and (for broker tests) a lock-step feeder.

The scenario is produced by running the pure processors (the same classes the Faust shells
run) over the records as they are generated; a tiny venue turns the exits they fire into
the next positions records (a reduce-only fill takes at most what is still open, as
execution and the exchange do). So the expected exits are those of an uninterrupted run,
and a test on the broker compares what the worker wrote with them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from confluent_kafka import KafkaException

from agents.exit_guard.agent import GuardProcessor
from agents.exit_guard.config import BreakerConfig, ExitGuardConfig
from agents.harvest.agent import HarvestProcessor
from agents.harvest.config import HarvestConfig
from agents.stateful import Out, Record
from exchange.rules import ExchangeRules
from quantum.polling import wait_until
from topologies.declaration import EXIT_INTENTS, MARKET_TICKS, POSITIONS, RISK_WARNINGS

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z, a minute boundary
MIN = 60_000
D = Decimal

Item = tuple[str, dict[str, Any]]  # (logical topic, Avro value)


def position_record(
    pid: str,
    symbol: str,
    *,
    qty: str,
    entry: str,
    stop: str | None,
    opened: int,
    updated: int,
    mark: str,
    status: str = "OPEN",
    leverage: int = 10,
) -> dict[str, Any]:
    margin = D(entry) * D(qty) / leverage
    unrealized = (D(mark) - D(entry)) * D(qty) if status == "OPEN" else D(0)
    return {
        "symbol": symbol,
        "intent_id": pid,
        "side": "LONG",
        "quantity": qty,
        "entry_price": entry,
        "mark_price": mark,
        "leverage": leverage,
        "isolated_margin": format(margin, "f"),
        "liquidation_price": None,
        "stop_loss": stop,
        "status": status,
        "realized_pnl": "0",
        "opened_at": opened,
        "updated_at": updated,
        "take_profit": None,
        "unrealized_pnl": format(unrealized, "f"),
        "fees": "0",
        "entry_quantity": qty,
        "closed_at": None if status == "OPEN" else updated,
        "exit_reason": None,
    }


def kline_record(symbol: str, k: int, o: Decimal, h: Decimal, low: Decimal, c: Decimal) -> dict:
    return {
        "event_id": f"{symbol}:1m:{T0 + k * MIN}",
        "symbol": symbol,
        "interval": "1m",
        "open_time": T0 + k * MIN,
        "close_time": T0 + (k + 1) * MIN - 1,
        "open": format(o, "f"),
        "high": format(h, "f"),
        "low": format(low, "f"),
        "close": format(c, "f"),
        "volume": "1",
        "trades": 1,
        "source": "REPLAY",
        "end_of_stream": None,
    }


# Price walks in R after entry (R = 2 % of entry): up the ladder (+0.5R, +1R, +1.5R),
# the break-even move, the trailing stop on the way down; or straight to the stop.
WALK_UP = [0.3, 0.6, 0.9, 1.2, 1.6, 2.0, 2.4, 2.7, 2.5, 2.1, 1.7, 1.3, 0.9, 0.5, 0.1]
WALK_DOWN = [-0.3, -0.6, -0.9, -1.2, -1.4]
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "LTCUSDT")
LOT = {"BTCUSDT": "0.008", "ETHUSDT": "0.008", "BNBUSDT": "0.08", "SOLUSDT": "8"}
LOT |= {"XRPUSDT": "80", "LTCUSDT": "0.008"}

# The worker's configuration in the broker tests, as env and as the processors' config:
# a take-profit far away, so the ladder and the trailing stop run their course.
WORKER_ENV = {"QT_EXIT_GUARD__TAKE_PROFIT_PCT": "0.2"}
GUARD_CONFIG = ExitGuardConfig(take_profit_pct=D("0.2"))
HARVEST_CONFIG = HarvestConfig()
BREAKER_CONFIG = BreakerConfig()


# Faust's consumer session: short, so that a restarted worker gets its partitions soon
# after a SIGKILL (the broker's minimum is 6 s); Faust reads these from the environment.
FAST_GROUP_ENV = {
    "QT_KAFKA__COMMIT_INTERVAL_S": "0.01",
    "BROKER_SESSION_TIMEOUT": "6",
    "BROKER_HEARTBEAT_INTERVAL": "1",
}

# `quantum worker --supervise` in chaos tests: quick restarts, and a stall (Faust lost a
# record while a restarted worker was starting: docs/exits.md, "Restart") noticed in 60 s
# (a restart under load takes 20 s and more before its first commit: shorter, and a
# slow start looks like a stall).
SUPERVISOR_ENV = {
    "QT_SUPERVISOR__STALL_TIMEOUT_S": "60",
    "QT_SUPERVISOR__CHECK_EVERY_S": "1",
    "QT_SUPERVISOR__BACKOFF_S": "0.2",
    "QT_SUPERVISOR__BACKOFF_MAX_S": "2",
    "QT_SUPERVISOR__HEALTHY_AFTER_S": "5",
}


# How each run under a supervisor ended, as quantum/app/supervisor.py logs it.
SUPERVISOR_VERDICT = re.compile(
    r"supervisor: supervisor: (?:not restarting: )?(.+?)(?:; restart \d+ in|; \d+ restarts?)"
)
REFUSED_A_HOLE = "the worker exited with status 71"
STALLED = "the worker stopped committing while it had lag"


def supervisor_verdicts(log: str) -> list[str]:
    """Why each run under the supervisor ended, in order, from the supervisor's log."""
    return SUPERVISOR_VERDICT.findall(log)


def supervisor_restarts(log: str) -> int:
    """Restarts a supervisor made for another cause than a kill: a hole or a stall."""
    return sum(v in (REFUSED_A_HOLE, STALLED) for v in supervisor_verdicts(log))


def processors() -> list[Any]:
    return [
        HarvestProcessor(HARVEST_CONFIG, {}, ExchangeRules.bundled()),
        GuardProcessor(GUARD_CONFIG, BREAKER_CONFIG, {}),
    ]


@dataclass
class _Trade:
    pid: str
    symbol: str
    entry: Decimal
    qty: Decimal
    walk: list[float]
    opened_round: int
    send_stop: bool
    open_qty: Decimal = Decimal(0)
    closed: bool = False


@dataclass
class Scenario:
    """Phases of records (each phase is fed, then the feeder waits until it is consumed) and
    the outputs an uninterrupted run gives."""

    phases: list[list[Item]] = field(default_factory=list)
    phase_exits: list[int] = field(default_factory=list)  # exits each phase fires
    exits: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(len(p) for p in self.phases)

    def exit_ids(self) -> set[str]:
        return {x["exit_id"] for x in self.exits}


def ladder_scenario(symbols: Iterable[str] = SYMBOLS, *, second_round: bool = True) -> Scenario:
    """Every symbol opens a long, staggered by two bars; the last one walks down to its stop,
    the others up the ladder and back through the trailing stop; one position never gets
    its stop-loss (the default and a warning). With `second_round`, each symbol opens a
    second position after the first closed."""
    symbols = list(symbols)
    procs = processors()
    sc = Scenario()
    trades: list[_Trade] = []
    for j, sym in enumerate(symbols):
        walk = WALK_DOWN if j == len(symbols) - 1 else WALK_UP
        entry = D(100 * (j + 1))
        trades.append(_Trade(f"{sym}-1", sym, entry, D(LOT[sym]), walk, 1 + 2 * j, j != 1))
        if second_round:
            trades.append(_Trade(f"{sym}-2", sym, entry, D(LOT[sym]), WALK_UP[:9], 22 + j, True))
    last_close = {sym: D(100 * (j + 1)) for j, sym in enumerate(symbols)}
    rounds = max(t.opened_round + len(t.walk) for t in trades) + 2
    updates: list[Item] = []
    for r in range(rounds):
        positions: list[Item] = list(updates)
        updates = []
        active: dict[str, _Trade] = {}
        for t in trades:
            if t.opened_round == r:
                if any(u.symbol == t.symbol and not u.closed and u.open_qty for u in trades):
                    raise AssertionError(f"{t.pid} opens while {t.symbol} holds a position")
                t.entry = last_close[t.symbol]  # filled at the open of this round's bar
                t.open_qty = t.qty
                first = position_record(
                    t.pid,
                    t.symbol,
                    qty=str(t.qty),
                    entry=str(t.entry),
                    stop=None,
                    opened=T0 + r * MIN,
                    updated=T0 + r * MIN,
                    mark=str(t.entry),
                )
                positions.append((POSITIONS, first))
                if t.send_stop:  # the protective stop, acknowledged a moment later
                    stop = str(t.entry * D("0.98"))
                    positions.append(
                        (
                            POSITIONS,
                            {**first, "stop_loss": stop, "updated_at": first["updated_at"] + 1},
                        )
                    )
            if t.opened_round <= r < t.opened_round + len(t.walk) and not t.closed:
                active[t.symbol] = t
        bars: list[Item] = []
        for sym in symbols:
            t = active.get(sym)
            prev = last_close[sym]
            if t is None:
                close = prev
            else:
                close = t.entry * (1 + D(str(t.walk[r - t.opened_round])) * D("0.02"))
            wiggle = prev * D("0.002")
            bars.append(
                (
                    MARKET_TICKS,
                    kline_record(
                        sym, r, prev, max(prev, close) + wiggle, min(prev, close) - wiggle, close
                    ),
                )
            )
            last_close[sym] = close
        for phase in (positions, bars):
            if not phase:
                continue
            sc.phases.append(phase)
            outs = [o for item in phase for p in procs for o in p.on_record(_record(item))]
            _collect(sc, outs)
            for o in outs:
                if o.topic != EXIT_INTENTS:
                    continue
                t = next(t for t in trades if t.pid == o.value["position_intent_id"])
                t.open_qty -= min(D(o.value["quantity"]), t.open_qty)
        for t in trades:  # the venue reports what the exits left open
            if t.open_qty != t.qty and not t.closed and t.opened_round <= r:
                closed = t.open_qty == 0
                t.closed = closed
                rec = position_record(
                    t.pid,
                    t.symbol,
                    qty=str(t.open_qty),
                    entry=str(t.entry),
                    stop=None if not t.send_stop else str(t.entry * D("0.98")),
                    opened=T0 + t.opened_round * MIN,
                    updated=T0 + (r + 1) * MIN - 1,
                    mark=str(last_close[t.symbol]),
                    status="CLOSED" if closed else "OPEN",
                )
                updates.append((POSITIONS, rec))
                t.qty = t.open_qty
    if updates:
        sc.phases.append(updates)
        _collect(sc, [o for item in updates for p in procs for o in p.on_record(_record(item))])
    return sc


_offset = [0]


def _record(item: Item) -> Record:
    _offset[0] += 1
    return Record(item[0], 0, _offset[0], None, item[1], None)


def _collect(sc: Scenario, outs: list[Out]) -> None:
    sc.phase_exits.append(sum(1 for o in outs if o.topic == EXIT_INTENTS))
    sc.exits += [o.value for o in outs if o.topic == EXIT_INTENTS]
    sc.warnings += [o.value for o in outs if o.topic == RISK_WARNINGS]


# ---- on the broker ----------------------------------------------------------------------


class Feeder:
    """Produces one phase, then waits (on committed offsets, never a sleep) until the worker
    consumed it, so the worker sees the records in the scenario's order.

    check: called while waiting; raises to stop the wait (a worker that died, say)."""

    def __init__(
        self,
        settings: Any,
        quiescence: Any,
        *,
        timeout_s: float = 180.0,
        check: Callable[[], None] | None = None,
    ) -> None:
        from confluent_kafka import Producer

        from quantum.serde import AvroSerde

        self.settings = settings
        self.quiescence = quiescence
        self.timeout_s = timeout_s
        self.check = check
        self.serde = AvroSerde.from_settings(settings)
        self.producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "acks": "all"})

    def send(self, logical: str, value: dict[str, Any] | bytes, key: bytes) -> None:
        from topologies.declaration import TOPOLOGY

        topic = self.settings.topic(logical)
        if not isinstance(value, bytes):
            schema = TOPOLOGY.topic(logical).schema or ""
            value = self.serde.encode(topic, value, schema_file=schema)
        self.producer.produce(topic, key=key, value=value)

    def phase(self, items: Iterable[Item]) -> None:
        for logical, value in items:
            self.send(logical, value, value["symbol"].encode())
        self.settle()

    def settle(self) -> None:
        """Every record sent so far is delivered and consumed (its offset committed)."""
        if self.producer.flush(30) != 0:
            raise RuntimeError("records not delivered within 30 s")

        def settled() -> bool:
            if self.check is not None:
                self.check()
            return self.quiescence.settled_yet()

        wait_until(settled, self.timeout_s, "the worker to consume the phase", poll_s=0.005)


def worker_readers(settings: Any, group: str) -> Any:
    """The quiescence of a worker running harvest and exit_guard under Faust app id `group`."""

    from agents.registry import REGISTRY
    from quantum.app.supervisor import readers_of
    from quantum.quiescence import Quiescence

    specs = REGISTRY.select("harvest,exit_guard")
    readers, transactional = readers_of(settings, specs, group)
    quiescence = Quiescence(settings.kafka.bootstrap, readers, transactional=transactional)

    def answers() -> bool:  # just after the topics were created, a leader may be missing
        try:
            quiescence.ends()
            return True
        except KafkaException:
            return False

    wait_until(answers, 60, "the new topics' partition leaders", poll_s=0.05)
    return quiescence
