"""Issue 9, item 7: every exit goes through the same path and the trade record carries its
reason. Each reason the harvest and the exit guard can give is fired by its own core, then
carried, through the real codecs and cores, from the exit.intents record to execution's
reduce-only order (orders record), to the exchange's report (execution.results), to the
position (positions) and, when the exit closes it, to the closed trade (trades, trades.csv)
and the slot release of the opening intent. Exits ask for no slot on the way.

The one step not run here is the exchange adapter (paper exchange or Binance), whose
duty is to echo the order's exit_reason and role in its report (docs/execution.md,
"What the exchange side must provide").
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents.execution.codec import exit_intent_from_avro, order_to_avro, result_to_avro
from agents.execution.model import OrderRole, OrderStatus, PlaceOrder
from agents.exit_guard import core as guard
from agents.exit_guard.config import ExitGuardConfig
from agents.exits.codec import exit_intent_to_record
from agents.exits.model import Bar, ExitIntent, ExitReason, PositionView, Side
from agents.governor.model import DecisionKind, ReleaseReason, SlotRelease
from agents.harvest import core as harvest
from agents.harvest.config import HarvestConfig
from agents.positions.codec import position_to_avro, report_from_avro, trade_csv_row, trade_to_avro
from agents.positions.core import PositionsCore
from quantum.validation import validate
from tests.unit.execution_world import Harness, decision, only_order, plan, result

D = Decimal
T0 = 1_764_000_000_000
MIN = 60_000
SYM = "BTCUSDT"

# What the exit processors write; the other reasons are written by execution (rotation,
# fill rejected, excess fill), the exchange (liquidation) or reconciliation.
PROCESSOR_REASONS = {
    ExitReason.HARVEST,
    ExitReason.PARTIAL_STOP,
    ExitReason.STOP_LOSS,
    ExitReason.BREAK_EVEN,
    ExitReason.TRAILING_STOP,
    ExitReason.TAKE_PROFIT,
    ExitReason.PNL_PCT,
    ExitReason.LIQUIDATION_GUARD,
    ExitReason.TIME_STOP,
    ExitReason.HALT,
}


def _position(liq: str | None = None) -> PositionView:
    return PositionView(
        intent_id="i1",
        symbol=SYM,
        side=Side.LONG,
        entry_price=D(100),
        quantity=D("0.010"),
        stop_loss=D(98),  # R = 2
        opened_at_ms=T0,
        updated_at_ms=T0,
        leverage=10,  # margin 0.1
        liquidation_price=None if liq is None else D(liq),
        qty_step=D("0.001"),
    )


def _bar(k: int, o: str, h: str, low: str, c: str, atr: str | None = None) -> Bar:
    return Bar(
        SYM,
        T0 + k * MIN,
        T0 + (k + 1) * MIN - 1,
        D(o),
        D(h),
        D(low),
        D(c),
        None if atr is None else D(atr),
    )


def _harvest(cfg: HarvestConfig, *bars: Bar) -> list[ExitIntent]:
    st, _ = harvest.on_position(cfg, None, _position())
    assert st is not None
    out: list[ExitIntent] = []
    for b in bars:
        st, exits = harvest.on_bar(cfg, st, b)
        out += exits
    return out


def _guard(cfg: ExitGuardConfig, *bars: Bar, liq: str | None = None) -> list[ExitIntent]:
    st, _, _ = guard.on_position(cfg, None, _position(liq))
    assert st is not None
    out: list[ExitIntent] = []
    for b in bars:
        st, exits = guard.on_bar(cfg, st, b)
        out += exits
    return out


def fired() -> dict[ExitReason, ExitIntent]:
    """One exit of each reason, each fired by its processor's core."""
    h, g = HarvestConfig(), ExitGuardConfig()
    no_stop = ExitGuardConfig(stop_loss_enabled=False)
    trail = HarvestConfig(ladder="none", break_even_r=None, trail_start_r=D(0))
    exits = [
        *_harvest(h, _bar(0, "100", "101.2", "99.9", "101")),  # tp1 at +0.5R
        *_harvest(HarvestConfig(symmetric=True), _bar(0, "100", "100.1", "98.9", "99")),
        *_harvest(h, _bar(0, "100", "100", "97.5", "97.8")),  # the initial stop
        *_harvest(
            h, _bar(0, "100", "101.1", "99.9", "100.9"), _bar(1, "100.9", "101", "99.5", "99.6")
        ),
        *_harvest(
            trail,
            _bar(0, "100", "103", "99.9", "103", atr="0.5"),
            _bar(1, "103", "103", "101", "101.5", atr="0.5"),
        ),
        *_guard(g, _bar(0, "100", "102.6", "99.9", "102")),  # take-profit +2.5 %
        *_guard(g, _bar(0, "100", "100", "97.9", "98")),  # stop-loss
        *_guard(no_stop, _bar(0, "100", "100", "94.9", "95")),  # -50 % of the margin at 95
        *_guard(
            no_stop.model_copy(update={"margin_loss_pct": None}),
            _bar(0, "100", "100", "96.9", "97"),
            liq="96",
        ),
        *_guard(
            ExitGuardConfig(max_hold_ms=MIN),
            _bar(0, "100", "100.2", "99.8", "100"),
            _bar(1, "100", "100.2", "99.8", "100"),
        ),
    ]
    st, _, _ = guard.on_position(g, None, _position())
    assert st is not None
    exits += guard.on_halt(g, st, T0 + 5)[1]
    by_reason: dict[ExitReason, ExitIntent] = {}
    for x in exits:
        by_reason.setdefault(x.reason, x)
    return by_reason


def test_each_processor_reason_is_fired_by_its_core() -> None:
    exits = fired()
    assert set(exits) == PROCESSOR_REASONS
    steps = {r: x.exit_id.rpartition(":")[2] for r, x in exits.items()}
    assert steps[ExitReason.HARVEST] == "tp1" and steps[ExitReason.PARTIAL_STOP] == "sl1"
    assert steps[ExitReason.PNL_PCT] == "pnl" and steps[ExitReason.LIQUIDATION_GUARD] == "liq"
    assert steps[ExitReason.TIME_STOP] == "time" and steps[ExitReason.HALT] == "halt"


def _opened() -> tuple[Harness, PositionsCore, object]:
    """Execution with the position i1 open (0.010 at 100), and positions' book of it."""
    h = Harness()
    h.feed(plan("i1", SYM, t=T0))
    entry = only_order(h.feed(decision(DecisionKind.GRANTED, "i1", SYM, t=T0)))
    report = result(entry, OrderStatus.FILLED, "0.010", "100", t=T0 + 1, order_side=entry.side)
    h.feed(report)
    positions = PositionsCore()
    step = positions.on_report(report_from_avro(_via("execution.results.avsc", report)), None)
    return h, positions, step.book


def _via(schema: str, obj: object) -> dict:
    value = result_to_avro(obj) if schema == "execution.results.avsc" else obj
    validate(schema, value)  # type: ignore[arg-type]
    return value  # type: ignore[return-value]


def _fill(order: PlaceOrder, qty: Decimal, price: str, t: int) -> dict:
    """The exchange's report of the exit order: it echoes the order's role and reason."""
    report = result(
        order,
        OrderStatus.FILLED,
        str(qty),
        price,
        t=t,
        trade_id=f"t-{order.client_order_id}",
        last_filled_quantity=qty,
        last_filled_price=D(price),
        order_side=order.side,
        role=order.role,
        exit_reason=order.exit_reason,
    )
    return _via("execution.results.avsc", report)


def _exit_order(h: Harness, x: ExitIntent) -> PlaceOrder:
    record = exit_intent_to_record(x)
    validate("exit.intents.avsc", record)
    step = h.feed(exit_intent_from_avro(record))
    order = only_order(step)
    assert order.reduce_only and order.role == OrderRole.EXIT
    assert order.client_order_id.startswith("X")
    assert order.exit_reason == x.reason
    placed = order_to_avro(order)
    validate("orders.avsc", placed)
    assert placed["exit_reason"] == x.reason.value and placed["reduce_only"]
    assert not step.commands, "an exit asks the governor for nothing"
    return order


@pytest.mark.parametrize("reason", sorted(PROCESSOR_REASONS), ids=str)
def test_the_reason_travels_from_the_exit_intent_to_the_trade(reason: ExitReason) -> None:
    x = fired()[reason]
    h, positions, book = _opened()
    order = _exit_order(h, x)
    # the same exit intent again (a redelivery) places nothing: execution knows the exit id
    assert h.feed(exit_intent_from_avro(exit_intent_to_record(x))).orders == ()
    step = positions.on_report(report_from_avro(_fill(order, order.quantity, "99", T0 + 9)), book)
    position = position_to_avro(step.position)
    validate("positions.avsc", position)
    assert position["exit_reason"] == reason.value
    if order.quantity < D("0.010"):  # a partial exit: the rest leaves for another reason
        assert step.trade is None and position["status"] == "OPEN"
        closing = ExitIntent("i1:sl", SYM, "i1", D(1), ExitReason.STOP_LOSS, T0 + 20, D(98))
        rest = _exit_order(h, closing)
        assert rest.quantity == D("0.010") - order.quantity  # clamped to what is open
        step = positions.on_report(
            report_from_avro(_fill(rest, rest.quantity, "98", T0 + 21)), step.book
        )
        reason = ExitReason.STOP_LOSS
    assert step.trade is not None
    trade = trade_to_avro(step.trade)
    validate("trades.avsc", trade)
    assert trade["exit_reason"] == reason.value
    assert trade_csv_row(step.trade)["exit_reason"] == reason.value
    # the full close releases the slot of the opening intent
    assert step.commands == (
        SlotRelease(
            "i1:release:POSITION_CLOSED",
            SYM,
            "i1",
            ReleaseReason.POSITION_CLOSED,
            step.trade.exit_time_ms,
        ),
    )
