"""The paper exchange agent's core: exchange events as execution.results reports, the memory
of client order ids (a resend is answered, never placed twice), its bounds, and restore."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.execution.codec import result_from_avro
from agents.execution.model import OrderStatus
from agents.governor.model import Side
from agents.paper_exchange.codec import order_from_avro, order_to_avro, report_to_avro
from agents.paper_exchange.config import PaperVenueConfig
from agents.paper_exchange.core import VenueCore, known_from_json, known_to_json
from agents.paper_exchange.model import (
    DUPLICATE_CLIENT_ORDER_ID,
    KnownOrder,
    OrderAction,
    ReportStatus,
    VenueOrder,
    VenueReport,
)
from agents.positions.codec import report_from_avro
from agents.positions.liquidation import liquidation_from_rules
from agents.positions.model import Position, PositionStatus
from exchange.model import Kline, OrderSide, OrderType
from exchange.rules import ExchangeRules
from quantum.errors import InvalidRecord
from quantum.schemas import load_schema

D = Decimal
RULES = ExchangeRules.bundled()
MINUTE = 60_000
BUY, SELL = OrderSide.BUY, OrderSide.SELL
MARKET, STOP, TP = OrderType.MARKET, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET
RESULTS_SCHEMA = fastavro.parse_schema(load_schema("execution.results.avsc"))
ORDERS_SCHEMA = fastavro.parse_schema(load_schema("orders.avsc"))


def bar(i: int, o, h, l, c, symbol: str = "BTCUSDT") -> Kline:  # noqa: E741
    return Kline(symbol, "1m", i * MINUTE, i * MINUTE + MINUTE - 1, D(o), D(h), D(l), D(c), D(1))


def order(
    coid: str,
    side: OrderSide = BUY,
    type_: OrderType = MARKET,
    qty: str = "0.010",
    t: int = MINUTE - 1,
    *,
    intent: str = "i1",
    trigger: str | None = None,
    reduce: bool = False,
    role: str = "ENTRY",
    exit_reason: str | None = None,
    leverage: int | None = 10,
    symbol: str = "BTCUSDT",
    action: OrderAction = OrderAction.NEW,
) -> VenueOrder:
    return VenueOrder(
        client_order_id=coid,
        intent_id=intent,
        symbol=symbol,
        side=side,
        order_type=type_,
        quantity=D(qty),
        price=None,
        trigger_price=None if trigger is None else D(trigger),
        reduce_only=reduce,
        event_time_ms=t,
        action=action,
        role=role,
        exit_reason=exit_reason,
        leverage=leverage,
    )


def stop(coid: str = "S-i1", trigger: str = "59000", t: int = MINUTE) -> VenueOrder:
    return order(
        coid, SELL, STOP, t=t, trigger=trigger, reduce=True, role="STOP_LOSS",
        exit_reason="STOP_LOSS", leverage=None,
    )  # fmt: skip


def opened(config: PaperVenueConfig | None = None) -> VenueCore:
    """BTCUSDT long 0.010 filled at 60006.0 (open 60000 + 1 bp, to the tick)."""
    core = VenueCore(RULES, config)
    core.on_bar(bar(0, 60000, 60050, 59950, 60000))
    core.on_order(order("E-i1"))
    core.on_bar(bar(1, 60000, 60040, 59980, 60010))
    return core


def avro_ok(report: VenueReport) -> dict:
    """The report as an execution.results record, checked against the schema."""
    record = report_to_avro(report)
    assert fastavro.validate(record, RESULTS_SCHEMA, raise_errors=True)
    return record


# ---- events -> reports -----------------------------------------------------------------------


def test_accept_and_fill_are_reported_with_the_order_echoed() -> None:
    core = VenueCore(RULES)
    core.on_bar(bar(0, 60000, 60050, 59950, 60000))
    [ack] = core.on_order(order("E-i1")).reports
    assert (ack.status, ack.filled_quantity, ack.last_filled_quantity) == (
        ReportStatus.NEW, D(0), D(0),
    )  # fmt: skip
    assert (ack.intent_id, ack.role, ack.order_side, ack.order_type, ack.leverage) == (
        "i1", "ENTRY", BUY, MARKET, 10,
    )  # fmt: skip
    assert core.exchange.leverage("BTCUSDT") == 10  # the entry's leverage was set first
    [fill] = core.on_bar(bar(1, 60000, 60040, 59980, 60010)).reports
    assert fill.status == ReportStatus.FILLED and fill.trade_id == "1"
    assert fill.filled_quantity == fill.last_filled_quantity == D("0.010")
    assert fill.average_price == fill.last_filled_price == D("60006.0")
    assert fill.commission == D("60006.0") * D("0.010") * D("0.0005")
    assert fill.realized_pnl == 0 and fill.event_time_ms == MINUTE
    # both cores read it; the schema accepts it
    record = avro_ok(fill)
    assert result_from_avro(record).status == OrderStatus.FILLED
    assert report_from_avro(record).leverage == 10


def test_stop_fill_cancels_the_take_profit_and_reports_the_realized_pnl() -> None:
    core = opened()
    core.on_order(stop(trigger="59106.0"))
    core.on_order(
        order("T-i1", SELL, TP, t=MINUTE, trigger="61506.1", reduce=True, role="TAKE_PROFIT",
              exit_reason="TAKE_PROFIT", leverage=None)
    )  # fmt: skip
    reports = core.on_bar(bar(2, 60000, 60020, 59000, 59100)).reports
    assert [(r.client_order_id, r.status, r.reason) for r in reports] == [
        ("S-i1", ReportStatus.FILLED, None),
        ("T-i1", ReportStatus.CANCELED, "POSITION_CLOSED"),
    ]
    s = reports[0]
    assert s.realized_pnl == (D("59106.0") - D("60006.0")) * D("0.010")
    assert (s.exit_reason, s.trigger_price, s.reduce_only, s.leverage) == (
        "STOP_LOSS", D("59106.0"), True, 10,
    )  # fmt: skip
    for r in reports:
        avro_ok(r)


def test_rejections_expiries_and_cancels_carry_their_reasons() -> None:
    core = VenueCore(RULES)
    [rejected] = core.on_order(order("E-x", symbol="ETHUSDT", qty="0.100")).reports
    assert rejected.status == ReportStatus.REJECTED
    assert rejected.reason is not None and rejected.reason.startswith("NO_MARK_PRICE: ")
    core.on_bar(bar(0, 60000, 60050, 59950, 60000))
    [too_high] = core.on_order(order("E-y", intent="y", leverage=500)).reports
    assert too_high.reason is not None and too_high.reason.startswith("LEVERAGE_NOT_ALLOWED: ")
    core.on_order(order("E-z", intent="z"))
    [canceled] = core.on_order(order("E-z", intent="z", action=OrderAction.CANCEL)).reports
    assert (canceled.status, canceled.reason) == (ReportStatus.CANCELED, "CANCELED_BY_CLIENT")
    # a stop whose entry never filled is swept with it
    core.on_order(order("E-w", intent="w"))
    core.on_order(stop("S-w", "59000", MINUTE - 1))
    swept = core.on_order(order("E-w", intent="w", action=OrderAction.CANCEL)).reports
    assert [(r.client_order_id, r.reason) for r in swept] == [
        ("E-w", "CANCELED_BY_CLIENT"),
        ("S-w", "ENTRY_NOT_FILLED"),
    ]
    for r in (rejected, too_high, canceled, *swept):
        avro_ok(r)


def test_a_failed_cancel_is_not_a_report_about_the_order() -> None:
    core = opened()
    step = core.on_order(order("E-i1", action=OrderAction.CANCEL, t=2 * MINUTE))
    assert step.reports == () and "already FILLED" in step.notes[0]
    step = core.on_order(order("E-never", action=OrderAction.CANCEL))
    assert step.reports == () and "never received" in step.notes[0]


def test_liquidation_is_a_filled_report_of_its_own_naming_the_intent() -> None:
    core = VenueCore(RULES)
    core.on_bar(bar(0, 60000, 60050, 59950, 60000))
    core.on_order(order("E-i1", leverage=50))
    core.on_bar(bar(1, 60000, 60040, 59980, 60010))
    lp = core.exchange.position("BTCUSDT").liquidation_price
    assert lp is not None
    [liq] = core.on_bar(bar(2, 60000, 60020, 50000, 50100)).reports
    assert liq.client_order_id == "L-BTCUSDT-2" and liq.intent_id == "i1"
    assert (liq.status, liq.role, liq.exit_reason, liq.order_side) == (
        ReportStatus.FILLED, "LIQUIDATION", "LIQUIDATION", SELL,
    )  # fmt: skip
    assert liq.average_price == lp and liq.filled_quantity == D("0.010")
    # the trader loses exactly the isolated margin: price PnL plus the clearance fee
    margin = D("60006.0") * D("0.010") / 50
    assert -(liq.realized_pnl - liq.commission) == margin
    assert liq.leverage == 50
    avro_ok(liq)
    assert core.exchange.position("BTCUSDT") is None


# ---- the memory of client order ids ------------------------------------------------------------


def test_a_resent_order_is_answered_with_its_status_and_never_placed_again() -> None:
    core = VenueCore(RULES)
    core.on_bar(bar(0, 60000, 60050, 59950, 60000))
    core.on_order(order("E-i1"))
    [open_answer] = core.on_order(order("E-i1", t=MINUTE - 1)).reports
    assert open_answer.status == ReportStatus.NEW
    assert len(core.exchange.open_orders()) == 1
    core.on_bar(bar(1, 60000, 60040, 59980, 60010))
    step = core.on_order(order("E-i1", t=5 * MINUTE))  # a restart's resend, much later
    [answer] = step.reports
    assert (answer.status, answer.filled_quantity, answer.average_price) == (
        ReportStatus.FILLED, D("0.010"), D("60006.0"),
    )  # fmt: skip
    # no fill in the answer: positions must not count it twice
    assert (answer.last_filled_quantity, answer.trade_id, answer.commission) == (D(0), None, 0)
    assert answer.event_time_ms == 5 * MINUTE
    assert core.exchange.open_orders() == []
    assert core.exchange.position("BTCUSDT").quantity == D("0.010")
    assert "answered FILLED" in step.notes[0]


def test_another_order_under_a_known_id_is_refused_as_a_duplicate() -> None:
    core = opened()
    [refused] = core.on_order(order("E-i1", qty="0.020")).reports
    assert refused.status == ReportStatus.REJECTED
    assert refused.reason is not None and refused.reason.startswith(DUPLICATE_CLIENT_ORDER_ID)
    assert core.known("E-i1").status == ReportStatus.FILLED  # the original is untouched
    # the execution core ignores such a rejection (docs/execution.md rule 5)
    assert result_from_avro(avro_ok(refused)).reason.startswith(DUPLICATE_CLIENT_ORDER_ID)


def test_memory_is_bounded_by_count_oldest_first_and_open_orders_stay() -> None:
    core = VenueCore(RULES, PaperVenueConfig(order_memory_max=2))
    core.on_bar(bar(0, 60000, 60050, 59950, 60000))
    for n in range(4):  # four entries, each canceled: finished in this order
        core.on_order(order(f"E-{n}", intent=str(n)))
        core.on_order(order(f"E-{n}", intent=str(n), action=OrderAction.CANCEL))
    core.on_order(order("E-open", intent="open"))
    assert [k.order.client_order_id for k in core.finished_orders()] == ["E-2", "E-3"]
    assert [k.order.client_order_id for k in core.open_orders()] == ["E-open"]
    changes = core.take_changes()
    assert changes["E-0"] is None and changes["E-1"] is None
    assert changes["E-3"] is not None and core.take_changes() == {}
    # forgotten: a resend now is a new order (the documented limit of a bounded memory)
    [again] = core.on_order(order("E-0", intent="0")).reports
    assert again.status == ReportStatus.REJECTED and again.reason.startswith("POSITION_OPEN")


def test_memory_is_bounded_by_event_time() -> None:
    core = VenueCore(RULES, PaperVenueConfig(order_memory_ms=10 * MINUTE))
    core.on_bar(bar(0, 60000, 60050, 59950, 60000))
    core.on_order(order("E-old", intent="old"))
    core.on_order(order("E-old", intent="old", action=OrderAction.CANCEL))
    core.on_bar(bar(10, 60000, 60050, 59950, 60000))  # clock 11 min - 1 ms: within 10 min
    assert core.known("E-old") is not None
    core.on_bar(bar(11, 60000, 60050, 59950, 60000))
    assert core.known("E-old") is None
    assert core.take_changes()["E-old"] is None


def test_known_orders_round_trip_through_json() -> None:
    core = opened()
    core.on_order(stop())
    for known in (*core.open_orders(), *core.finished_orders()):
        blob = json.loads(json.dumps(known_to_json(known)))
        assert known_from_json(blob) == known


def test_bad_bars_are_invalid_records_and_change_nothing() -> None:
    core = opened()
    before = core.snapshot()
    with pytest.raises(InvalidRecord):
        core.on_bar(bar(0, 60000, 60050, 59950, 60000))  # older than the last
    with pytest.raises(InvalidRecord):
        core.on_bar(bar(5, 1, 1, 1, 1, symbol="NOPEUSDT"))  # no rules
    assert core.snapshot() == before


def test_orders_records_convert_both_ways() -> None:
    o = stop()
    record = order_to_avro(o)
    assert fastavro.validate(record, ORDERS_SCHEMA, raise_errors=True)
    assert order_from_avro(record) == o


# ---- properties ----------------------------------------------------------------------------------

SYMBOLS = ("BTCUSDT", "ETHUSDT")
BASE = {"BTCUSDT": D(60000), "ETHUSDT": D(3000)}
QTY = {"BTCUSDT": "0.010", "ETHUSDT": "0.100"}


@st.composite
def scripts(draw: st.DrawFn) -> list[tuple[str, object]]:
    """Bars on two symbols, with entries, stops, cancels and resends of earlier orders."""
    steps: list[tuple[str, object]] = []
    placed: list[VenueOrder] = []
    prices = dict(BASE)
    for i in range(draw(st.integers(3, 14))):
        for sym in SYMBOLS:
            move = D(draw(st.integers(-30, 30))) / 1000
            o = prices[sym]
            c = (o * (1 + move)).quantize(D("0.1"))
            hi = max(o, c) * D("1.004")
            lo = min(o, c) * D("0.996")
            prices[sym] = c
            steps.append(("bar", bar(i, o, hi.quantize(D("0.1")), lo.quantize(D("0.1")), c, sym)))
        for _ in range(draw(st.integers(0, 2))):
            kind = draw(st.sampled_from(["entry", "stop", "cancel", "resend"]))
            sym = draw(st.sampled_from(SYMBOLS))
            t = i * MINUTE + MINUTE - 1
            n = len(placed)
            if kind == "entry":
                side = draw(st.sampled_from([BUY, SELL]))
                new = order(f"E-{n}", side, qty=QTY[sym], t=t, intent=str(n), symbol=sym)
            elif kind == "stop":
                below = prices[sym] * D("0.99")
                new = replace(
                    stop(f"S-{n}", str(below.quantize(D("0.1"))), t),
                    symbol=sym,
                    quantity=D(QTY[sym]),
                )
            elif kind == "cancel" and placed:
                target = draw(st.sampled_from(placed))
                new = replace(target, action=OrderAction.CANCEL, event_time_ms=t)
            elif kind == "resend" and placed:
                new = replace(draw(st.sampled_from(placed)), event_time_ms=t)
            else:
                continue
            if kind in ("entry", "stop"):
                placed.append(new)
            steps.append(("order", new))
    return steps


def _run(core: VenueCore, steps: list[tuple[str, object]]) -> list[VenueReport]:
    out: list[VenueReport] = []
    for kind, item in steps:
        step = core.on_order(item) if kind == "order" else core.on_bar(item)  # type: ignore[arg-type]
        out.extend(step.reports)
    return out


@given(scripts())
def test_resends_never_reach_the_exchange(steps: list[tuple[str, object]]) -> None:
    """A resend is answered with one report that carries no fill and changes nothing:
    with every resend removed, the exchange ends the same and the other reports are the
    same, in the same order."""
    seen: set[str] = set()
    originals = []
    core = VenueCore(RULES)
    reports: list[VenueReport] = []
    for kind, item in steps:
        if kind == "bar":
            reports += core.on_bar(item).reports  # type: ignore[arg-type]
            originals.append((kind, item))
            continue
        o: VenueOrder = item  # type: ignore[assignment]
        step = core.on_order(o)
        if o.action == OrderAction.NEW and o.client_order_id in seen:
            [answer] = step.reports
            assert answer.last_filled_quantity == 0 and answer.trade_id is None
            assert answer.status == core.known(o.client_order_id).status
            continue
        if o.action == OrderAction.NEW:
            seen.add(o.client_order_id)
        reports += step.reports
        originals.append((kind, item))
    without = VenueCore(RULES)
    assert reports == _run(without, originals)
    assert core.exchange.snapshot() == without.exchange.snapshot()


@given(scripts(), st.data())
def test_a_restore_anywhere_continues_exactly(steps: list, data: st.DataObject) -> None:
    """Snapshot plus the finished-order items, taken after any step, restore a core that
    reports exactly what the uninterrupted one does."""
    cut = data.draw(st.integers(0, len(steps)))
    straight = VenueCore(RULES)
    expected = _run(straight, steps)
    first = VenueCore(RULES)
    got = _run(first, steps[:cut])
    items: dict[str, dict | None] = {}
    for coid, known in first.take_changes().items():
        items[coid] = None if known is None else json.loads(json.dumps(known_to_json(known)))
    snapshot = json.loads(json.dumps(first.snapshot()))
    finished = [known_from_json(v) for v in items.values() if v is not None]
    second = VenueCore.restore(RULES, None, snapshot, finished)
    got += _run(second, steps[cut:])
    assert got == expected
    assert second.snapshot() == straight.snapshot()
    assert [k.order.client_order_id for k in second.finished_orders()] == [
        k.order.client_order_id for k in straight.finished_orders()
    ]


@pytest.mark.parametrize("leverage", [5, 20, 50])
def test_positions_liquidation_price_is_the_exchanges(leverage: int) -> None:
    core = VenueCore(RULES)
    core.on_bar(bar(0, 60000, 60050, 59950, 60000))
    core.on_order(order("E-i1", leverage=leverage))
    core.on_bar(bar(1, 60000, 60040, 59980, 60010))
    view = core.exchange.position("BTCUSDT")
    pos = Position(
        symbol="BTCUSDT", intent_id="i1", side=Side.LONG, status=PositionStatus.OPEN,
        entry_quantity=view.quantity, entry_notional=view.quantity * view.entry_price,
        exit_quantity=D(0), exit_notional=D(0), fees=D(0), leverage=leverage,
        mark_price=view.mark_price, stop_loss=None, stop_order=None, take_profit=None,
        take_profit_order=None, liquidation_price=None, exit_reason=None, opened_at=MINUTE,
        updated_at=MINUTE, marked_at=MINUTE, closed_at=None,
    )  # fmt: skip
    assert liquidation_from_rules(RULES)(pos) == view.liquidation_price
    assert liquidation_from_rules(RULES)(replace(pos, symbol="NOPEUSDT")) is None


def test_known_order_seq_orders_the_restored_memory() -> None:
    core = opened()
    core.on_order(stop())
    core.on_order(order("S-i1", action=OrderAction.CANCEL, t=2 * MINUTE, role="STOP_LOSS"))
    finished = core.finished_orders()
    restored = VenueCore.restore(RULES, None, core.snapshot(), reversed(finished))
    assert restored.finished_orders() == finished
    assert all(isinstance(k, KnownOrder) for k in finished)
