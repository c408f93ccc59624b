"""The live venue core without Binance: scripted answers to each call it asks for.

The core is pure (calls out, answers in), so these tests script the answers; the same
paths run against python-binance and replayed HTTP in test_binance_venue_shell.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.binance_exchange.config import BinanceVenueConfig
from agents.binance_exchange.core import BinanceVenueCore, Step
from agents.binance_exchange.model import (
    AlertKind,
    Call,
    CallKind,
    Done,
    EventSource,
    Found,
    Outcome,
    SentState,
    UserEventRecord,
)
from agents.governor.model import Halt as HaltCommand
from agents.paper_exchange.model import OrderAction, ReportStatus, VenueOrder
from exchange.binance.errors import Halt, Rejected, RetryAfter, Unknown
from exchange.model import OrderSide, OrderType

T0 = 1_767_225_600_000
STREAM = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "userstream"
ENTRY = "qt-e-7f3a9c2d41b8-0"
STOP = "qt-s-7f3a9c2d41b8-0"
ORDER_ID = 4611875134427365377


def entry(coid: str = ENTRY, qty: str = "0.010", at: int = T0, lev: int | None = 5) -> VenueOrder:
    return VenueOrder(
        client_order_id=coid,
        intent_id="7f3a9c2d41b8",
        symbol="BTCUSDT",
        side=OrderSide.BUY,
        order_type=OrderType.MARKET,
        quantity=Decimal(qty),
        price=None,
        trigger_price=None,
        reduce_only=False,
        event_time_ms=at,
        role="ENTRY",
        leverage=lev,
    )


def stop(at: int = T0 + 300) -> VenueOrder:
    return VenueOrder(
        client_order_id=STOP,
        intent_id="7f3a9c2d41b8",
        symbol="BTCUSDT",
        side=OrderSide.SELL,
        order_type=OrderType.STOP_MARKET,
        quantity=Decimal("0.010"),
        price=None,
        trigger_price=Decimal("93100"),
        reduce_only=True,
        event_time_ms=at,
        role="STOP_LOSS",
    )


Script = Callable[[Call], object]


def run(core: BinanceVenueCore, order: VenueOrder, script: Script) -> tuple[Outcome, list[Call]]:
    """Drive one order, answering each call with `script`; the calls made, in order."""
    calls: list[Call] = []
    step: Step = core.start(order)
    while step.call is not None:
        calls.append(step.call)
        assert len(calls) < 50, calls
        step = core.advance(step.call, script(step.call))  # type: ignore[arg-type]
    return step.outcome, calls


def kinds(calls: list[Call]) -> list[str]:
    return [str(c.kind) for c in calls]


def binance(status: str = "NEW", placed: Callable[[Call], object] | None = None) -> Script:
    """A well-behaved venue: knows nothing until placed, then answers `status`."""
    book: dict[str, Found] = {}

    def answer(call: Call) -> object:
        coid = call.order.client_order_id
        if call.kind is CallKind.LOOKUP:
            return book.get(coid)
        if call.kind is CallKind.PLACE:
            result = placed(call) if placed else Found("NEW", Decimal(0), None, ORDER_ID)
            if isinstance(result, Found | Unknown):
                book[coid] = Found(status, call.order.quantity, Decimal("95000"), ORDER_ID)
            return result
        return Done()

    return answer


def test_a_first_entry_is_looked_up_then_margin_leverage_and_placed_once() -> None:
    core = BinanceVenueCore()
    outcome, calls = run(core, entry(), binance())
    assert kinds(calls) == ["LOOKUP", "SET_MARGIN", "SET_LEVERAGE", "PLACE"]
    (report,) = outcome.reports
    assert report.status == ReportStatus.NEW and report.client_order_id == ENTRY
    assert report.leverage == 5 and report.role == "ENTRY" and report.last_filled_quantity == 0
    # the next entry on the symbol at the same leverage needs neither setting again
    _, calls = run(core, entry("qt-e-next-0"), binance())
    assert kinds(calls) == ["LOOKUP", "PLACE"]


def test_a_resend_is_answered_by_lookup_never_placed_again() -> None:
    core = BinanceVenueCore()
    venue = binance(status="FILLED")
    run(core, entry(), venue)
    outcome, calls = run(core, entry(at=T0 + 5_000), venue)
    assert kinds(calls) == ["LOOKUP"]
    (report,) = outcome.reports
    assert report.status == ReportStatus.FILLED and report.filled_quantity == Decimal("0.010")
    assert report.last_filled_quantity == 0  # a status answer, not a fill: positions skip it


def test_another_order_under_a_known_id_is_refused_without_a_call() -> None:
    core = BinanceVenueCore()
    run(core, entry(), binance())
    outcome, calls = run(core, entry(qty="0.020"), binance())
    assert calls == []
    (report,) = outcome.reports
    assert report.status == ReportStatus.REJECTED
    assert report.reason.startswith("DUPLICATE_CLIENT_ORDER_ID")


def test_a_rejection_is_a_rejected_report_with_its_reason() -> None:
    core = BinanceVenueCore()
    refused = Rejected(-4164, "BELOW_MIN_NOTIONAL", "Order's notional must be no smaller than 100")
    outcome, calls = run(core, entry(), binance(placed=lambda c: refused))
    assert kinds(calls)[-1] == "PLACE"
    (report,) = outcome.reports
    assert report.status == ReportStatus.REJECTED
    assert report.reason.startswith("BELOW_MIN_NOTIONAL: -4164")
    assert core.known(ENTRY).state is SentState.FINAL


def test_an_unknown_outcome_is_resolved_by_lookup_and_not_resent() -> None:
    core = BinanceVenueCore()
    outcome, calls = run(core, entry(), binance(placed=lambda c: Unknown("HTTP_503", "busy")))
    assert kinds(calls) == ["LOOKUP", "SET_MARGIN", "SET_LEVERAGE", "PLACE", "LOOKUP"]
    (report,) = outcome.reports
    assert report.status == ReportStatus.NEW


def test_an_unknown_outcome_that_binance_twice_does_not_know_is_placed_again_once() -> None:
    core = BinanceVenueCore(BinanceVenueConfig(lookup_before_send=False))
    attempts: list[int] = []

    def placed(call: Call) -> object:
        attempts.append(1)
        if len(attempts) == 1:
            return Unknown("TIMEOUT", "read timeout")  # it never reached the engine
        return Found("NEW", Decimal(0), None, ORDER_ID)

    book: dict[str, Found] = {}

    def venue(call: Call) -> object:
        if call.kind is CallKind.LOOKUP:
            return book.get(call.order.client_order_id)
        if call.kind is CallKind.PLACE:
            result = placed(call)
            if isinstance(result, Found):
                book[call.order.client_order_id] = result
            return result
        return Done()

    outcome, calls = run(core, entry(), venue)
    assert kinds(calls) == [
        "SET_MARGIN", "SET_LEVERAGE", "PLACE", "LOOKUP", "WAIT", "LOOKUP", "PLACE"
    ]  # fmt: skip
    assert len(attempts) == 2 and outcome.reports[0].status == ReportStatus.NEW


def test_failing_lookups_leave_the_order_unresolved_with_an_alert_and_no_report() -> None:
    core = BinanceVenueCore(BinanceVenueConfig(lookup_attempts=3))
    placed = []

    def venue(call: Call) -> object:
        if call.kind is CallKind.PLACE:
            placed.append(call)
            return Unknown("HTTP_503", "busy")
        if call.kind is CallKind.LOOKUP:  # before sending Binance answers; after, it does not
            return None if not placed else Unknown("TIMEOUT", "read timeout")
        return Done()

    outcome, calls = run(core, entry(), venue)
    assert kinds(calls)[3:] == ["PLACE", "LOOKUP", "WAIT", "LOOKUP", "WAIT", "LOOKUP"]
    assert outcome.reports == ()
    assert [a.kind for a in outcome.alerts] == [AlertKind.ORDER_UNRESOLVED]
    assert core.known(ENTRY).state is SentState.UNRESOLVED
    # delivered again later: looked up first and found; still placed only once
    outcome, calls = run(core, entry(at=T0 + 60_000), lambda c: Found("NEW", 0, None, ORDER_ID))
    assert kinds(calls) == ["LOOKUP"] and outcome.reports[0].status == ReportStatus.NEW
    assert len(placed) == 1


def test_retry_after_waits_then_repeats_the_same_call_within_the_budget() -> None:
    core = BinanceVenueCore(BinanceVenueConfig(max_wait_ms=3_000))
    answers = iter([RetryAfter(1_000, None, "governor"), RetryAfter(1_500, -1015, "orders")])

    def placed(call: Call) -> object:
        return next(answers, Found("NEW", Decimal(0), None, ORDER_ID))

    outcome, calls = run(core, entry(), binance(placed=placed))
    waits = [c.wait_ms for c in calls if c.kind is CallKind.WAIT]
    assert waits == [1_000, 1_500]
    assert kinds(calls)[-4:] == ["WAIT", "PLACE", "WAIT", "PLACE"]
    assert outcome.reports[0].status == ReportStatus.NEW


def test_retry_after_past_the_budget_is_rejected_rate_limited() -> None:
    core = BinanceVenueCore(BinanceVenueConfig(max_wait_ms=1_000))
    outcome, _ = run(core, entry(), binance(placed=lambda c: RetryAfter(60_000, None, "429")))
    assert outcome.reports[0].status == ReportStatus.REJECTED
    assert outcome.reports[0].reason.startswith("RATE_LIMITED")


def test_halt_sends_the_governor_a_halt_and_an_alert_and_stops_calling() -> None:
    core = BinanceVenueCore()
    banned = Halt(418, -1003, "Way too many requests; IP banned", 120_000)
    outcome, _ = run(core, entry(), binance(placed=lambda c: banned))
    (command,) = outcome.commands
    assert isinstance(command, HaltCommand) and "418" in command.reason
    assert [a.kind for a in outcome.alerts] == [AlertKind.VENUE_HALT]
    assert outcome.reports[0].status == ReportStatus.REJECTED
    assert outcome.reports[0].reason.startswith("VENUE_HALTED")
    outcome, calls = run(core, entry("qt-e-other-0"), binance())
    assert calls == [] and outcome.reports[0].reason.startswith("VENUE_HALTED")


def test_protective_stop_goes_through_the_algo_path_and_cancels_by_client_id() -> None:
    core = BinanceVenueCore()
    outcome, calls = run(core, stop(), binance())
    assert kinds(calls) == ["LOOKUP", "PLACE"]  # reduce-only: no margin, no leverage
    assert outcome.reports[0].status == ReportStatus.NEW
    cancel = VenueOrder(**{**_fields(stop(T0 + 900)), "action": OrderAction.CANCEL})
    outcome, calls = run(core, cancel, binance())
    assert kinds(calls) == ["CANCEL"]
    assert outcome.reports[0].status == ReportStatus.CANCELED
    # a cancel Binance answers -2011 (not open) is not a report about the order
    core2 = BinanceVenueCore()
    run(core2, stop(), binance())
    not_open = Rejected(-2011, "UNKNOWN_ORDER", "Unknown order sent.")
    outcome, _ = run(core2, cancel, lambda c: not_open)
    assert outcome.reports == ()


def _fields(order: VenueOrder) -> dict:
    return {f: getattr(order, f) for f in order.__slots__}  # type: ignore[attr-defined]


def test_restart_from_the_table_never_places_an_order_binance_has_forgotten() -> None:
    core = BinanceVenueCore()
    refused = Rejected(-2019, "INSUFFICIENT_MARGIN", "Margin is insufficient.")
    run(core, entry(), binance(placed=lambda c: refused))
    parts = {k: v for k, v in core.take_changes().items()}
    restored = BinanceVenueCore.restore(None, core.snapshot(), [v for v in parts.values() if v])
    outcome, calls = run(restored, entry(at=T0 + 10_000), lambda c: None)  # Binance forgot
    assert kinds(calls) == ["LOOKUP"]
    assert outcome.reports[0].status == ReportStatus.REJECTED


# ---- the user-data stream ---------------------------------------------------------------------


def events(name: str) -> list[dict]:
    return json.loads((STREAM / name).read_text())


def stream(msg: dict) -> UserEventRecord:
    return UserEventRecord(f"{msg['e']}:{msg['E']}", EventSource.STREAM, json.dumps(msg), msg["E"])


def resync(row: dict) -> UserEventRecord:
    rid = f"RESYNC:{row['symbol']}:{row['id']}:{row['orderId']}"
    return UserEventRecord(rid, EventSource.RESYNC, json.dumps(row), row["time"])


def placed_entry() -> BinanceVenueCore:
    core = BinanceVenueCore()
    run(core, entry(), binance())
    return core


def fills_of(outcomes: list[Outcome]) -> list:
    return [r for o in outcomes for r in o.reports if r.last_filled_quantity]


def test_stream_fills_become_cumulative_reports_with_trade_ids() -> None:
    core = placed_entry()
    outs = [core.on_user_event(stream(m)) for m in events("fill_sequence.json")]
    fills = fills_of(outs)
    assert [(f.trade_id, f.status, f.filled_quantity) for f in fills] == [
        ("6251138922", ReportStatus.PARTIALLY_FILLED, Decimal("0.004")),
        ("6251138923", ReportStatus.FILLED, Decimal("0.010")),
    ]
    assert fills[1].average_price == Decimal("95000.16")
    assert fills[1].commission == Decimal("0.28500060") and fills[1].intent_id == "7f3a9c2d41b8"
    assert fills[1].role == "ENTRY" and fills[1].leverage == 5


def test_a_resync_after_a_reconnect_brings_a_missed_fill_once() -> None:
    rows = json.loads(
        (STREAM.parent / "rest" / "user_trades.json").read_text()
    )["body"]  # fmt: skip
    core = placed_entry()
    first = events("fill_sequence.json")[1]  # the stream delivered the first fill, then dropped
    outs = [core.on_user_event(stream(first))]
    outs += [core.on_user_event(resync(r)) for r in rows]  # both fills, one already seen
    outs += [core.on_user_event(stream(m)) for m in events("fill_sequence.json")]  # replayed
    fills = fills_of(outs)
    assert [f.trade_id for f in fills] == ["6251138922", "6251138923"]
    assert fills[-1].status == ReportStatus.FILLED


def test_a_triggered_stop_reports_its_fill_under_the_algo_client_id() -> None:
    core = placed_entry()
    for m in events("fill_sequence.json"):
        core.on_user_event(stream(m))
    run(core, stop(), binance())
    outs = [core.on_user_event(stream(m)) for m in events("algo_stop.json")]
    (fill,) = fills_of(outs)
    assert fill.client_order_id == STOP and fill.role == "STOP_LOSS"
    assert fill.status == ReportStatus.FILLED and fill.realized_pnl == Decimal("-19.04760000")


def test_an_order_this_agent_never_placed_raises_an_alert_not_a_report() -> None:
    core = BinanceVenueCore()
    outs = [core.on_user_event(stream(m)) for m in events("fill_sequence.json")]
    assert not [r for o in outs for r in o.reports]
    assert {a.kind for o in outs for a in o.alerts} == {AlertKind.FOREIGN_ORDER}


def test_the_fill_memory_survives_a_restart() -> None:
    core = placed_entry()
    msgs = events("fill_sequence.json")
    core.on_user_event(stream(msgs[1]))
    sent = [v for v in core.take_changes().values() if v]
    restored = BinanceVenueCore.restore(None, core.snapshot(), sent)
    outs = [restored.on_user_event(stream(m)) for m in msgs]
    assert [f.trade_id for f in fills_of(outs)] == ["6251138923"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=12),
    st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_any_replay_order_and_duplication_reports_each_fill_once(picks, resynced) -> None:
    """Fills arrive from the stream and from resyncs in any order, any number of times:
    each is reported once, and the last cumulative quantity is the sum of the fills."""
    qty = ["0.001", "0.002", "0.003", "0.004"]
    core = BinanceVenueCore()
    run(core, entry(qty="0.010"), binance())
    records = []
    for n in picks:
        row = {
            "symbol": "BTCUSDT", "id": 100 + n, "orderId": ORDER_ID, "side": "BUY",
            "price": "95000", "qty": qty[n], "commission": "0.01", "commissionAsset": "USDT",
            "realizedPnl": "0", "maker": False, "time": T0 + 1_000 + n,
        }  # fmt: skip
        msg = {
            "e": "ORDER_TRADE_UPDATE", "E": T0 + 2_000 + n, "T": T0 + 1_000 + n,
            "o": {"s": "BTCUSDT", "c": ENTRY, "S": "BUY", "o": "MARKET", "q": "0.010",
                  "x": "TRADE", "X": "PARTIALLY_FILLED", "i": ORDER_ID, "l": qty[n],
                  "z": "0", "L": "95000", "n": "0.01", "N": "USDT", "T": T0 + 1_000 + n,
                  "t": 100 + n},
        }  # fmt: skip
        records.append(resync(row) if resynced[n] else stream(msg))
        records.append(stream(msg))
    fills = fills_of([core.on_user_event(r) for r in records])
    unique = sorted(set(picks))
    assert sorted(int(f.trade_id) - 100 for f in fills) == unique
    assert fills[-1].filled_quantity == sum(Decimal(qty[n]) for n in unique)


def test_a_triggered_stop_s_fill_ahead_of_its_algo_update_is_reported_once_linked() -> None:
    core = placed_entry()
    for m in events("fill_sequence.json"):
        core.on_user_event(stream(m))
    run(core, stop(), binance())
    new, triggered, fill, *rest = events("algo_stop.json")
    early = core.on_user_event(stream(fill))  # the fill overtakes ALGO_UPDATE TRIGGERED
    assert early.reports == () and [a.kind for a in early.alerts] == [AlertKind.FOREIGN_ORDER]
    # a restart in between keeps it
    sent = [v for v in core.take_changes().values() if v]
    core = BinanceVenueCore.restore(None, core.snapshot(), sent)
    outs = [core.on_user_event(stream(m)) for m in (new, triggered, fill, *rest)]
    (linked,) = fills_of(outs)
    assert linked.client_order_id == STOP and linked.status == ReportStatus.FILLED


def test_a_crash_between_the_order_part_and_the_venue_part_applies_a_fill_once() -> None:
    """Parts are written order first, venue last: a crash after the order part leaves a
    state where the redelivered fill is found in the order's own fill keys."""
    core = placed_entry()
    core.take_changes()
    venue_before = core.snapshot()
    msgs = events("fill_sequence.json")
    (report,) = core.on_user_event(stream(msgs[1])).reports
    written = [v for v in core.take_changes().values() if v]  # the order part got out
    sent = [s for s in written if s.order.client_order_id == ENTRY]
    crashed = BinanceVenueCore.restore(None, venue_before, sent)  # the venue part did not
    again = crashed.on_user_event(stream(msgs[1]))
    assert again.reports == ()
    (second,) = fills_of([crashed.on_user_event(stream(msgs[3]))])
    assert second.filled_quantity == Decimal("0.010") and report.trade_id == "6251138922"
