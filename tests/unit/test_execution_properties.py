"""Property tests: duplicated, reordered and crash-interrupted inputs never place a second
order, and the ledger ends where an orderly run ends.

The world: a few intents, each with a fate (denied; entry rejected, expired, filled, or
partly filled then canceled; after the fill: nothing, stop-loss, take-profit, a rotation,
or a partial exit). A small exchange simulator answers every order it receives with the
reports its fate implies (reduce-only fills clamped to the position, like Binance), and
those reports join the pool of inputs. Hypothesis delivers the pool in any order, with
duplicates, and now and then crashes the agent after the ledger write but before the
orders and commands went out, then restarts it from the compacted ledger records and
runs the restart recovery (lookup by client id, resend only what the exchange lacks).

Inputs that a real system only produces after an earlier fact (a rotation or an exit of
a position, after the entry is done; a report, after its order) join the pool only then,
so every delivery order is one the real system can produce.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agents.execution.codec import ledger_record, ledger_update_from_record
from agents.execution.config import ExecutionConfig
from agents.execution.core import ExecutionCore
from agents.execution.ledger import Ledger
from agents.execution.model import (
    CancelOrder,
    EntryState,
    ExecutionResult,
    ExitReason,
    OrderRole,
    OrderSide,
    OrderStatus,
    PlaceOrder,
    Step,
)
from agents.governor.model import DecisionKind, SlotFilled, SlotRelease
from agents.positions.codec import report_from_avro
from agents.positions.core import PositionsCore
from agents.positions.model import PositionStatus, SymbolBook
from tests.unit.execution_world import T0, decision, exit_intent, plan

D = Decimal
QTY = D("0.010")
ENTRY_FATES = ("REJECTED", "EXPIRED", "FILLED", "FILLED", "PARTIAL")
AFTER_FATES = ("NOTHING", "STOP", "TAKE", "ROTATE", "EXIT")


@dataclass(frozen=True)
class Fate:
    denied: bool
    entry: str
    after: str


fates = st.builds(
    Fate,
    denied=st.booleans().map(lambda b: b and False) | st.just(True),
    entry=st.sampled_from(ENTRY_FATES),
    after=st.sampled_from(AFTER_FATES),
)


@dataclass
class Exchange:
    """Answers orders with the reports their fate implies; one-way positions per symbol."""

    fates: dict[str, Fate]
    orders: dict[str, PlaceOrder] = field(default_factory=dict)
    open_: set[str] = field(default_factory=set)  # client ids of orders still working
    position: dict[str, Decimal] = field(default_factory=lambda: defaultdict(D))
    duplicates: int = 0
    entries: Counter[str] = field(default_factory=Counter)
    pyramided: int = 0  # entries received while the symbol had a position
    trades: int = 0

    def receive(self, cmd: PlaceOrder | CancelOrder) -> list[ExecutionResult]:
        if isinstance(cmd, CancelOrder):
            coid = cmd.client_order_id
            if coid not in self.open_:
                return []
            self.open_.discard(coid)
            return [self._report(self.orders[coid], OrderStatus.CANCELED, D(0), None, 3)]
        o = cmd
        if o.client_order_id in self.orders:
            self.duplicates += 1
            return []
        self.orders[o.client_order_id] = o
        fate = self.fates[o.intent_id]
        new = self._report(o, OrderStatus.NEW, D(0), None, 1)
        if o.role == OrderRole.ENTRY:
            self.entries[o.intent_id] += 1
            if self.position[o.symbol] != 0:
                self.pyramided += 1
            if fate.entry == "REJECTED":
                return [self._report(o, OrderStatus.REJECTED, D(0), None, 1, reason="-2019")]
            if fate.entry == "EXPIRED":
                return [new, self._report(o, OrderStatus.EXPIRED, D(0), None, 2)]
            if fate.entry == "PARTIAL":
                half = o.quantity / 2
                return [
                    new,
                    self._fill(o, half, half, D("100"), OrderStatus.PARTIALLY_FILLED, 2),
                    self._report(o, OrderStatus.CANCELED, half, D("100"), 3),
                ]
            return [new, self._fill(o, o.quantity, o.quantity, D("100"), OrderStatus.FILLED, 2)]
        triggers = {
            OrderRole.STOP_LOSS: fate.after == "STOP",
            OrderRole.TAKE_PROFIT: fate.after == "TAKE",
            OrderRole.CLOSE: True,
            OrderRole.EXIT: True,
        }
        if not triggers[o.role]:
            self.open_.add(o.client_order_id)
            return [new]
        qty = min(o.quantity, abs(self.position[o.symbol]))  # reduce-only: never past flat
        if qty == 0:
            return [self._report(o, OrderStatus.EXPIRED, D(0), None, 2, reason="reduce-only")]
        price = o.trigger_price or D("101")
        return [new, self._fill(o, qty, qty, price, OrderStatus.FILLED, 2)]

    def _fill(
        self, o: PlaceOrder, last: Decimal, cum: Decimal, price: Decimal, st_: OrderStatus, dt: int
    ) -> ExecutionResult:
        sign = 1 if o.side == OrderSide.BUY else -1
        self.position[o.symbol] += sign * last
        self.trades += 1
        return self._report(
            o, st_, cum, price, dt, last=last, trade_id=f"{o.client_order_id}#{self.trades}"
        )

    def _report(
        self,
        o: PlaceOrder,
        status: OrderStatus,
        cum: Decimal,
        avg: Decimal | None,
        dt: int,
        *,
        reason: str | None = None,
        last: Decimal | None = None,
        trade_id: str | None = None,
    ) -> ExecutionResult:
        return ExecutionResult(
            client_order_id=o.client_order_id,
            intent_id=o.intent_id,
            symbol=o.symbol,
            status=status,
            filled_quantity=cum,
            average_price=avg,
            commission=D("0.01") if last else D(0),
            commission_asset="USDT",
            realized_pnl=D(0),
            reason=reason,
            event_time_ms=o.event_time_ms + dt,
            trade_id=trade_id,
            last_filled_quantity=last if last is not None else D(0),
            last_filled_price=avg if last else None,
            order_side=o.side,
            order_type=o.order_type,
            reduce_only=o.reduce_only,
            role=o.role,
            exit_reason=o.exit_reason,
            trigger_price=o.trigger_price,
            leverage=o.leverage,
        )

    def knows(self, coid: str) -> bool:
        return coid in self.orders


@dataclass
class Run:
    """One execution agent over the pool; `records` is what its ledger topic holds."""

    core: ExecutionCore
    fates: dict[str, Fate]
    symbols: dict[str, str]
    exchange: Exchange = field(init=False)
    ledger: Ledger = field(default_factory=Ledger)
    pool: list[Any] = field(default_factory=list)
    delivered: list[bool] = field(default_factory=list)
    records: list[tuple[bytes, dict[str, Any] | None]] = field(default_factory=list)
    commands: list[SlotFilled | SlotRelease] = field(default_factory=list)
    reports: list[ExecutionResult] = field(default_factory=list)  # in delivery order
    followups: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.exchange = Exchange(self.fates)
        for k, (intent, fate) in enumerate(self.fates.items()):
            t = T0 + k * 1000
            sym = self.symbols[intent]
            self._add(plan(intent, sym, t=t))
            kind = DecisionKind.DENIED if fate.denied else DecisionKind.GRANTED
            self._add(decision(kind, intent, sym, t=t + 1))

    def _add(self, x: Any) -> None:
        self.pool.append(x)
        self.delivered.append(False)

    def feed(self, i: int, *, crash: bool = False) -> None:
        x = self.pool[i]
        step = self._step(x)
        for u in step.ledger_updates:  # written and awaited first
            self.records.append(ledger_record(u))
        self.ledger.apply(step.ledger_updates)
        if crash:  # died before the orders and commands went out; the input comes again
            self.restart()
            return
        self.delivered[i] = True
        if isinstance(x, ExecutionResult):
            self.reports.append(x)
        self._send(step)

    def _step(self, x: Any) -> Step:
        c, led = self.core, self.ledger
        if isinstance(x, ExecutionResult):
            return c.on_execution_result(x, led)
        if hasattr(x, "position_intent_id"):
            return c.on_exit_intent(x, led)
        if hasattr(x, "decision_id"):
            return c.on_decision(x, led)
        return c.on_intent(x, led)

    def _send(self, step: Step) -> None:
        for o in step.orders:
            for r in self.exchange.receive(o):
                self._add(r)
        self.commands.extend(step.commands)
        self._follow_up()

    def _follow_up(self) -> None:
        """Rotations and exits, once the entry is done (the governor / exit processors
        act on a position they know)."""
        for intent, fate in self.fates.items():
            e = self.ledger.get(intent)
            if e is None or intent in self.followups or e.entry_order is None:
                continue
            if e.entry_order.status not in (
                OrderStatus.FILLED,
                OrderStatus.CANCELED,
                OrderStatus.EXPIRED,
            ):
                continue
            if e.entry_filled == 0:
                continue
            self.followups.add(intent)
            t = e.entry_order.updated_at + 100
            if fate.after == "ROTATE":
                self._add(decision(DecisionKind.ROTATE_OUT, intent, e.symbol, t=t))
            elif fate.after == "EXIT":
                self._add(exit_intent(f"x-{intent}", intent, "0.004", symbol=e.symbol, t=t))

    def restart(self) -> None:
        """A new agent: the ledger from the compacted topic, then recovery of SENT orders."""
        self.ledger = Ledger.restore(ledger_update_from_record(k, v) for k, v in self.records)
        now = self.ledger.decision_clock
        for order in self.core.pending_orders(self.ledger):
            if self.exchange.knows(order.client_order_id):
                continue  # its reports are in the pool already
            step = self.core.on_order_missing(order.client_order_id, self.ledger, now)
            for u in step.ledger_updates:
                self.records.append(ledger_record(u))
            self.ledger.apply(step.ledger_updates)
            self._send(step)
        self._send(Step(orders=tuple(self.core.pending_cancels(self.ledger))))

    def done(self) -> bool:
        return all(self.delivered)


def orderly(core: ExecutionCore, fates: dict[str, Fate], symbols: dict[str, str]) -> Run:
    run = Run(core, fates, symbols)
    i = 0
    while i < len(run.pool):
        run.feed(i)
        i += 1
    return run


def shuffled(
    data: st.DataObject, core: ExecutionCore, fates: dict[str, Fate], symbols: dict[str, str]
) -> Run:
    run = Run(core, fates, symbols)
    crashes = 0
    while not run.done():
        pending = [i for i, d in enumerate(run.delivered) if not d]
        dup = data.draw(st.integers(0, 9)) == 9  # shrinks toward no duplicates
        choices = range(len(run.pool)) if dup else pending
        i = data.draw(st.sampled_from(list(choices)))
        crash = crashes < 5 and data.draw(st.integers(0, 14)) == 14  # and no crashes
        crashes += crash
        run.feed(i, crash=crash)
        assert len(run.pool) < 400, "the pool keeps growing"
    return run


def world(draw: st.DrawFn, shared_symbols: bool) -> tuple[dict[str, Fate], dict[str, str]]:
    n = draw(st.integers(1, 5))
    fs = {f"i{k}": draw(fates) for k in range(n)}
    if shared_symbols:
        syms = {i: draw(st.sampled_from(["AAAUSDT", "BBBUSDT"])) for i in fs}
    else:
        syms = {i: f"S{k}USDT" for k, i in enumerate(fs)}
    return fs, syms


@st.composite
def worlds(draw: st.DrawFn, shared_symbols: bool = False) -> Any:
    return world(draw, shared_symbols)


def check_no_second_order(run: Run) -> None:
    ex = run.exchange
    assert ex.duplicates == 0, "the exchange saw a client order id twice"
    assert all(n <= 1 for n in ex.entries.values()), ex.entries
    assert ex.pyramided == 0, "an entry reached the exchange while the symbol had a position"
    for c in run.commands:
        assert c.intent_id is not None and c.command_id.startswith(f"{c.intent_id}:")


@given(worlds(), st.data())
def test_any_delivery_order_converges_to_the_orderly_ledger(w: Any, data: st.DataObject) -> None:
    fs, syms = w
    core = ExecutionCore(ExecutionConfig())
    calm = orderly(core, fs, syms)
    wild = shuffled(data, core, fs, syms)
    check_no_second_order(calm)
    check_no_second_order(wild)
    assert wild.ledger.snapshot() == calm.ledger.snapshot()
    assert {c.command_id for c in wild.commands} == {c.command_id for c in calm.commands}
    # a restart from the records reproduces the ledger, and it sends nothing new
    again = Ledger.restore(ledger_update_from_record(k, v) for k, v in wild.records)
    assert again.snapshot() == wild.ledger.snapshot()
    for i, fate in fs.items():
        e = wild.ledger.get(i)
        assert e is not None
        filled = {c.intent_id for c in wild.commands if isinstance(c, SlotFilled)}
        assert (i in filled) == (e.entry_filled > 0)
        if fate.denied:
            assert e.state == EntryState.DENIED and not e.orders
        elif fate.entry in ("REJECTED", "EXPIRED"):
            assert e.state.value == fate.entry and e.release is not None
        elif fate.after in ("STOP", "TAKE", "ROTATE"):
            assert e.state == EntryState.CLOSED
            assert not [r for r in e.orders if r.is_open], "an order outlived its position"
        else:
            assert e.state == EntryState.FILLED and e.open_quantity > 0
        if e.state in (EntryState.SENT, EntryState.ACKED):
            raise AssertionError(f"{i} stuck in {e.state}")
    # nothing is left to recover after the pool drained
    assert wild.core.pending_orders(wild.ledger) == []


@given(worlds(shared_symbols=True), st.sampled_from([0, 500, 180_000]), st.data())
def test_shared_symbols_never_pyramid_and_never_resend(
    w: Any, cooldown: int, data: st.DataObject
) -> None:
    fs, syms = w
    core = ExecutionCore(ExecutionConfig(symbol_cooldown_ms=cooldown))
    run = shuffled(data, core, fs, syms)
    check_no_second_order(run)
    live: dict[str, list[str]] = defaultdict(list)
    for e in run.ledger:
        if e.state in (EntryState.SENT, EntryState.ACKED, EntryState.FILLED):
            live[e.symbol].append(e.intent_id)
    assert all(len(v) <= 1 for v in live.values()), live
    blocked = [e for e in run.ledger if e.state == EntryState.BLOCKED]
    for e in blocked:  # every refused grant gave its slot back
        assert any(isinstance(c, SlotRelease) and c.intent_id == e.intent_id for c in run.commands)


def partition_reads(data: st.DataObject, reports: list[ExecutionResult]) -> list[ExecutionResult]:
    """What positions reads of execution.results: keyed by symbol, so each symbol's reports
    come in the venue's order (the pool holds them as the exchange made them); a restart
    reads again from an earlier committed offset, so runs of reports come twice.

    Not the order execution consumed them in (`Run.reports`): that one mixes the inputs of
    several topics and may see one symbol's later report first, which no single partition
    does. Fed that way, an entry fill of a second intent could land before the first
    intent's exit fill and the flat moment between them, with its release, would be lost
    (hypothesis found it): the positions core relies on the partition's order."""
    out: list[ExecutionResult] = []
    i = rewinds = 0
    while i < len(reports):
        out.append(reports[i])
        if rewinds < 5 and data.draw(st.integers(0, 9)) == 9:  # shrinks toward no rereads
            i = data.draw(st.integers(max(0, i - 3), i))  # reads [i..] again
            rewinds += 1
        else:
            i += 1
    return out


@given(worlds(shared_symbols=True), st.data())
def test_positions_quantity_is_the_sum_of_fills_whatever_the_redeliveries(
    w: Any, data: st.DataObject
) -> None:
    """The reports of a shuffled run, read as positions reads them, into the positions core:
    each symbol's position is the signed sum of the distinct fills, and every position
    execution saw close was closed there with a release for its intent."""
    fs, syms = w
    run = shuffled(data, ExecutionCore(ExecutionConfig(symbol_cooldown_ms=0)), fs, syms)
    core = PositionsCore()
    books: dict[str, SymbolBook] = {}
    releases: set[str] = set()
    from agents.execution.codec import result_to_avro

    for r in partition_reads(data, [x for x in run.pool if isinstance(x, ExecutionResult)]):
        step = core.on_report(report_from_avro(result_to_avro(r)), books.get(r.symbol))
        books[r.symbol] = step.book
        releases |= {c.intent_id for c in step.commands if c.intent_id}
    fills: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for r in run.reports:
        if r.last_filled_quantity:
            sign = 1 if r.order_side == OrderSide.BUY else -1
            fills[r.symbol][r.trade_id or ""] = sign * r.last_filled_quantity
    for sym, book in books.items():
        pos = book.position
        net = sum(fills[sym].values(), D(0))
        held = D(0) if pos is None or pos.status == PositionStatus.CLOSED else pos.quantity
        signed = held if pos is None or pos.side.value == "LONG" else -held
        assert signed == net == run.exchange.position[sym]
    for e in run.ledger:
        if e.state == EntryState.CLOSED:
            assert e.intent_id in releases
        if e.close_reason == ExitReason.ROTATE_OUT:
            assert e.state == EntryState.CLOSED
