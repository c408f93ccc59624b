"""Example-based tests of each governor rule, readable as the rule book."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from agents.governor.config import GovernorConfig
from agents.governor.core import GovernorCore
from agents.governor.model import (
    Clock,
    Decision,
    DecisionKind,
    DenyReason,
    Halt,
    Regime,
    ReleaseReason,
    Resume,
    SetRegime,
    Side,
    SlotFilled,
    SlotRelease,
    SlotRequest,
    SlotState,
)

K = DecisionKind
CFG = GovernorConfig()  # the audit's values: max 10, slots 4/6/3, threshold 0.15


def req(intent: str, symbol: str, score: float = 0.6, t: int = 0) -> SlotRequest:
    return SlotRequest(intent, symbol, Side.LONG, Decimal("100"), score, t)


def fill(intent: str, symbol: str, t: int = 0) -> SlotFilled:
    return SlotFilled(f"fill-{intent}", intent, symbol, t)


def release(
    intent: str | None,
    symbol: str,
    reason: ReleaseReason = ReleaseReason.POSITION_CLOSED,
    t: int = 0,
    cid: str | None = None,
) -> SlotRelease:
    return SlotRelease(cid or f"rel-{intent or symbol}-{t}", symbol, intent, reason, t)


def only(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1, decisions
    return decisions[0]


def open_positions(core: GovernorCore, specs: list[tuple[str, str, float]], t: int = 0) -> None:
    """Request and fill each (intent, symbol, score); they must all be granted."""
    for intent, symbol, score in specs:
        assert only(core.handle(req(intent, symbol, score, t))).kind is K.GRANTED
        assert only(core.handle(fill(intent, symbol, t))).kind is K.FILLED


def test_grant_reserves_then_fill_opens() -> None:
    core = GovernorCore(CFG)
    d = only(core.handle(req("i1", "BTC", t=5)))
    assert (d.kind, d.decision_id, d.intent_id, d.symbol) == (K.GRANTED, "i1#0", "i1", "BTC")
    assert (d.open_after, d.reserved_after, d.active_slots, d.max_open_positions) == (0, 1, 4, 10)
    assert d.event_time_ms == 5 and d.deny_reason is None
    d = only(core.handle(fill("i1", "BTC", t=6)))
    assert (d.kind, d.open_after, d.reserved_after, d.score) == (K.FILLED, 1, 0, 0.6)
    assert core.handle(fill("i1", "BTC", t=7)) == []  # same command again: nothing
    assert core.handle(SlotFilled("other-cid", "i1", "BTC", 7)) == []  # already open: nothing


def test_duplicate_request_yields_nothing_and_duplicate_symbol_is_denied() -> None:
    core = GovernorCore(CFG)
    core.handle(req("i1", "BTC"))
    assert core.handle(req("i1", "BTC")) == []
    d = only(core.handle(req("i2", "BTC")))
    assert (d.kind, d.deny_reason) == (K.DENIED, DenyReason.DUPLICATE_SYMBOL)


def test_regime_slots_full_when_no_rotation_candidate_beats_threshold() -> None:
    core = GovernorCore(CFG)
    open_positions(core, [(f"i{n}", f"S{n}", 0.7) for n in range(4)])  # BASE: 4 slots
    d = only(core.handle(req("new", "NEW", score=0.8)))  # 0.8 - 0.7 < 0.15
    assert (d.kind, d.deny_reason) == (K.DENIED, DenyReason.REGIME_SLOTS_FULL)


def test_rotation_end_to_end_grants_only_after_the_release() -> None:
    core = GovernorCore(CFG)
    open_positions(core, [("a", "A", 0.70), ("b", "B", 0.60), ("c", "C", 0.65), ("d", "D", 0.9)])
    d = only(core.handle(req("new", "NEW", score=0.8, t=10)))
    assert d.kind is K.ROTATE_OUT
    assert (d.intent_id, d.symbol, d.score, d.for_intent_id) == ("b", "B", 0.60, "new")
    assert (d.open_after, d.reserved_after) == (4, 0)  # the waiting request holds nothing
    # a second strong request cannot start a parallel rotation (the audit's bug)
    d = only(core.handle(req("new2", "NEW2", score=0.99, t=11)))
    assert (d.kind, d.deny_reason) == (K.DENIED, DenyReason.ROTATION_PENDING)
    # a request for the waiting symbol is a duplicate
    d = only(core.handle(req("new3", "NEW", score=0.99, t=11)))
    assert d.deny_reason is DenyReason.DUPLICATE_SYMBOL
    released, granted = core.handle(release("b", "B", ReleaseReason.ROTATED_OUT, t=20))
    assert (released.kind, released.intent_id, released.open_after) == (K.RELEASED, "b", 3)
    assert released.release_reason is ReleaseReason.ROTATED_OUT
    assert (granted.kind, granted.intent_id, granted.decision_id) == (
        K.GRANTED,
        "new",
        "rel-b-20#1",
    )
    assert (granted.open_after, granted.reserved_after) == (3, 1)
    assert core.pending_rotation is None
    # the rotated-out symbol is cooling down
    d = only(core.handle(req("back", "B", score=0.99, t=21)))
    assert d.deny_reason is DenyReason.COOLDOWN


def test_rotation_ties_on_score_break_by_intent_id() -> None:
    core = GovernorCore(CFG)
    open_positions(core, [("z", "Z", 0.5), ("m", "M", 0.5), ("x", "X", 0.9), ("y", "Y", 0.9)])
    d = only(core.handle(req("new", "NEW", score=0.8)))
    assert (d.kind, d.intent_id) == (K.ROTATE_OUT, "m")


def test_rotation_served_by_another_freed_slot_and_the_old_close_still_frees_later() -> None:
    core = GovernorCore(CFG)
    open_positions(core, [("a", "A", 0.5), ("b", "B", 0.9), ("c", "C", 0.9), ("d", "D", 0.9)])
    assert only(core.handle(req("new", "NEW", score=0.8))).kind is K.ROTATE_OUT
    _, granted = core.handle(release("c", "C"))  # an unrelated exit frees a slot
    assert granted.kind is K.GRANTED and granted.intent_id == "new"
    assert core.occupied == 4
    d = only(core.handle(release("a", "A", ReleaseReason.ROTATED_OUT)))  # close lands later
    assert (d.kind, d.open_after + d.reserved_after) == (K.RELEASED, 3)


def test_rotation_timeout_denies_the_waiting_request_on_any_later_command() -> None:
    cfg = GovernorConfig(rotation_timeout_ms=1000)
    core = GovernorCore(cfg)
    open_positions(core, [("a", "A", 0.5), ("b", "B", 0.9), ("c", "C", 0.9), ("d", "D", 0.9)])
    assert only(core.handle(req("new", "NEW", score=0.8, t=100))).kind is K.ROTATE_OUT
    assert core.handle(Clock("tick-1", 1099)) == []
    d = only(core.handle(Clock("tick-2", 1100)))
    assert (d.kind, d.deny_reason, d.intent_id, d.command_id) == (
        K.DENIED,
        DenyReason.ROTATION_TIMEOUT,
        "new",
        "tick-2",
    )
    # the late release then just frees the slot; a new rotation may pick "a" again
    d = only(core.handle(release("a", "A", ReleaseReason.ROTATED_OUT, t=1200)))
    assert d.kind is K.RELEASED and core.pending_rotation is None


def test_halt_denies_new_requests_and_a_waiting_rotation_when_its_release_arrives() -> None:
    core = GovernorCore(CFG)
    open_positions(core, [("a", "A", 0.5), ("b", "B", 0.9), ("c", "C", 0.9), ("d", "D", 0.9)])
    assert only(core.handle(req("new", "NEW", score=0.8))).kind is K.ROTATE_OUT
    h = only(core.handle(Halt("h1", "drawdown", 5)))
    assert (h.kind, h.halted) == (K.HALTED, True)
    d = only(core.handle(req("x", "X", score=0.99, t=6)))
    assert d.deny_reason is DenyReason.HALTED
    released, denied = core.handle(release("a", "A", ReleaseReason.ROTATED_OUT, t=7))
    assert released.kind is K.RELEASED
    assert (denied.kind, denied.deny_reason, denied.intent_id) == (
        K.DENIED,
        DenyReason.HALTED,
        "new",
    )
    r = only(core.handle(Resume("r1", 8)))
    assert (r.kind, r.halted) == (K.RESUMED, False)
    assert only(core.handle(req("y", "Y", t=9))).kind is K.GRANTED


def test_halt_keeps_the_rotation_waiting_when_an_unrelated_slot_frees() -> None:
    core = GovernorCore(CFG)
    open_positions(core, [("a", "A", 0.5), ("b", "B", 0.9), ("c", "C", 0.9), ("d", "D", 0.9)])
    core.handle(req("new", "NEW", score=0.8))
    core.handle(Halt("h1", "ops", 1))
    assert only(core.handle(release("c", "C", t=2))).kind is K.RELEASED
    assert core.pending_rotation == ("new", "a")


def test_cooldown_only_after_a_real_close_and_ends_after_the_configured_time() -> None:
    core = GovernorCore(GovernorConfig(symbol_cooldown_ms=1000))
    open_positions(core, [("a", "A", 0.6)])
    core.handle(release("a", "A", ReleaseReason.POSITION_CLOSED, t=100))
    assert only(core.handle(req("a2", "A", t=1099))).deny_reason is DenyReason.COOLDOWN
    assert only(core.handle(req("a3", "A", t=1100))).kind is K.GRANTED
    # an order rejection is not a trade: no cooldown
    core.handle(release("a3", "A", ReleaseReason.ORDER_REJECTED, t=1101))
    assert only(core.handle(req("a4", "A", t=1102))).kind is K.GRANTED


def test_reservation_expires_before_the_command_and_carries_its_command_id() -> None:
    core = GovernorCore(GovernorConfig(reservation_ttl_ms=1000, active_slots_base=1))
    core.handle(req("i1", "BTC", t=0))
    assert only(core.handle(req("i2", "ETH", t=999))).deny_reason is DenyReason.REGIME_SLOTS_FULL
    expired, granted = core.handle(req("i3", "SOL", t=1000))
    assert (expired.kind, expired.intent_id, expired.decision_id) == (K.EXPIRED, "i1", "i3#0")
    assert (granted.kind, granted.intent_id, granted.decision_id) == (K.GRANTED, "i3", "i3#1")


def test_expiry_runs_even_for_a_duplicate_command() -> None:
    core = GovernorCore(GovernorConfig(reservation_ttl_ms=10))
    assert only(core.handle(req("i1", "BTC", t=0))).decision_id == "i1#0"
    d = only(core.handle(req("i1", "BTC", t=50)))  # the duplicate moves the clock
    # named apart from the original's i1#0, so decision ids stay unique downstream
    assert (d.kind, d.command_id, d.decision_id) == (K.EXPIRED, "i1", "i1#1.0")
    core.handle(req("i2", "ETH", t=50))
    assert core.handle(req("i1", "BTC", t=50)) == []  # nothing due: nothing at all
    assert only(core.handle(req("i1", "BTC", t=500))).decision_id == "i1#3.0"


def test_expiries_in_time_then_id_order_and_clock_never_moves_back() -> None:
    core = GovernorCore(GovernorConfig(reservation_ttl_ms=100))
    core.handle(req("c", "C", t=5))
    core.handle(req("b", "B", t=10))
    core.handle(req("a", "A", t=7))  # late event time: granted at the clock, 10
    assert core.handle(Clock("late", 3)) == [] and core.now_ms == 10
    ds = core.handle(Clock("t", 500))
    assert [d.intent_id for d in ds] == ["c", "a", "b"]
    assert [d.reserved_after for d in ds] == [2, 1, 0]


def test_late_fill_is_admitted_below_the_cap_and_rejected_at_it() -> None:
    core = GovernorCore(GovernorConfig(max_open_positions=2, reservation_ttl_ms=10))
    core.handle(req("i1", "BTC", t=0))
    assert only(core.handle(Clock("t", 20))).kind is K.EXPIRED
    d = only(core.handle(fill("i1", "BTC", t=21)))  # the expired order filled after all
    assert (d.kind, d.open_after, d.side, d.score) == (K.FILLED, 1, Side.LONG, 0.6)
    d = only(core.handle(SlotFilled("f2", "ghost", "ETH", 22)))  # unknown intent, room left
    assert (d.kind, d.open_after) == (K.FILLED, 2)
    d = only(core.handle(SlotFilled("f3", "ghost2", "SOL", 23)))  # at the cap
    assert (d.kind, d.intent_id, d.open_after) == (K.FILL_REJECTED, "ghost2", 2)


def test_release_by_symbol_and_second_release_is_ignored() -> None:
    core = GovernorCore(CFG)
    open_positions(core, [("a", "A", 0.6)])
    d = only(core.handle(release(None, "A", t=1, cid="r1")))
    assert (d.kind, d.intent_id, d.symbol) == (K.RELEASED, "a", "A")
    d = only(core.handle(release(None, "A", t=2, cid="r2")))
    assert (d.kind, d.intent_id, d.symbol) == (K.RELEASE_IGNORED, None, "A")
    d = only(core.handle(release("nope", "A", t=3, cid="r3")))
    assert d.kind is K.RELEASE_IGNORED and d.release_reason is ReleaseReason.POSITION_CLOSED


def test_regime_shrink_blocks_grants_and_limits_rotation_to_an_exact_fit() -> None:
    core = GovernorCore(CFG)
    core.handle(SetRegime("r1", Regime.TREND_STRONG, 0))
    open_positions(core, [(f"i{n}", f"S{n}", 0.5) for n in range(5)])
    d = only(core.handle(SetRegime("r2", Regime.CHOP, 1)))
    assert (d.kind, d.regime, d.active_slots) == (K.REGIME_CHANGED, Regime.CHOP, 3)
    d = only(core.handle(req("new", "NEW", score=0.99, t=2)))  # 5 > 3: no rotation
    assert d.deny_reason is DenyReason.REGIME_SLOTS_FULL
    core.handle(release("i0", "S0", t=3))
    core.handle(release("i1", "S1", t=4))
    d = only(core.handle(req("new2", "NEW2", score=0.99, t=5)))  # 3 == 3: rotate
    assert d.kind is K.ROTATE_OUT


def test_rotated_out_release_with_no_room_after_regime_shrink_denies() -> None:
    core = GovernorCore(CFG)
    open_positions(core, [("a", "A", 0.5), ("b", "B", 0.9), ("c", "C", 0.9), ("d", "D", 0.9)])
    core.handle(req("new", "NEW", score=0.8))
    core.handle(SetRegime("r", Regime.CHOP, 1))
    _, d = core.handle(release("a", "A", ReleaseReason.ROTATED_OUT, t=2))
    assert (d.kind, d.deny_reason) == (K.DENIED, DenyReason.REGIME_SLOTS_FULL)


def test_limit_full_at_the_hard_cap() -> None:
    cfg = GovernorConfig(max_open_positions=2, active_slots_base=6)
    core = GovernorCore(cfg)
    assert core.active_slots() == 2  # regime slots clipped to the cap
    open_positions(core, [("a", "A", 0.9), ("b", "B", 0.9)])
    d = only(core.handle(req("c", "C", score=0.95)))
    assert (d.kind, d.deny_reason) == (K.DENIED, DenyReason.LIMIT_FULL)


def test_snapshot_is_json_and_restores_to_identical_behaviour() -> None:
    cfg = GovernorConfig(reservation_ttl_ms=500)
    core = GovernorCore(cfg)
    open_positions(core, [("a", "A", 0.5), ("b", "B", 0.9), ("c", "C", 0.9)])
    core.handle(req("r", "R", score=0.7, t=1))  # reserved
    core.handle(req("w", "W", score=0.9, t=2))  # rotation pending
    core.handle(Halt("h", "x", 3))
    snap = json.loads(json.dumps(core.to_snapshot()))
    assert snap["v"] == 2
    twin = GovernorCore.from_snapshot(cfg, snap)
    tail = [Resume("res", 4), release("a", "A", t=5), Clock("c", 900), req("r", "R", t=901)]
    assert [core.handle(c) for c in tail] == [twin.handle(c) for c in tail]
    with pytest.raises(ValueError):
        GovernorCore.from_snapshot(cfg, {**snap, "v": 3})


def test_a_version_1_snapshot_restores_with_every_old_id_deduplicated() -> None:
    """What the core before the intent state machine wrote (commit 6d28e54)."""
    v1 = {
        "v": 1,
        "now_ms": 50,
        "regime": "BASE",
        "halted": False,
        "slots": [
            {
                "intent_id": "a",
                "symbol": "A",
                "side": "LONG",
                "notional": "100",
                "score": 0.5,
                "state": "OPEN",
                "granted_at": 0,
                "closing": True,
            },
            {
                "intent_id": "b",
                "symbol": "B",
                "side": "LONG",
                "notional": "100",
                "score": 0.9,
                "state": "OPEN",
                "granted_at": 0,
                "closing": False,
            },
            {
                "intent_id": "late",
                "symbol": "L",
                "side": None,
                "notional": None,
                "score": None,
                "state": "OPEN",
                "granted_at": 3,
                "closing": False,
            },
            {
                "intent_id": "r",
                "symbol": "R",
                "side": "SHORT",
                "notional": "7.5",
                "score": 0.9,
                "state": "RESERVED",
                "granted_at": 40,
                "closing": False,
            },
        ],
        "rotation": {
            "request": {
                "intent_id": "w",
                "symbol": "W",
                "side": "LONG",
                "notional": "1",
                "score": 0.9,
                "event_time_ms": 45,
            },
            "out_intent_id": "a",
            "started_at": 45,
        },
        "cooldown": [["C", 30]],
        "handled": ["a", "fill-a", "b", "fill-b", "fill-late", "r", "w", "clock-1"],
        "repeats": {"clock-1": 2},
    }
    core = GovernorCore.from_snapshot(CFG, json.loads(json.dumps(v1)))
    assert (core.open_count, core.reserved_count, core.pending_rotation) == (3, 1, ("w", "a"))
    assert core.slot_state("w") is SlotState.WAITING
    assert core.handle(Clock("clock-1", 60)) == []  # handled before: nothing
    assert core.handle(req("r", "R", t=61)) == []  # a request id, old: still a duplicate
    d = only(core.handle(req("c2", "C", t=62)))
    assert d.deny_reason is DenyReason.COOLDOWN
    released, granted = core.handle(release("a", "A", ReleaseReason.ROTATED_OUT, t=63))
    assert (released.kind, granted.kind, granted.intent_id) == (K.RELEASED, K.GRANTED, "w")
