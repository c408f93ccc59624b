"""The reproductions of issue 7, one named test each: an intent's lifecycle, fair rotations,
bounded state and hostile time. Default config unless a test says otherwise (times in ms).

Each test failed on the core before the intent state machine (commit 6d28e54) and states
the rule of docs/governor.md it holds the core to.
"""

from __future__ import annotations

import json
import zlib
from decimal import Decimal

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from agents.governor.codec import COMMAND_SCHEMA, command_to_avro
from agents.governor.config import GovernorConfig
from agents.governor.core import GovernorCore
from agents.governor.io import decode_command
from agents.governor.model import (
    Clock,
    Command,
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
from quantum.errors import InvalidRecord, PoisonRecord
from quantum.serde import AvroSerde
from topologies.declaration import GOVERNOR_SNAPSHOTS, TOPOLOGY

K = DecisionKind
R = ReleaseReason
CFG = GovernorConfig()  # ttl 120 s, rotation timeout 120 s, cooldown 180 s, BASE 4 slots
COOLDOWN = CFG.symbol_cooldown_ms


def req(intent: str, symbol: str, score: float = 0.6, t: int = 0) -> SlotRequest:
    return SlotRequest(intent, symbol, Side.LONG, Decimal("100"), score, t)


def fill(intent: str, symbol: str, t: int = 0, cid: str | None = None) -> SlotFilled:
    return SlotFilled(cid or f"fill-{intent}-{t}", intent, symbol, t)


def release(
    intent: str | None, symbol: str, reason: R, t: int = 0, cid: str | None = None
) -> SlotRelease:
    return SlotRelease(cid or f"rel-{intent or symbol}-{reason}-{t}", symbol, intent, reason, t)


def only(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1, decisions
    return decisions[0]


def kinds(decisions: list[Decision]) -> list[tuple[DecisionKind, str | None]]:
    return [(d.kind, d.intent_id) for d in decisions]


def open_book(core: GovernorCore, specs: list[tuple[str, str, float]], t: int = 0) -> None:
    for intent, symbol, score in specs:
        assert only(core.handle(req(intent, symbol, score, t))).kind is K.GRANTED
        assert only(core.handle(fill(intent, symbol, t))).kind is K.FILLED


def rotation_book() -> GovernorCore:
    """BASE (4 slots), all open: a=.5 and b, c, d=.9; `w` (.9) waits on a's rotation."""
    core = GovernorCore(CFG)
    open_book(core, [("a", "A", 0.5), ("b", "B", 0.9), ("c", "C", 0.9), ("d", "D", 0.9)])
    d = only(core.handle(req("w", "W", 0.9, t=10)))
    assert (d.kind, d.intent_id, d.for_intent_id) == (K.ROTATE_OUT, "a", "w")
    return core


# ---- 1. the intent lifecycle ------------------------------------------------------------


def test_release_by_symbol_with_order_rejected_frees_the_reservation_not_a_late_position() -> None:
    core = GovernorCore(CFG)
    assert only(core.handle(req("i1", "BTC", t=0))).kind is K.GRANTED
    assert kinds(core.handle(Clock("c1", 120_000))) == [(K.EXPIRED, "i1")]
    assert only(core.handle(req("i2", "BTC", t=120_000))).kind is K.GRANTED
    late = only(core.handle(fill("i1", "BTC", t=120_001)))  # i1's order filled after all
    assert (late.kind, late.open_after, late.reserved_after) == (K.FILL_SYMBOL_HELD, 0, 1)
    d = only(core.handle(release(None, "BTC", R.ORDER_REJECTED, t=120_002)))
    assert (d.kind, d.intent_id, d.open_after, d.reserved_after) == (K.RELEASED, "i2", 0, 0)
    assert core.slot_state("i2") is SlotState.REJECTED


def test_release_reasons_free_only_the_state_they_refer_to() -> None:
    core = GovernorCore(CFG)
    open_book(core, [("a", "A", 0.6)])
    assert only(core.handle(req("b", "B", t=1))).kind is K.GRANTED  # reserved
    # an order reason never frees an open position, by symbol or by intent
    assert only(core.handle(release(None, "A", R.ORDER_REJECTED, t=2))).kind is K.RELEASE_IGNORED
    assert only(core.handle(release("a", "A", R.ORDER_EXPIRED, t=3))).kind is K.RELEASE_IGNORED
    # a position reason by symbol never frees a reservation
    assert only(core.handle(release(None, "B", R.POSITION_CLOSED, t=4))).kind is K.RELEASE_IGNORED
    assert only(core.handle(release(None, "B", R.ROTATED_OUT, t=5))).kind is K.RELEASE_IGNORED
    assert (core.open_count, core.reserved_count) == (1, 1)
    d = only(core.handle(release(None, "A", R.POSITION_CLOSED, t=6)))
    assert (d.kind, d.intent_id) == (K.RELEASED, "a")
    d = only(core.handle(release(None, "B", R.ORDER_EXPIRED, t=7)))
    assert (d.kind, d.intent_id) == (K.RELEASED, "b")
    assert core.slot_state("a") is SlotState.CLOSED
    assert core.slot_state("b") is SlotState.REJECTED


def test_a_stale_close_does_not_free_a_newer_position_on_the_same_symbol() -> None:
    core = GovernorCore(CFG)
    open_book(core, [("old", "BTC", 0.6)], t=0)
    d = only(core.handle(release(None, "BTC", R.POSITION_CLOSED, t=10, cid="close-1")))
    assert (d.kind, d.intent_id) == (K.RELEASED, "old")
    t = 10 + COOLDOWN
    open_book(core, [("new", "BTC", 0.6)], t=t)
    # the outside source re-sends its close: same event, new command id
    retry = only(core.handle(release(None, "BTC", R.POSITION_CLOSED, t=10, cid="close-1-retry")))
    assert retry.kind is K.RELEASE_IGNORED
    # the project's own releases carry the intent id: the old intent is CLOSED
    by_intent = only(core.handle(release("old", "BTC", R.POSITION_CLOSED, t=t + 1, cid="c-2")))
    assert by_intent.kind is K.RELEASE_IGNORED
    assert core.slot_state("new") is SlotState.OPEN and core.open_count == 1


def test_a_fill_after_its_close_or_rejection_is_recorded_and_changes_nothing() -> None:
    core = GovernorCore(GovernorConfig(max_open_positions=2))
    for n in range(2):
        assert only(core.handle(req(f"i{n}", f"S{n}", t=n))).kind is K.GRANTED
        # the close overtakes the fill (two producers, two paths)
        d = only(core.handle(release(f"i{n}", f"S{n}", R.POSITION_CLOSED, t=n)))
        assert (d.kind, d.open_after + d.reserved_after) == (K.RELEASED, 0)
        d = only(core.handle(fill(f"i{n}", f"S{n}", t=n)))
        assert (d.kind, d.open_after, d.reserved_after) == (K.FILL_IGNORED, 0, 0)
        assert core.slot_state(f"i{n}") is SlotState.CLOSED
    assert only(core.handle(req("x", "X", score=0.99, t=5))).kind is K.GRANTED
    # the same after an order rejection
    core.handle(release("x", "X", R.ORDER_REJECTED, t=6))
    assert only(core.handle(fill("x", "X", t=7))).kind is K.FILL_IGNORED
    assert core.occupied == 0


def test_a_late_fill_for_an_expired_intent_is_admitted_under_the_cap_else_rejected() -> None:
    core = GovernorCore(GovernorConfig(max_open_positions=2, reservation_ttl_ms=10))
    core.handle(req("i1", "BTC", t=0))
    assert only(core.handle(Clock("t", 20))).kind is K.EXPIRED
    assert core.slot_state("i1") is SlotState.EXPIRED
    d = only(core.handle(fill("i1", "BTC", t=21)))
    assert (d.kind, d.open_after, d.score) == (K.FILLED, 1, 0.6)
    d = only(core.handle(SlotFilled("f2", "ghost", "ETH", 22)))  # unknown intent, room left
    assert (d.kind, d.open_after) == (K.FILLED, 2)
    d = only(core.handle(SlotFilled("f3", "ghost2", "SOL", 23)))  # at the cap
    assert (d.kind, d.intent_id, d.open_after) == (K.FILL_REJECTED, "ghost2", 2)
    assert core.slot_state("ghost2") is SlotState.REJECTED
    # its redelivery with a new command id, after room appeared, is still no position
    core.handle(release("ghost", "ETH", R.POSITION_CLOSED, t=24))
    assert only(core.handle(SlotFilled("f3-again", "ghost2", "SOL", 25))).kind is K.FILL_IGNORED


def test_one_slot_per_symbol_a_late_fill_on_a_held_symbol_opens_no_second_slot() -> None:
    core = GovernorCore(CFG)
    core.handle(req("i1", "BTC", t=0))
    core.handle(Clock("c1", 120_000))  # i1 expires
    open_book(core, [("i2", "BTC", 0.6)], t=120_000)
    d = only(core.handle(fill("i1", "BTC", t=120_001)))  # the exchange merged it into i2's
    assert (d.kind, d.intent_id, d.symbol, d.open_after) == (K.FILL_SYMBOL_HELD, "i1", "BTC", 1)
    d = only(core.handle(release(None, "BTC", R.POSITION_CLOSED, t=120_002)))
    assert (d.kind, d.intent_id, d.open_after) == (K.RELEASED, "i2", 0)
    d = only(core.handle(req("i3", "BTC", t=120_002 + COOLDOWN)))
    assert d.kind is K.GRANTED  # the symbol is free again, not DUPLICATE_SYMBOL forever


def test_terminal_states_recognise_redeliveries_until_the_horizon() -> None:
    cfg = GovernorConfig(memory_horizon_ms=1_000_000)
    core = GovernorCore(cfg)
    open_book(core, [("a", "A", 0.6)], t=0)
    core.handle(release("a", "A", R.POSITION_CLOSED, t=10, cid="close-a"))
    # redelivered with new command ids: recognised, nothing changes
    assert only(core.handle(fill("a", "A", t=20, cid="fill-a-again"))).kind is K.FILL_IGNORED
    d = only(core.handle(release("a", "A", R.POSITION_CLOSED, t=30, cid="close-a-again")))
    assert d.kind is K.RELEASE_IGNORED
    assert core.slot_state("a") is SlotState.CLOSED
    # a horizon after it ended, the intent is forgotten: a fill for it is a new position
    core.handle(Clock("later", 10 + 1_000_001))
    assert core.slot_state("a") is None
    assert only(core.handle(fill("a", "A", t=10 + 1_000_002, cid="f3"))).kind is K.FILLED


def test_every_intent_moves_through_the_slot_state_machine() -> None:
    core = GovernorCore(GovernorConfig(reservation_ttl_ms=100))
    open_book(core, [("a", "A", 0.5), ("b", "B", 0.9), ("c", "C", 0.9)])
    assert core.slot_state("a") is SlotState.OPEN
    core.handle(req("r", "R", t=1))
    assert core.slot_state("r") is SlotState.RESERVED
    core.handle(req("w", "W", score=0.9, t=2))  # full: rotates a out
    assert core.slot_state("w") is SlotState.WAITING
    core.handle(req("x", "A", t=3))
    assert core.slot_state("x") is SlotState.DENIED
    core.handle(Clock("tick", 101))
    assert core.slot_state("r") is SlotState.EXPIRED
    assert core.slot_state("w") is SlotState.RESERVED  # r's freed slot served the waiter
    core.handle(release("w", "W", R.ORDER_REJECTED, t=102))
    assert core.slot_state("w") is SlotState.REJECTED
    core.handle(release("a", "A", R.ROTATED_OUT, t=103))
    assert core.slot_state("a") is SlotState.CLOSED
    assert core.intent_states() == {
        "a": SlotState.CLOSED,
        "b": SlotState.OPEN,
        "c": SlotState.OPEN,
        "r": SlotState.EXPIRED,
        "w": SlotState.REJECTED,
        "x": SlotState.DENIED,
    }


def test_a_fill_or_release_naming_another_symbol_than_its_intent_is_poison() -> None:
    core = GovernorCore(CFG)
    open_book(core, [("a", "BTC", 0.6)])
    before = core.to_snapshot()
    with pytest.raises(InvalidRecord) as err:
        core.handle(SlotFilled("f-x", "a", "ETH", 10**9))
    assert err.value.reason == "SYMBOL_MISMATCH"
    with pytest.raises(InvalidRecord):
        core.handle(release("a", "ETH", R.POSITION_CLOSED, t=10**9))
    assert core.to_snapshot() == before  # not even the clock moved


# ---- 2. fair rotations ------------------------------------------------------------------


def test_a_waiting_request_is_served_first_when_the_regime_widens() -> None:
    core = rotation_book()
    ds = core.handle(SetRegime("g", Regime.TREND_STRONG, 20))
    assert kinds(ds) == [(K.REGIME_CHANGED, None), (K.GRANTED, "w")]
    assert core.pending_rotation is None
    d = only(core.handle(req("x", "X", score=0.1, t=21)))
    assert (d.kind, d.reserved_after + d.open_after) == (K.GRANTED, 6)  # after w, not ahead
    assert core.handle(Clock("c", 120_010)) == []  # no ROTATION_TIMEOUT: w was served


def test_a_waiting_request_is_served_first_on_resume_after_an_unrelated_release() -> None:
    core = rotation_book()
    core.handle(Halt("h", "ops", 11))
    assert kinds(core.handle(release("c", "C", R.POSITION_CLOSED, t=12))) == [(K.RELEASED, "c")]
    assert core.pending_rotation == ("w", "a")  # halted: it keeps waiting
    ds = core.handle(Resume("r", 13))
    assert kinds(ds) == [(K.RESUMED, None), (K.GRANTED, "w")]
    d = only(core.handle(req("x", "X", score=0.1, t=14)))
    assert (d.kind, d.deny_reason) == (K.DENIED, DenyReason.REGIME_SLOTS_FULL)
    # no ROTATION_TIMEOUT at 120 010: w was served; its reservation expires 120 s after it
    assert core.handle(Clock("c", 120_010)) == []
    assert kinds(core.handle(Clock("c2", 120_013))) == [(K.EXPIRED, "w")]


def test_a_second_strong_request_during_a_rotation_is_denied_rotation_pending() -> None:
    core = rotation_book()
    d = only(core.handle(req("w2", "W2", score=0.99, t=11)))
    assert (d.kind, d.deny_reason) == (K.DENIED, DenyReason.ROTATION_PENDING)
    d = only(core.handle(req("weak", "WK", score=0.5, t=12)))  # could never rotate
    assert (d.kind, d.deny_reason) == (K.DENIED, DenyReason.REGIME_SLOTS_FULL)


def test_a_waiting_request_is_withdrawn_by_a_release_of_its_intent() -> None:
    core = rotation_book()
    d = only(core.handle(release("w", "W", R.ORDER_REJECTED, t=11)))
    assert (d.kind, d.intent_id, d.deny_reason) == (K.DENIED, "w", DenyReason.WITHDRAWN)
    assert core.pending_rotation is None and core.slot_state("w") is SlotState.DENIED
    # the rotated-out position's close still frees its slot, and nobody is granted for w
    d = only(core.handle(release("a", "A", R.ROTATED_OUT, t=12)))
    assert (d.kind, d.open_after) == (K.RELEASED, 3)


def test_a_waiting_request_is_not_granted_on_a_symbol_that_just_closed() -> None:
    core = rotation_book()
    # a late fill takes the waiting symbol, and that position closes again at once
    assert (K.FILLED, "u") in kinds(core.handle(SlotFilled("f-u", "u", "W", 11)))
    core.handle(release("u", "W", R.POSITION_CLOSED, t=12))
    ds = core.handle(release("a", "A", R.ROTATED_OUT, t=13))  # 1 ms later the rotation ends
    assert (K.GRANTED, "w") not in kinds(ds)
    assert core.slot_state("w") is SlotState.DENIED


def test_the_rotated_out_mark_clears_when_the_rotation_ends_by_any_path() -> None:
    core = rotation_book()
    assert kinds(core.handle(release("c", "C", R.POSITION_CLOSED, t=11))) == [
        (K.RELEASED, "c"),
        (K.GRANTED, "w"),
    ]
    core.handle(fill("w", "W", t=12))
    # `a` is still open (its close has not landed): a new rotation may pick it again
    d = only(core.handle(req("y", "Y", score=0.9, t=13)))
    assert (d.kind, d.intent_id, d.for_intent_id) == (K.ROTATE_OUT, "a", "y")


def test_the_rotation_threshold_is_compared_exactly() -> None:
    for weak, strong in ((0.55, 0.70), (0.65, 0.80), (0.15, 0.30)):
        core = GovernorCore(CFG)
        open_book(core, [("a", "A", weak), ("b", "B", 0.9), ("c", "C", 0.9), ("d", "D", 0.9)])
        d = only(core.handle(req("w", "W", score=strong, t=1)))
        assert (d.kind, d.intent_id) == (K.ROTATE_OUT, "a"), (weak, strong)
    core = GovernorCore(CFG)
    open_book(core, [("a", "A", 0.55), ("b", "B", 0.9), ("c", "C", 0.9), ("d", "D", 0.9)])
    d = only(core.handle(req("w", "W", score=0.6999999, t=1)))
    assert d.deny_reason is DenyReason.REGIME_SLOTS_FULL


# ---- 3. bounded state and hostile time --------------------------------------------------

SERDE = AvroSerde(SchemaRegistryClient.new_client({"url": "mock://governor-lifecycle"}))
NOW = 1_764_000_000_000  # a record timestamp


def _wire(command: Command) -> bytes:
    return SERDE.encode("p", command_to_avro(command), schema_file=COMMAND_SCHEMA)


def test_an_event_time_far_ahead_of_the_record_timestamp_is_poison() -> None:
    micro = SlotRequest("i1", "BTCUSDT", Side.LONG, Decimal(1), 0.5, NOW * 1000)
    with pytest.raises(InvalidRecord) as err:
        decode_command(SERDE, "p", _wire(micro), record_timestamp_ms=NOW, max_event_skew_ms=300_000)
    assert err.value.reason == "EVENT_TIME_SKEW" and "ahead" in str(err.value)
    ok = Clock("c", NOW + 300_000)  # exactly at the limit: fine
    assert decode_command(SERDE, "p", _wire(ok), record_timestamp_ms=NOW, max_event_skew_ms=300_000)
    behind = Clock("c", NOW - 10**9)  # replays carry old event time: fine
    assert decode_command(
        SERDE, "p", _wire(behind), record_timestamp_ms=NOW, max_event_skew_ms=300_000
    )


@pytest.mark.parametrize(
    "command",
    [
        SlotRequest("", "BTCUSDT", Side.LONG, Decimal(1), 0.5, NOW),
        SlotRequest("  ", "BTCUSDT", Side.LONG, Decimal(1), 0.5, NOW),
        SlotFilled("", "i1", "BTCUSDT", NOW),
        SlotFilled("f1", " \t", "BTCUSDT", NOW),
        SlotRelease("r1", "BTCUSDT", "", ReleaseReason.POSITION_CLOSED, NOW),
        SlotRelease(" ", "BTCUSDT", None, ReleaseReason.POSITION_CLOSED, NOW),
        Clock("", NOW),
        Halt("", "x", NOW),
    ],
    ids=lambda c: type(c).__name__,
)
def test_empty_or_blank_ids_are_poison(command: Command) -> None:
    with pytest.raises(PoisonRecord) as err:
        decode_command(SERDE, "p", _wire(command))
    assert err.value.reason == "EMPTY_ID"
    core = GovernorCore(CFG)
    with pytest.raises(InvalidRecord):
        core.handle(command)
    assert core.now_ms == 0 and core.to_snapshot() == GovernorCore(CFG).to_snapshot()


def test_dedup_is_namespaced_per_command_kind() -> None:
    core = GovernorCore(GovernorConfig(reservation_ttl_ms=100))
    core.handle(req("early", "E", t=0))
    assert kinds(core.handle(Clock("clock:1000", 1000))) == [(K.EXPIRED, "early")]
    d = only(core.handle(req("clock:1000", "BTC", t=1000)))
    assert (d.kind, d.intent_id) == (K.GRANTED, "clock:1000")
    assert d.decision_id == "clock:1000#1.0"  # named apart from the Clock's clock:1000#0
    assert core.handle(req("clock:1000", "BTC", t=1001)) == []  # its own repeat: nothing


def test_handled_ids_and_ended_intents_are_forgotten_after_the_horizon() -> None:
    core = GovernorCore(GovernorConfig(memory_horizon_ms=1000, symbol_cooldown_ms=0))
    for n in range(50):
        t = n * 100
        core.handle(req(f"i{n}", f"S{n % 7}", t=t))
        core.handle(fill(f"i{n}", f"S{n % 7}", t=t))
        core.handle(release(f"i{n}", f"S{n % 7}", R.POSITION_CLOSED, t=t))
        core.handle(Clock(f"c{n}", t))
    snap = core.to_snapshot()
    # 1000 ms at 100 ms per round: about 11 rounds of ids are remembered, not 50
    assert len(snap["handled"]) <= 4 * 11
    assert len(snap["intents"]) <= 11
    assert core.slot_state("i0") is None and core.slot_state("i49") is SlotState.CLOSED
    assert core.handle(req("i49", "S0", t=4900)) == []  # within the horizon: a duplicate


def test_a_million_commands_keep_the_snapshot_under_a_fixed_size() -> None:
    """Event time spread as in production (a command every 2.6 s: 1M in a month); the
    snapshot holds one horizon (24 h) of ids, so its size stops growing after a day."""
    limit = TOPOLOGY.topic(GOVERNOR_SNAPSHOTS).max_message_bytes
    assert limit is not None
    core = GovernorCore(CFG)
    step = 2_600
    sizes = []
    t = 1_767_225_600_000  # 2026-01-01: every timestamp has 13 digits
    symbols = [f"S{n:02d}USDT" for n in range(40)]
    n = 0
    while n < 1_000_000:
        sym = symbols[(n // 4) % 40]  # a symbol comes back after 416 s: past its cooldown
        intent = f"intent-{n:07d}"
        core.handle(SlotRequest(intent, sym, Side.LONG, Decimal("125.5"), 0.5, t))
        core.handle(SlotFilled(f"fill-{n:07d}", intent, sym, t + 1))
        core.handle(SlotRelease(f"close-{n:07d}", sym, intent, R.POSITION_CLOSED, t + 2))
        core.handle(Clock(f"clock-{n:07d}", t + 3))
        n += 4
        t += 4 * step
        if n % 100_000 == 0:
            raw = json.dumps(core.to_snapshot(), separators=(",", ":")).encode()
            sizes.append((len(raw), len(zlib.compress(raw, 1))))
    assert core.occupied == 0
    raw_sizes = [s for s, _ in sizes]
    # after the first horizon the size is flat (same count of ids within 24 h)
    assert max(raw_sizes[2:]) <= 1.01 * min(raw_sizes[2:]), raw_sizes
    assert max(raw_sizes) < 4 * 1024 * 1024, raw_sizes
    assert max(z for _, z in sizes) < limit / 4, sizes


def test_restore_with_a_lower_cap_starts_denies_new_entries_and_says_so_once() -> None:
    core = GovernorCore(GovernorConfig(active_slots_base=10))
    open_book(core, [(f"i{n}", f"S{n}", 0.5) for n in range(10)])
    lower = GovernorConfig(max_open_positions=8, active_slots_base=10)
    restored = GovernorCore.from_snapshot(lower, json.loads(json.dumps(core.to_snapshot())))
    notice, denied = restored.handle(req("x", "X", score=0.99, t=1))
    assert notice.kind is K.CONFIG_CHANGED
    assert (notice.open_after, notice.max_open_positions, notice.active_slots) == (10, 8, 8)
    assert (denied.kind, denied.deny_reason) == (K.DENIED, DenyReason.LIMIT_FULL)
    assert only(restored.handle(SlotFilled("late", "late", "L", 2))).kind is K.FILL_REJECTED
    for n in range(3):  # 10 -> 7: below the cap again
        d = only(restored.handle(release(f"i{n}", f"S{n}", R.POSITION_CLOSED, t=3)))
        assert d.kind is K.RELEASED
    assert only(restored.handle(req("y", "Y", t=4))).kind is K.GRANTED
    # said once: a snapshot of the restored core carries no pending notice
    again = GovernorCore.from_snapshot(lower, restored.to_snapshot())
    assert only(again.handle(req("z", "Z", t=5))).kind is K.DENIED
