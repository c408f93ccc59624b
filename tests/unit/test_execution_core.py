"""The execution core, one readable example per rule (docs/execution.md)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.execution import ids
from agents.execution.codec import (
    entry_from_avro,
    entry_to_avro,
    ledger_record,
    ledger_update_from_record,
)
from agents.execution.config import ExecutionConfig
from agents.execution.core import DECISION_TABLE, ExecutionCore
from agents.execution.ledger import Ledger
from agents.execution.model import (
    DUPLICATE_CLIENT_ORDER_ID,
    CancelOrder,
    EntryState,
    ExitReason,
    Forget,
    OrderRole,
    OrderSide,
    OrderStatus,
    OrderType,
    PlaceOrder,
    Step,
    UnknownDecisionKind,
    UnknownIntent,
    UnknownOrder,
)
from agents.governor.model import (
    DecisionKind,
    DenyReason,
    ReleaseReason,
    Side,
    SlotFilled,
    SlotRelease,
)
from quantum.errors import InvalidRecord, PoisonRecord
from tests.unit.execution_world import (
    T0,
    Harness,
    decision,
    exit_intent,
    only_order,
    plan,
    result,
)

D = Decimal
G = DecisionKind.GRANTED


def opened(h: Harness, intent: str = "i1", symbol: str = "BTCUSDT", t: int = T0) -> PlaceOrder:
    """Plan + grant + fill at 100: returns the entry order."""
    h.feed(plan(intent, symbol, t=t))
    entry = only_order(h.feed(decision(G, intent, symbol, t=t)))
    h.feed(result(entry, OrderStatus.FILLED, "0.010", "100", t=t + 1))
    return entry


def order_by_role(h: Harness, intent: str, role: OrderRole) -> PlaceOrder:
    e = h.ledger.get(intent)
    assert e is not None
    [rec] = e.orders_with(role)
    return rec.order


# ---- GRANTED: exactly one entry order ---------------------------------------------------------


def test_grant_places_one_entry_order_with_a_client_id_from_the_intent() -> None:
    h = Harness()
    assert h.feed(plan()).orders == ()
    assert h.state() == "PLANNED"
    step = h.feed(decision(G))
    order = only_order(step)
    assert order == PlaceOrder(
        client_order_id="E-i1",
        intent_id="i1",
        symbol="BTCUSDT",
        side=OrderSide.BUY,
        order_type=OrderType.MARKET,
        quantity=D("0.010"),
        trigger_price=None,
        reduce_only=False,
        role=OrderRole.ENTRY,
        exit_reason=None,
        leverage=5,
        event_time_ms=T0,
    )
    # the ledger record that guards the order is in the same step, to be written first
    [entry] = step.ledger_updates
    assert entry.state == EntryState.SENT and entry.orders[0].status == OrderStatus.SENT
    assert step.commands == ()


def test_a_redelivered_grant_places_no_second_order() -> None:
    h = Harness()
    h.feed(plan())
    h.feed(decision(G))
    again = h.feed(decision(G))
    assert again.orders == () and again.ledger_updates == ()
    # even a second GRANTED under another decision id (a governor bug) places nothing
    other = h.feed(decision(G, command_id="other"))
    assert other.orders == () and other.ledger_updates == ()
    assert len(h.placed()) == 1


def test_grant_before_plan_waits_for_the_plan_then_enters() -> None:
    h = Harness()
    assert h.feed(decision(G, t=T0 + 5)).orders == ()
    assert h.state() == "GRANTED"
    order = only_order(h.feed(plan(t=T0)))
    assert order.client_order_id == "E-i1" and order.event_time_ms == T0 + 5
    assert h.feed(plan(t=T0)).orders == ()  # plan redelivered
    assert h.state() == "SENT"


def test_a_short_enters_with_a_sell() -> None:
    h = Harness()
    h.feed(plan(side=Side.SHORT))
    assert only_order(h.feed(decision(G))).side == OrderSide.SELL


def test_a_denial_ends_the_intent_whichever_arrives_first() -> None:
    h = Harness()
    h.feed(plan())
    h.feed(decision(DecisionKind.DENIED, deny=DenyReason.LIMIT_FULL))
    assert h.state() == "DENIED"
    first = Harness()
    first.feed(decision(DecisionKind.DENIED, deny=DenyReason.LIMIT_FULL))
    assert first.feed(plan()).orders == ()
    assert first.ledger.snapshot() == h.ledger.snapshot()
    assert h.ledger.get("i1").note == "DENIED LIMIT_FULL"  # type: ignore[union-attr]


def test_grant_older_than_grant_max_age_places_nothing() -> None:
    h = Harness(core=ExecutionCore(ExecutionConfig(grant_max_age_ms=1000)))
    h.feed(plan("a", "ETHUSDT"))
    h.feed(decision(G, "a", "ETHUSDT", t=T0 + 10_000))  # the decision clock is at T0 + 10 s
    h.feed(plan("old"))
    step = h.feed(decision(G, "old", t=T0))
    assert step.orders == ()
    assert h.state("old") == "EXPIRED"
    assert step.commands == (
        SlotRelease("old:release:ORDER_EXPIRED", "BTCUSDT", "old", ReleaseReason.ORDER_EXPIRED, T0),
    )
    # with no plan known, a stale grant leaves no trace at all
    assert h.feed(decision(G, "older", t=T0 - 5000)).ledger_updates == ()


def test_plan_arriving_after_its_grant_lapsed_places_nothing() -> None:
    h = Harness(core=ExecutionCore(ExecutionConfig(grant_max_age_ms=1000)))
    h.feed(decision(G, "late", t=T0))
    h.feed(plan("b", "ETHUSDT"))
    h.feed(decision(G, "b", "ETHUSDT", t=T0 + 5000))
    step = h.feed(plan("late"))
    assert step.orders == () and h.state("late") == "EXPIRED"
    assert [c.reason for c in step.commands] == [ReleaseReason.ORDER_EXPIRED]  # type: ignore[union-attr]


# ---- client order ids --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "intent",
    [
        "i1",
        "sel:BTCUSDT:1764000000000:LONG:run-2026-11-24-replay-sample",  # too long
        "intent with spaces/and#hash",  # characters Binance refuses
        "x" * 34,  # readable form would be 36 + 1
    ],
)
def test_client_order_ids_are_deterministic_and_binance_valid(intent: str) -> None:
    for tag in ("E", "S", "T", "X", "C1", "C12"):
        coid = ids.client_order_id(tag, intent)
        assert ids.CLIENT_ORDER_ID_RE.fullmatch(coid), coid
        assert coid == ids.client_order_id(tag, intent)
    assert ids.client_order_id("E", intent) != ids.client_order_id("S", intent)


def test_long_ids_hash_and_never_collide_with_readable_ones() -> None:
    long_id = "a" * 40
    hashed = ids.client_order_id("E", long_id)
    assert hashed.startswith("E:") and len(hashed) == 36
    assert ids.client_order_id("E", "a" * 34) == "E-" + "a" * 34  # exactly 36: readable
    assert ids.client_order_id("E", "a" * 35).startswith("E:")
    assert ids.client_order_id("E", long_id) != ids.client_order_id("E", long_id + "b")


# ---- results: acks, fills, rejections, expiries --------------------------------------------------


def test_fill_before_ack_sends_slot_filled_once_and_places_protective_orders() -> None:
    h = Harness()
    h.feed(plan())
    entry = only_order(h.feed(decision(G)))
    step = h.feed(result(entry, OrderStatus.FILLED, "0.010", "100", t=T0 + 2))
    assert h.state() == "FILLED"
    assert step.commands == (SlotFilled("i1:filled", "i1", "BTCUSDT", T0 + 2),)
    sl, tp = step.orders
    assert isinstance(sl, PlaceOrder) and isinstance(tp, PlaceOrder)
    assert (sl.client_order_id, sl.order_type, sl.trigger_price) == (
        "S-i1",
        OrderType.STOP_MARKET,
        D("98.5"),
    )
    assert (tp.client_order_id, tp.order_type, tp.trigger_price) == (
        "T-i1",
        OrderType.TAKE_PROFIT_MARKET,
        D("102.5"),
    )
    for o in (sl, tp):
        assert o.reduce_only and o.side == OrderSide.SELL and o.quantity == D("0.010")
    late_ack = h.feed(result(entry, OrderStatus.NEW, t=T0 + 1))
    assert late_ack.ledger_updates == () and late_ack.orders == ()
    # a stale input re-sends the governor commands the entry implies, same ids
    assert late_ack.commands == (SlotFilled("i1:filled", "i1", "BTCUSDT", T0 + 1),)
    assert h.state() == "FILLED"


def test_ack_then_partial_fill_then_fill() -> None:
    h = Harness()
    h.feed(plan())
    entry = only_order(h.feed(decision(G)))
    assert h.feed(result(entry, OrderStatus.NEW, t=T0 + 1)).commands == ()
    assert h.state() == "ACKED"
    part = h.feed(result(entry, OrderStatus.PARTIALLY_FILLED, "0.004", "100", t=T0 + 2))
    assert [type(c) for c in part.commands] == [SlotFilled] and part.orders == ()
    assert h.state() == "FILLED"
    done = h.feed(result(entry, OrderStatus.FILLED, "0.010", "100.6", t=T0 + 3))
    assert done.commands == ()  # SlotFilled went out with the first fill
    sl, tp = (o for o in done.orders if isinstance(o, PlaceOrder))
    assert sl.trigger_price == D("100.6") * D("0.985")
    assert tp.trigger_price == D("100.6") * D("1.025")


def test_short_protective_levels_and_tick_rounding_toward_the_entry() -> None:
    h = Harness(core=ExecutionCore(tick_sizes={"BTCUSDT": D("0.1")}))
    h.feed(plan(side=Side.SHORT))
    entry = only_order(h.feed(decision(G)))
    step = h.feed(result(entry, OrderStatus.FILLED, "0.010", "100.03", t=T0 + 1))
    sl, tp = step.orders
    assert isinstance(sl, PlaceOrder) and isinstance(tp, PlaceOrder)
    # SL above a short's entry: 101.53045 -> floor to 101.5; TP below: 97.52925 -> ceil 97.6
    assert sl.trigger_price == D("101.5") and sl.side == OrderSide.BUY
    assert tp.trigger_price == D("97.6") and tp.side == OrderSide.BUY


def test_intent_levels_are_used_when_asked_and_on_the_right_side() -> None:
    core = ExecutionCore(ExecutionConfig(use_intent_levels=True))
    h = Harness(core=core)
    h.feed(plan(sl="97", tp="120"))
    entry = only_order(h.feed(decision(G)))
    sl, tp = h.feed(result(entry, OrderStatus.FILLED, "0.010", "100", t=T0 + 1)).orders
    assert (sl.order.trigger_price if isinstance(sl, CancelOrder) else sl.trigger_price) == D("97")
    assert isinstance(tp, PlaceOrder) and tp.trigger_price == D("120")
    # a stop on the wrong side of the fill (the price gapped through it) falls back to 1.5 %
    h2 = Harness(core=core)
    h2.feed(plan(sl="101"))
    entry = only_order(h2.feed(decision(G)))
    sl2, _ = h2.feed(result(entry, OrderStatus.FILLED, "0.010", "100", t=T0 + 1)).orders
    assert isinstance(sl2, PlaceOrder) and sl2.trigger_price == D("98.5")


def test_disabled_take_profit_places_only_the_stop() -> None:
    h = Harness(core=ExecutionCore(ExecutionConfig(take_profit_pct=D(0))))
    h.feed(plan())
    entry = only_order(h.feed(decision(G)))
    [sl] = h.feed(result(entry, OrderStatus.FILLED, "0.010", "100", t=T0 + 1)).orders
    assert isinstance(sl, PlaceOrder) and sl.role == OrderRole.STOP_LOSS


def test_rejected_entry_releases_the_slot_with_the_intent_id() -> None:
    h = Harness()
    h.feed(plan())
    entry = only_order(h.feed(decision(G)))
    step = h.feed(result(entry, OrderStatus.REJECTED, reason="-2019 margin is insufficient"))
    assert h.state() == "REJECTED"
    assert step.commands == (
        SlotRelease("i1:release:ORDER_REJECTED", "BTCUSDT", "i1", ReleaseReason.ORDER_REJECTED, T0),
    )
    assert h.ledger.get("i1").note == "-2019 margin is insufficient"  # type: ignore[union-attr]
    again = h.feed(result(entry, OrderStatus.REJECTED, reason="-2019 margin is insufficient"))
    assert again.ledger_updates == () and again.commands == step.commands  # same command id


@pytest.mark.parametrize("status", [OrderStatus.EXPIRED, OrderStatus.CANCELED])
def test_expired_or_canceled_entry_with_nothing_filled_releases_order_expired(
    status: OrderStatus,
) -> None:
    h = Harness()
    h.feed(plan())
    entry = only_order(h.feed(decision(G)))
    h.feed(result(entry, OrderStatus.NEW, t=T0 + 1))
    step = h.feed(result(entry, status, t=T0 + 2))
    assert h.state() == "EXPIRED"
    assert [c.command_id for c in step.commands] == ["i1:release:ORDER_EXPIRED"]


def test_expired_entry_with_a_partial_fill_is_a_position_not_a_release() -> None:
    h = Harness()
    h.feed(plan())
    entry = only_order(h.feed(decision(G)))
    step = h.feed(result(entry, OrderStatus.EXPIRED, "0.004", "100", t=T0 + 1))
    assert h.state() == "FILLED"
    assert [type(c) for c in step.commands] == [SlotFilled]
    sl, _ = step.orders
    assert isinstance(sl, PlaceOrder) and sl.quantity == D("0.004")


def test_a_duplicate_client_id_refusal_of_a_resend_is_not_the_orders_fate() -> None:
    h = Harness()
    h.feed(plan())
    entry = only_order(h.feed(decision(G)))
    h.feed(result(entry, OrderStatus.NEW, t=T0 + 1))
    dup = h.feed(
        result(entry, OrderStatus.REJECTED, reason=f"{DUPLICATE_CLIENT_ORDER_ID} -4116", t=T0 + 2)
    )
    assert dup.ledger_updates == () and dup.commands == ()
    assert h.state() == "ACKED"


# ---- anti-pyramiding and cooldown ----------------------------------------------------------------


def test_anti_pyramiding_blocks_a_second_entry_on_a_live_symbol() -> None:
    h = Harness()
    opened(h, "a")
    h.feed(plan("b"))
    step = h.feed(decision(G, "b", t=T0 + 10))
    assert step.orders == ()
    assert h.state("b") == "BLOCKED"
    assert h.ledger.get("b").note.startswith("ANTI_PYRAMIDING: a")  # type: ignore[union-attr]
    assert step.commands == (
        SlotRelease(
            "b:release:ORDER_REJECTED", "BTCUSDT", "b", ReleaseReason.ORDER_REJECTED, T0 + 10
        ),
    )


def test_anti_pyramiding_counts_an_entry_still_in_flight() -> None:
    h = Harness()
    h.feed(plan("a"))
    h.feed(decision(G, "a"))  # SENT, no answer yet
    h.feed(plan("b"))
    assert h.feed(decision(G, "b", t=T0 + 1)).orders == ()
    assert h.state("b") == "BLOCKED"


def close_by_stop(h: Harness, intent: str, t: int) -> None:
    sl = order_by_role(h, intent, OrderRole.STOP_LOSS)
    h.feed(result(sl, OrderStatus.FILLED, "0.010", "98.5", t=t))
    assert h.state(intent) == "CLOSED"


def test_cooldown_of_180_s_after_a_close_in_event_time() -> None:
    h = Harness()
    opened(h, "a", t=T0)
    close_by_stop(h, "a", T0 + 1_000_000)
    h.feed(plan("b"))
    assert h.feed(decision(G, "b", t=T0 + 1_000_000 + 179_999)).orders == ()
    assert h.ledger.get("b").note.startswith("COOLDOWN")  # type: ignore[union-attr]
    h.feed(plan("c"))
    assert only_order(h.feed(decision(G, "c", t=T0 + 1_000_000 + 180_000))).intent_id == "c"


def test_cooldown_also_starts_at_an_entry_order_even_a_rejected_one() -> None:
    h = Harness()
    h.feed(plan("a"))
    entry = only_order(h.feed(decision(G, "a", t=T0)))
    h.feed(result(entry, OrderStatus.REJECTED, t=T0 + 1))
    h.feed(plan("b"))
    assert h.feed(decision(G, "b", t=T0 + 60_000)).orders == ()
    assert h.state("b") == "BLOCKED"
    h.feed(plan("c", "ETHUSDT"))  # other symbols are not affected
    assert h.feed(decision(G, "c", "ETHUSDT", t=T0 + 60_000)).orders != ()


# ---- protective orders, closes and exits ---------------------------------------------------------


def test_stop_fill_closes_and_cancels_the_take_profit_once() -> None:
    h = Harness()
    opened(h)
    sl = order_by_role(h, "i1", OrderRole.STOP_LOSS)
    h.feed(result(sl, OrderStatus.NEW, t=T0 + 2))
    step = h.feed(result(sl, OrderStatus.FILLED, "0.010", "98.4", t=T0 + 50))
    assert h.state() == "CLOSED"
    assert h.canceled() == ["T-i1"]
    assert step.commands == ()  # the release of a closed position is the positions agent's
    assert h.feed(result(sl, OrderStatus.FILLED, "0.010", "98.4", t=T0 + 50)).orders == ()
    tp = order_by_role(h, "i1", OrderRole.TAKE_PROFIT)
    assert h.feed(result(tp, OrderStatus.CANCELED, t=T0 + 51)).orders == ()
    assert h.canceled() == ["T-i1"]
    assert h.ledger.get("i1").closed_at == T0 + 50  # type: ignore[union-attr]


def test_rotate_out_closes_the_position_with_a_reduce_only_market_order() -> None:
    h = Harness()
    opened(h)
    rot = decision(DecisionKind.ROTATE_OUT, "i1", t=T0 + 100, for_intent="w")
    close = only_order(h.feed(rot))
    assert (close.client_order_id, close.order_type, close.side) == (
        "C1-i1",
        OrderType.MARKET,
        OrderSide.SELL,
    )
    assert close.reduce_only and close.quantity == D("0.010")
    assert close.exit_reason == ExitReason.ROTATE_OUT and close.role == OrderRole.CLOSE
    assert h.feed(rot).orders == ()  # redelivered decision
    h.feed(result(close, OrderStatus.FILLED, "0.010", "101", t=T0 + 160))
    assert h.state() == "CLOSED"
    assert sorted(h.canceled()) == ["S-i1", "T-i1"]


def test_fill_rejected_closes_at_once_and_a_second_close_waits_for_the_first() -> None:
    h = Harness()
    opened(h)
    close = only_order(h.feed(decision(DecisionKind.FILL_REJECTED, "i1", t=T0 + 2)))
    assert close.exit_reason == ExitReason.FILL_REJECTED
    # a rotation decided meanwhile adds no second close while the first is open
    rot = h.feed(decision(DecisionKind.ROTATE_OUT, "i1", t=T0 + 3))
    assert rot.orders == () and len(rot.ledger_updates) == 1  # decision id remembered


def test_a_rejected_close_is_retried_at_most_three_times() -> None:
    h = Harness()
    opened(h)
    close = only_order(h.feed(decision(DecisionKind.FILL_REJECTED, "i1", t=T0 + 2)))
    tags = [close.client_order_id]
    for k in range(5):
        step = h.feed(result(close, OrderStatus.REJECTED, reason="-2022", t=T0 + 10 + k))
        if not step.orders:
            break
        close = only_order(step)
        tags.append(close.client_order_id)
    assert tags == ["C1-i1", "C2-i1", "C3-i1"]
    assert h.ledger.get("i1").note.startswith("CLOSE_FAILED")  # type: ignore[union-attr]


def test_a_rejected_stop_closes_the_unprotected_position() -> None:
    h = Harness()
    opened(h)
    sl = order_by_role(h, "i1", OrderRole.STOP_LOSS)
    step = h.feed(result(sl, OrderStatus.REJECTED, reason="-2021 would immediately trigger"))
    close = only_order(step)
    assert close.role == OrderRole.CLOSE and close.exit_reason == ExitReason.STOP_LOSS
    off = Harness(core=ExecutionCore(ExecutionConfig(close_when_unprotected=False)))
    opened(off)
    sl = order_by_role(off, "i1", OrderRole.STOP_LOSS)
    assert off.feed(result(sl, OrderStatus.REJECTED, reason="-2021")).orders == ()


def test_expired_reservation_cancels_an_unfilled_entry_and_a_late_fill_still_counts() -> None:
    h = Harness()
    h.feed(plan())
    entry = only_order(h.feed(decision(G)))
    h.feed(result(entry, OrderStatus.NEW, t=T0 + 1))
    step = h.feed(decision(DecisionKind.EXPIRED, "i1", t=T0 + 120_000))
    assert step.orders == (CancelOrder(entry, T0 + 120_000),)
    # the cancel lost the race: the fill is a real position, reported to the governor
    fill = h.feed(result(entry, OrderStatus.FILLED, "0.010", "100", t=T0 + 120_001))
    assert [type(c) for c in fill.commands] == [SlotFilled]
    assert h.state() == "FILLED"


def test_exit_intent_becomes_a_reduce_only_order_clamped_to_what_is_open() -> None:
    h = Harness()
    opened(h)
    first = only_order(h.feed(exit_intent("x1", qty="0.004")))
    assert (first.client_order_id, first.reduce_only, first.quantity) == ("X-x1", True, D("0.004"))
    assert first.role == OrderRole.EXIT and first.exit_reason == ExitReason.HARVEST
    assert h.feed(exit_intent("x1", qty="0.004")).orders == ()  # redelivered
    # a second exit only gets what is not already on its way out
    second = only_order(h.feed(exit_intent("x2", qty="1", reason=ExitReason.PNL_PCT)))
    assert second.quantity == D("0.006")
    assert h.feed(exit_intent("x3")).orders == ()  # everything is closing
    h.feed(result(first, OrderStatus.FILLED, "0.004", "101", t=T0 + 5))
    h.feed(result(second, OrderStatus.FILLED, "0.006", "101", t=T0 + 6))
    assert h.state() == "CLOSED"
    assert h.feed(exit_intent("x4")).orders == ()  # closed: nothing to exit


def test_liquidation_by_the_exchange_closes_the_position() -> None:
    h = Harness()
    opened(h)
    liq = result(
        "autoclose-123",
        OrderStatus.FILLED,
        "0.010",
        "80",
        t=T0 + 500,
        intent="",
        role=OrderRole.LIQUIDATION,
        order_side=OrderSide.SELL,
    )
    step = h.feed(liq)
    assert h.state() == "CLOSED"
    assert sorted(o.client_order_id for o in step.orders) == ["S-i1", "T-i1"]
    assert all(isinstance(o, CancelOrder) for o in step.orders)
    assert h.feed(liq).ledger_updates == ()


# ---- restart ------------------------------------------------------------------------------------


def restored(h: Harness) -> Ledger:
    """The ledger a compacted topic holds after every update the harness wrote."""
    records = [ledger_record(u) for s in h.steps for u in s.ledger_updates]
    return Ledger.restore(ledger_update_from_record(k, v) for k, v in records)


def test_restart_from_the_compacted_ledger_never_resends() -> None:
    h = Harness()
    h.feed(plan())
    entry = only_order(h.feed(decision(G)))
    ledger = restored(h)
    assert ledger.snapshot() == h.ledger.snapshot()
    core = h.core
    assert core.pending_orders(ledger) == [entry]
    again = core.on_decision(decision(G), ledger)
    assert again.orders == () and again.ledger_updates == ()


def test_restart_looks_up_sent_orders_and_resends_only_missing_ones() -> None:
    h = Harness()
    h.feed(plan())
    entry = only_order(h.feed(decision(G, t=T0)))
    core, ledger = h.core, restored(h)
    resend = core.on_order_missing("E-i1", ledger, now_ms=T0 + 1000)
    assert resend.orders == (entry,) and resend.ledger_updates == ()
    # long after its grant, a missing entry is not resent: it expired and owes a release
    late = core.on_order_missing("E-i1", ledger, now_ms=T0 + 120_000)
    assert late.orders == ()
    [e] = late.ledger_updates
    assert e.state == EntryState.EXPIRED  # type: ignore[union-attr]
    assert [c.command_id for c in late.commands] == ["i1:release:ORDER_EXPIRED"]
    with pytest.raises(UnknownOrder):
        core.on_order_missing("E-nope", ledger, now_ms=T0)


def test_pending_cancels_are_sent_again_after_a_restart() -> None:
    h = Harness()
    opened(h)
    sl = order_by_role(h, "i1", OrderRole.STOP_LOSS)
    tp = order_by_role(h, "i1", OrderRole.TAKE_PROFIT)
    h.feed(result(tp, OrderStatus.NEW, t=T0 + 2))
    h.feed(result(sl, OrderStatus.FILLED, "0.010", "98.5", t=T0 + 3))
    assert [c.client_order_id for c in h.core.pending_cancels(restored(h))] == ["T-i1"]


def test_lost_governor_commands_come_back_with_the_redelivered_input() -> None:
    """Crash after the ledger write, before SlotFilled was sent: the result is redelivered
    (its offset was not committed) and the command goes out again, same id."""
    h = Harness()
    h.feed(plan())
    entry = only_order(h.feed(decision(G)))
    fill = result(entry, OrderStatus.FILLED, "0.010", "100", t=T0 + 1)
    first = h.feed(fill)
    again = h.core.on_execution_result(fill, restored(h))
    assert again.orders == () and again.ledger_updates == ()
    assert [c.command_id for c in again.commands] == [c.command_id for c in first.commands]


def test_ledger_entry_avro_round_trip_through_the_schema() -> None:
    from io import BytesIO

    import fastavro

    from quantum.schemas import runtime_schema

    h = Harness()
    opened(h)
    h.feed(exit_intent("x1", qty="0.004"))
    schema = runtime_schema("execution.ledger.avsc")
    for e in h.ledger:
        buf = BytesIO()
        fastavro.schemaless_writer(buf, schema, entry_to_avro(e))
        buf.seek(0)
        assert entry_from_avro(fastavro.schemaless_reader(buf, schema, schema)) == e


@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.integers(0, 50), st.integers(0, 50), st.booleans()),
        max_size=30,
    )
)
def test_ledger_clocks_are_the_maxima_of_its_entries(ops: list[tuple[str, int, int, bool]]) -> None:
    """The clocks are kept incrementally; whatever is put, replaced or forgotten, they equal
    the maxima over the entries that are there."""
    h = Harness()
    h.feed(plan("a"))
    template = h.ledger.get("a")
    assert template is not None
    ledger = Ledger()
    for intent, decided, updated, forget in ops:
        if forget:
            ledger.apply([Forget(intent)])
        else:
            ledger.apply(
                [replace(template, intent_id=intent, decided_at=decided, updated_at=updated)]
            )
        entries = list(ledger)
        assert ledger.decision_clock == max((e.decided_at or 0 for e in entries), default=0)
        assert ledger.clock == max((e.updated_at for e in entries), default=0)


def test_prune_forgets_only_old_terminal_entries() -> None:
    h = Harness(core=ExecutionCore(ExecutionConfig(ledger_retention_ms=1000)))
    opened(h, "open")
    h.feed(plan("denied", "ETHUSDT"))
    h.feed(decision(DecisionKind.DENIED, "denied", "ETHUSDT"))
    step = h.core.prune(h.ledger, T0 + 5000)
    assert step.ledger_updates == (Forget("denied"),)
    assert h.core.prune(h.ledger, T0 + 500).ledger_updates == ()
    h.ledger.apply(step.ledger_updates)
    assert "denied" not in h.ledger and "open" in h.ledger


# ---- bad input goes to the DLQ ------------------------------------------------------------------


def test_unknown_inputs_raise_typed_errors_for_the_dlq() -> None:
    h = Harness()
    with pytest.raises(UnknownOrder) as err:
        h.feed(result("E-ghost", OrderStatus.FILLED, "1", "1", intent="ghost"))
    assert isinstance(err.value, PoisonRecord) and err.value.reason == "UNKNOWN_ORDER"
    with pytest.raises(UnknownIntent):
        h.feed(exit_intent("x9", intent="ghost"))
    with pytest.raises(UnknownIntent):
        h.feed(decision(DecisionKind.ROTATE_OUT, "ghost"))
    with pytest.raises(UnknownDecisionKind):
        h.feed(decision("SOMETHING_NEW", "i1"))
    with pytest.raises(UnknownOrder):  # a liquidation with no open position to reduce
        h.feed(result("autoclose-1", OrderStatus.FILLED, "1", "1", role=OrderRole.LIQUIDATION))


@pytest.mark.parametrize(
    "bad",
    [
        replace(plan(), quantity=D(0)),
        replace(plan(), intent_id=" "),
        replace(plan(), leverage=0),
        replace(plan(), stop_loss=D(-1)),
    ],
)
def test_invalid_plans_are_invalid_records(bad: object) -> None:
    with pytest.raises(InvalidRecord):
        Harness().feed(bad)  # type: ignore[arg-type]


def test_invalid_decisions_and_results_are_invalid_records() -> None:
    h = Harness()
    with pytest.raises(InvalidRecord):
        h.feed(decision(G, intent=""))
    h.feed(plan())
    with pytest.raises(InvalidRecord):
        h.feed(replace(plan(), quantity=D("0.02")))  # another plan under the same id
    with pytest.raises(InvalidRecord):
        h.feed(decision(G, symbol="ETHUSDT"))  # the intent is on BTCUSDT
    entry = only_order(h.feed(decision(G)))
    with pytest.raises(InvalidRecord):
        h.feed(result(entry, OrderStatus.FILLED, "0.011", "100"))  # more than ordered
    with pytest.raises(InvalidRecord):
        h.feed(replace(result(entry, OrderStatus.NEW), symbol="ETHUSDT"))
    with pytest.raises(InvalidRecord):
        h.feed(exit_intent("x", qty="0"))


def test_a_late_fill_on_a_held_symbol_is_reduced_by_its_own_quantity() -> None:
    """Issue 7: the governor records a late fill on a symbol another intent holds as its
    own kind; execution closes exactly that intent's quantity (reduce-only)."""
    h = Harness()
    opened(h, "late")
    close = only_order(h.feed(decision("FILL_SYMBOL_HELD", "late", t=T0 + 5)))
    assert close.exit_reason == ExitReason.EXCESS_FILL and close.reduce_only
    assert close.quantity == D("0.010") and close.intent_id == "late"
    assert h.feed(decision("FILL_IGNORED", "late", t=T0 + 6)) == Step()


def test_every_governor_decision_kind_is_in_the_table() -> None:
    """A kind added to the governor's model must be given a meaning here."""
    assert {k.value for k in DecisionKind} <= set(DECISION_TABLE)


def test_every_command_names_its_intent_and_has_a_deterministic_id() -> None:
    h = Harness()
    opened(h, "a")
    h.feed(plan("b"))
    h.feed(decision(G, "b", t=T0 + 5))
    for c in h.commands():
        assert c.intent_id in ("a", "b")
        assert c.command_id.startswith(f"{c.intent_id}:")
