"""The positions core, one example per rule, and its properties (docs/execution.md)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from io import BytesIO
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.execution import model as execution_model
from agents.governor.model import ReleaseReason, Side, SlotRelease
from agents.positions import model as positions_model
from agents.positions.codec import (
    TRADES_CSV_COLUMNS,
    book_from_json,
    book_to_json,
    position_to_avro,
    report_from_avro,
    trade_csv_row,
    trade_from_avro,
    trade_to_avro,
)
from agents.positions.config import PositionsConfig
from agents.positions.core import PositionsCore
from agents.positions.model import (
    ExecutionReport,
    ExitReason,
    OrderRole,
    OrderSide,
    PositionStatus,
    PositionStep,
    ReportStatus,
    SymbolBook,
)
from quantum.errors import InvalidRecord
from quantum.schemas import load_schema, parse_runtime, runtime_schema
from quantum.validation import validate

D = Decimal
T0 = 1_764_000_000_000
SYM = "BTCUSDT"


def fill(
    coid: str,
    side: OrderSide,
    qty: str,
    price: str,
    t: int = T0,
    *,
    cum: str | None = None,
    trade: str | None = None,
    role: OrderRole = OrderRole.ENTRY,
    intent: str = "i1",
    fee: str = "0.01",
    reason: ExitReason | None = None,
    leverage: int | None = 5,
    status: ReportStatus = ReportStatus.FILLED,
) -> ExecutionReport:
    return ExecutionReport(
        client_order_id=coid,
        intent_id=intent,
        symbol=SYM,
        status=status,
        filled_quantity=D(cum or qty),
        average_price=D(price),
        commission=D(fee),
        event_time_ms=t,
        trade_id=trade or f"{coid}/{cum or qty}",
        last_filled_quantity=D(qty),
        last_filled_price=D(price),
        order_side=side,
        role=role,
        exit_reason=reason,
        leverage=leverage,
    )


class Book:
    def __init__(self, core: PositionsCore | None = None) -> None:
        self.core = core or PositionsCore()
        self.book: SymbolBook | None = None

    def feed(self, r: ExecutionReport) -> PositionStep:
        step = self.core.on_report(r, self.book)
        self.book = step.book
        return step

    def mark(self, price: str, t: int) -> PositionStep:
        step = self.core.on_mark(SYM, D(price), t, self.book)
        self.book = step.book
        return step


BUY, SELL = OrderSide.BUY, OrderSide.SELL


def test_an_entry_fill_opens_the_position() -> None:
    b = Book()
    step = b.feed(fill("E-i1", BUY, "0.010", "100"))
    p = step.position
    assert p is not None and p.status == PositionStatus.OPEN
    assert (p.side, p.quantity, p.entry_price, p.leverage) == (Side.LONG, D("0.010"), 100, 5)
    assert p.isolated_margin == D("0.2") and p.fees == D("0.01") and p.mark_price == 100
    assert step.trade is None and step.commands == ()


def test_partial_entry_fills_average_their_prices() -> None:
    b = Book()
    b.feed(fill("E-i1", BUY, "0.004", "100", cum="0.004", status=ReportStatus.PARTIALLY_FILLED))
    p = b.feed(fill("E-i1", BUY, "0.006", "101", T0 + 1, cum="0.010")).position
    assert p is not None and p.quantity == D("0.010") and p.entry_price == D("100.6")
    assert p.fees == D("0.02")


def test_a_redelivered_fill_changes_nothing() -> None:
    b = Book()
    first = b.feed(fill("E-i1", BUY, "0.010", "100"))
    again = b.feed(fill("E-i1", BUY, "0.010", "100"))
    assert again.book == first.book and again.position == first.position
    assert again.trade is None and again.commands == ()


def _as_old_record(value: dict[str, Any]) -> dict[str, Any]:
    """`value` written with execution.results as it was before the fill fields, read now."""
    new = load_schema("execution.results.avsc")
    fields = [f for f in new["fields"] if f["name"] in value]
    old = parse_runtime(dict(new, fields=fields))
    return _read_as(_write(old, value), old, runtime_schema("execution.results.avsc"))


def test_reports_without_last_fill_fields_use_cumulative_deltas() -> None:
    old = {
        "client_order_id": "E-i1",
        "intent_id": "i1",
        "symbol": SYM,
        "status": "PARTIALLY_FILLED",
        "filled_quantity": "0.004",
        "average_price": "100",
        "commission": "0",
        "commission_asset": "USDT",
        "realized_pnl": "0",
        "reason": None,
        "event_time": T0,
    }
    first = dict(_as_old_record(old), order_side="BUY")  # side: from the ledger, say
    assert first["last_filled_quantity"] is None and first["trade_id"] is None
    b = Book()
    b.feed(report_from_avro(first))
    done = dict(first, status="FILLED", filled_quantity="0.010", average_price="100.6")
    p = b.feed(report_from_avro(done)).position
    assert p is not None and p.quantity == D("0.010") and p.entry_price == D("100.6")
    before = b.book
    assert b.feed(report_from_avro(first)).book == before  # older cumulative: no new fill
    assert b.feed(report_from_avro(done)).book == before  # same cumulative: duplicate


def test_a_stop_fill_closes_with_a_trade_and_a_release_for_the_opening_intent() -> None:
    b = Book()
    b.feed(fill("E-i1", BUY, "0.010", "100", fee="0.04"))
    step = b.feed(fill("S-i1", SELL, "0.010", "98.5", T0 + 60_000, role=OrderRole.STOP_LOSS))
    p, trade = step.position, step.trade
    assert p is not None and p.status == PositionStatus.CLOSED and p.quantity == 0
    assert trade is not None
    assert (trade.entry_price, trade.exit_price, trade.quantity) == (100, D("98.5"), D("0.010"))
    assert trade.realized_pnl == D("-0.0150") and trade.fees == D("0.05")
    assert trade.net_pnl == D("-0.0650") and trade.exit_reason == ExitReason.STOP_LOSS
    assert (trade.entry_time_ms, trade.exit_time_ms) == (T0, T0 + 60_000)
    assert trade.trade_id == f"i1:{T0}"
    assert step.commands == (
        SlotRelease(
            "i1:release:POSITION_CLOSED", SYM, "i1", ReleaseReason.POSITION_CLOSED, T0 + 60_000
        ),
    )
    # the closing fill redelivered: nothing changes, its trade and release go out again
    again = b.feed(fill("S-i1", SELL, "0.010", "98.5", T0 + 60_000, role=OrderRole.STOP_LOSS))
    assert again.book == step.book and again.trade == trade and again.commands == step.commands


def test_partial_exits_realize_pnl_and_a_rotation_releases_as_rotated_out() -> None:
    b = Book()
    b.feed(fill("E-i1", BUY, "0.010", "100"))
    p = b.feed(fill("X-h", SELL, "0.004", "101", T0 + 1, role=OrderRole.EXIT)).position
    assert p is not None and p.quantity == D("0.006") and p.realized_pnl == D("0.004")
    step = b.feed(
        fill(
            "C1-i1",
            SELL,
            "0.006",
            "102",
            T0 + 2,
            role=OrderRole.CLOSE,
            reason=ExitReason.ROTATE_OUT,
        )
    )
    assert step.trade is not None and step.trade.realized_pnl == D("0.016")
    assert step.trade.exit_price == D("101.6")
    [release] = step.commands
    assert release.reason == ReleaseReason.ROTATED_OUT and release.intent_id == "i1"


def test_a_short_profits_when_the_price_falls() -> None:
    b = Book()
    b.feed(fill("E-s", SELL, "2", "50", intent="s"))
    b.mark("45", T0 + 1)
    assert b.book is not None and b.book.position is not None
    assert b.book.position.unrealized_pnl == D("10")
    step = b.feed(fill("T-s", BUY, "2", "45", T0 + 2, intent="s", role=OrderRole.TAKE_PROFIT))
    assert step.trade is not None and step.trade.realized_pnl == D("10")
    assert step.trade.side == Side.SHORT and step.trade.exit_reason == ExitReason.TAKE_PROFIT


def test_liquidation_closes_the_position() -> None:
    b = Book()
    b.feed(fill("E-i1", BUY, "0.010", "100"))
    liq = fill("autoclose-9", SELL, "0.010", "80.5", T0 + 9, role=OrderRole.LIQUIDATION, intent="")
    step = b.feed(liq)
    assert step.trade is not None and step.trade.exit_reason == ExitReason.LIQUIDATION
    assert step.commands[0].intent_id == "i1"  # the opener, not the exchange's order


def test_marks_update_unrealized_pnl_in_event_time_order() -> None:
    b = Book()
    assert b.mark("100", T0).position is None  # nothing open
    b.feed(fill("E-i1", BUY, "0.010", "100"))
    p = b.mark("105", T0 + 60_000).position
    assert p is not None and p.unrealized_pnl == D("0.05") and p.mark_price == 105
    assert b.mark("90", T0 + 30_000).position is None  # older than the last mark
    with pytest.raises(InvalidRecord):
        b.mark("0", T0 + 90_000)


def test_protective_orders_are_the_stop_and_take_profit_while_open() -> None:
    b = Book()
    b.feed(fill("E-i1", BUY, "0.010", "100"))
    new_sl = replace(
        fill("S-i1", SELL, "0", "98.5", T0 + 1, role=OrderRole.STOP_LOSS, status=ReportStatus.NEW),
        last_filled_quantity=D(0),
        average_price=None,
        trigger_price=D("98.5"),
    )
    p = b.feed(new_sl).position
    assert p is not None and p.stop_loss == D("98.5")
    gone = replace(new_sl, status=ReportStatus.CANCELED, event_time_ms=T0 + 2)
    p = b.feed(gone).position
    assert p is not None and p.stop_loss is None
    assert b.feed(new_sl).position is None  # a late NEW of a finished order changes nothing


def test_a_redelivered_entry_fill_does_not_reopen_a_closed_position() -> None:
    b = Book()
    entry = fill("E-i1", BUY, "0.010", "100")
    b.feed(entry)
    b.feed(fill("S-i1", SELL, "0.010", "99", T0 + 5, role=OrderRole.STOP_LOSS))
    step = b.feed(entry)
    assert step.book.position is not None and step.book.position.status == PositionStatus.CLOSED


def test_seen_fills_are_forgotten_after_the_horizon() -> None:
    b = Book(PositionsCore(PositionsConfig(dedup_horizon_ms=1000)))
    b.feed(fill("E-a", BUY, "1", "10", intent="a"))
    b.feed(fill("S-a", SELL, "1", "10", T0 + 10, intent="a", role=OrderRole.STOP_LOSS))
    b.feed(fill("E-b", BUY, "1", "10", T0 + 5000, intent="b"))
    assert b.book is not None
    assert [s.key for s in b.book.seen] == ["E-b/1"] and b.book.trades == ()


def test_liquidation_price_comes_from_the_injected_rule() -> None:
    core = PositionsCore(liquidation_price=lambda p: p.entry_price * D("0.8"))
    b = Book(core)
    p = b.feed(fill("E-i1", BUY, "0.010", "100")).position
    assert p is not None and p.liquidation_price == D("80.0")


def test_bad_reports_are_invalid_records() -> None:
    b = Book()
    with pytest.raises(InvalidRecord):  # an entry fill that does not say its side
        b.feed(replace(fill("E-i1", BUY, "1", "1"), order_side=None))
    with pytest.raises(InvalidRecord):
        b.feed(replace(fill("E-i1", BUY, "1", "1"), last_filled_price=None))
    b.feed(fill("E-i1", BUY, "1", "1"))
    with pytest.raises(InvalidRecord):  # another symbol's report on this book
        b.feed(replace(fill("E-i2", BUY, "1", "1"), symbol="ETHUSDT"))
    # a reducing fill without a side is read against the open position
    step = b.feed(replace(fill("S-i1", SELL, "1", "1", role=OrderRole.STOP_LOSS), order_side=None))
    assert step.trade is not None


# ---- records -------------------------------------------------------------------------------


def _write(schema: Any, value: dict[str, Any]) -> bytes:
    buf = BytesIO()
    fastavro.schemaless_writer(buf, schema, value)
    return buf.getvalue()


def _read_as(data: bytes, writer: Any, reader: Any) -> dict[str, Any]:
    return fastavro.schemaless_reader(BytesIO(data), writer, reader)  # type: ignore[return-value]


def _round_trip(schema_file: str, value: dict[str, Any]) -> dict[str, Any]:
    schema = runtime_schema(schema_file)
    return _read_as(_write(schema, value), schema, schema)


def test_position_trade_and_book_records_round_trip_and_validate() -> None:
    b = Book()
    b.feed(fill("E-i1", BUY, "0.010", "100"))
    b.mark("101", T0 + 1)
    step = b.feed(fill("S-i1", SELL, "0.010", "98.5", T0 + 2, role=OrderRole.STOP_LOSS))
    assert step.position is not None and step.trade is not None
    pos = position_to_avro(step.position)
    assert _round_trip("positions.avsc", pos) == pos
    validate("positions.avsc", pos)
    trade = trade_to_avro(step.trade)
    assert _round_trip("trades.avsc", trade) == trade
    validate("trades.avsc", trade)
    assert trade_from_avro(trade) == step.trade
    row = trade_csv_row(step.trade)
    assert tuple(row) == TRADES_CSV_COLUMNS and row["exit_reason"] == "STOP_LOSS"
    assert book_from_json(json.loads(json.dumps(book_to_json(step.book)))) == step.book


def test_the_enums_repeat_the_schemas() -> None:
    def symbols(schema_file: str, enum: str) -> list[str]:
        found: list[str] = []

        def walk(s: Any) -> None:
            if isinstance(s, dict):
                if s.get("type") == "enum" and s.get("name") == enum:
                    found.append(s["symbols"])  # type: ignore[arg-type]
                for v in s.values():
                    walk(v)
            elif isinstance(s, list):
                for v in s:
                    walk(v)

        walk(load_schema(schema_file))
        assert found, (schema_file, enum)
        return found[0]

    for module in (execution_model, positions_model):
        assert [e.value for e in module.ExitReason] == symbols("trades.avsc", "ExitReason")
        assert [e.value for e in module.OrderRole] == symbols("execution.results.avsc", "OrderRole")
    assert [e.value for e in ReportStatus] == symbols("execution.results.avsc", "OrderStatus")
    assert symbols("orders.avsc", "ExitReason") == symbols("trades.avsc", "ExitReason")
    # one reason list for exits, orders, results, positions and trades
    assert symbols("exit.intents.avsc", "ExitReason") == symbols("trades.avsc", "ExitReason")


# ---- properties ------------------------------------------------------------------------------

fills = st.lists(
    st.tuples(
        st.sampled_from([BUY, SELL]),
        st.integers(1, 50).map(lambda n: D(n) / 10),
        st.integers(50, 150).map(D),
    ),
    min_size=1,
    max_size=12,
)


@given(fills, st.data())
def test_quantity_is_the_signed_sum_of_distinct_fills_in_any_order(
    stream: list[tuple[OrderSide, Decimal, Decimal]], data: st.DataObject
) -> None:
    reports = [
        fill(f"o{k}", side, str(q), str(p), T0 + k, trade=f"t{k}", role=OrderRole.ENTRY)
        for k, (side, q, p) in enumerate(stream)
    ]
    order = data.draw(st.permutations(reports))
    dups = data.draw(st.lists(st.sampled_from(reports), max_size=6))
    b = Book()
    for r in [*order, *dups]:
        before = b.book
        step = b.feed(r)
        if before is not None and before.seen_fill(r.trade_id or "") is not None:
            assert step.book == before  # a redelivered fill changes nothing
    net = sum((q if s == BUY else -q for s, q, _ in stream), D(0))
    assert b.book is not None and b.book.position is not None
    pos = b.book.position
    held = pos.quantity if pos.status == PositionStatus.OPEN else D(0)
    assert (held if pos.side == Side.LONG else -held) == net
    assert pos.quantity >= 0 and (pos.status == PositionStatus.CLOSED) == (pos.quantity == 0)
