"""Property tests: the governor's invariants over arbitrary command sequences.

Small symbol sets and small configs make collisions, full books, rotations, expiries
and late fills common. Profiles: `dev` (default, < 60 s on 2 cores) and `ci` (more
examples), chosen by the HYPOTHESIS_PROFILE environment variable (tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.governor.audit import audit_decisions
from agents.governor.config import GovernorConfig
from agents.governor.core import GovernorCore
from agents.governor.model import (
    FINAL_KINDS,
    Clock,
    Command,
    Decision,
    DecisionKind,
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
from quantum.errors import InvalidRecord

SYMBOLS = ("A", "B", "C", "D", "E")
FAR_FUTURE = 10**12

FOREVER = 10**15  # a memory horizon no scenario outlives: dedup and finals hold for the run


def configs(horizons: tuple[int, ...] = (FOREVER,)) -> st.SearchStrategy[GovernorConfig]:
    return st.builds(
        GovernorConfig,
        max_open_positions=st.integers(1, 5),
        active_slots_base=st.integers(0, 6),
        active_slots_trend_strong=st.integers(0, 6),
        active_slots_chop=st.integers(0, 6),
        rotation_threshold=st.sampled_from([0.0, 0.1, 0.15, 0.3]),
        rotation_timeout_ms=st.sampled_from([0, 5, 50, 500, 10_000]),
        reservation_ttl_ms=st.sampled_from([0, 5, 50, 500, 10_000]),
        symbol_cooldown_ms=st.sampled_from([0, 50, 500, 5000]),
        memory_horizon_ms=st.sampled_from(horizons),
    )


# Weighted by repetition: mostly requests and fills, so books fill up and rotate;
# resumes outnumber halts so the governor is not halted half of the time. `refill` and
# `reclose` re-send a fill or release of a recent intent under a new command id (a
# redelivery, or a late report overtaken by another); `duplicate` re-sends a command as is.
OPS = ("request",) * 5 + ("fill",) * 4 + ("release",) * 3 + ("refill", "reclose") * 2
OPS += ("regime", "halt", "resume", "resume", "clock", "duplicate")
# Mostly small steps (so TTLs, timeouts and cooldowns matter), now and then a huge jump.
STEPS = (0, 0, 1, 3, 10, 30, 100, 300, 1000, 10**7)
SCORES = (0.1, 0.3, 0.45, 0.5, 0.55, 0.6, 0.7, 0.9)  # differences of exactly 0.15 included


@st.composite
def scenarios(
    draw: st.DrawFn, horizons: tuple[int, ...] = (FOREVER,)
) -> tuple[GovernorConfig, list[Command], set[int]]:
    """A config, a command sequence, and the positions of exact duplicates in it.

    Fills and releases by intent name the intent's own symbol (a mismatch is poison, tested
    on its own); fills of unknown intents and releases by symbol pick any symbol."""
    cfg = draw(configs(horizons))
    n = draw(st.integers(1, 60))
    t = 0
    commands: list[Command] = []
    duplicates: set[int] = set()
    symbol_of: dict[str, str] = {}  # requested intent -> its symbol
    intents: list[str] = []
    for k in range(n):
        t += draw(st.sampled_from(STEPS))
        # sometimes an event from the past: the clock must not move back
        at = max(0, t - draw(st.sampled_from([0, 0, 0, 0, 7, 100, 5000])))
        op = draw(st.sampled_from(OPS))
        if op == "duplicate" and commands:
            duplicates.add(len(commands))
            commands.append(draw(st.sampled_from(commands)))
            continue
        if op in ("refill", "reclose") and not intents:
            op = "request"
        if op in ("request", "duplicate"):
            intent = f"i{k}"
            symbol = draw(st.sampled_from(SYMBOLS))
            intents.append(intent)
            symbol_of[intent] = symbol
            side = draw(st.sampled_from(list(Side)))
            cmd: Command = SlotRequest(
                intent, symbol, side, Decimal("10.5"), draw(st.sampled_from(SCORES)), at
            )
        elif op in ("fill", "refill"):
            known = op == "refill" or (intents and draw(st.integers(0, 3)) > 0)
            if known:
                intent = draw(st.sampled_from(intents[-6:]))
                cmd = SlotFilled(f"f{k}", intent, symbol_of[intent], at)
            else:
                cmd = SlotFilled(f"f{k}", f"u{k}", draw(st.sampled_from(SYMBOLS)), at)
        elif op in ("release", "reclose"):
            how = (
                "intent"
                if op == "reclose"
                else draw(st.sampled_from(["intent", "intent", "symbol", "unknown"]))
            )
            reason = draw(st.sampled_from(list(ReleaseReason)))
            if how == "intent" and intents:
                intent = draw(st.sampled_from(intents))
                cmd = SlotRelease(f"r{k}", symbol_of[intent], intent, reason, at)
            else:
                intent_id = f"u{k}" if how == "unknown" else None
                symbol = draw(st.sampled_from(SYMBOLS))
                cmd = SlotRelease(f"r{k}", symbol, intent_id, reason, at)
        elif op == "regime":
            cmd = SetRegime(f"g{k}", draw(st.sampled_from(list(Regime))), at)
        elif op == "halt":
            cmd = Halt(f"h{k}", "test", at)
        elif op == "resume":
            cmd = Resume(f"s{k}", at)
        else:
            cmd = Clock(f"c{k}", at)
        commands.append(cmd)
    return cfg, commands, duplicates


def check_book(core: GovernorCore) -> None:
    """The count is the lifecycle: held slots are exactly the RESERVED and OPEN intents,
    one per symbol, and a waiting request only waits while there is no room for it."""
    states = list(core.intent_states().values())
    assert core.open_count == states.count(SlotState.OPEN)
    assert core.reserved_count == states.count(SlotState.RESERVED)
    assert len(core.holders()) == core.occupied  # one slot per symbol
    assert states.count(SlotState.WAITING) == (core.pending_rotation is not None)
    if core.pending_rotation is not None:
        assert core.halted or core.occupied >= core.active_slots()


def run(cfg: GovernorConfig, commands: list[Command]) -> list[list[Decision]]:
    core = GovernorCore(cfg)
    return [core.handle(c) for c in commands]


def flat(per_command: list[list[Decision]]) -> list[Decision]:
    return [d for ds in per_command for d in ds]


def requested(commands: list[Command]) -> list[str]:
    return list(dict.fromkeys(c.intent_id for c in commands if isinstance(c, SlotRequest)))


@given(scenarios())
def test_invariants_hold_after_every_decision(
    scenario: tuple[GovernorConfig, list[Command], set[int]],
) -> None:
    cfg, commands, _ = scenario
    core = GovernorCore(cfg)
    finals: dict[str, Decision] = {}
    occupied_before = 0
    seen: dict[str, int] = {}  # command id -> times seen before
    decision_ids: set[str] = set()
    for cmd in commands:
        k = seen[cmd.command_id] = seen.get(cmd.command_id, -1) + 1
        prefix = f"{cmd.command_id}#" if k == 0 else f"{cmd.command_id}#{k}."
        for n, d in enumerate(core.handle(cmd)):
            assert d.decision_id == f"{prefix}{n}"
            assert d.decision_id not in decision_ids
            decision_ids.add(d.decision_id)
            assert d.command_id == cmd.command_id
            occupied = d.open_after + d.reserved_after
            assert occupied <= cfg.max_open_positions
            assert min(d.open_after, d.reserved_after) >= 0
            assert d.active_slots <= d.max_open_positions == cfg.max_open_positions
            if d.kind is DecisionKind.GRANTED:
                assert occupied - 1 == occupied_before < d.active_slots
                assert not d.halted
            if d.kind in FINAL_KINDS:
                assert d.intent_id not in finals, (d, finals.get(d.intent_id or ""))
                finals[d.intent_id or ""] = d
            occupied_before = occupied
        assert core.occupied == occupied_before
        assert core.occupied <= cfg.max_open_positions
        check_book(core)
    # the independent checker agrees (it recomputes occupancy from decision kinds)
    log = list(enumerate(flat(run(cfg, commands))))
    report = audit_decisions(log, max_open_positions=cfg.max_open_positions)
    assert report.ok, report.render()


@given(scenarios())
def test_every_request_gets_exactly_one_final_decision_by_a_far_future_clock(
    scenario: tuple[GovernorConfig, list[Command], set[int]],
) -> None:
    cfg, commands, _ = scenario
    commands = [*commands, Clock("the-end", FAR_FUTURE)]
    decisions = flat(run(cfg, commands))
    finals = [d.intent_id for d in decisions if d.kind in FINAL_KINDS]
    assert sorted(finals) == sorted(requested(commands))
    requests = [c for c in commands if isinstance(c, SlotRequest)]
    report = audit_decisions(enumerate(decisions), requests)
    assert report.ok and not report.missing_decisions, report.render()


@given(scenarios())
def test_a_duplicate_behaves_exactly_like_a_clock_tick_at_its_event_time(
    scenario: tuple[GovernorConfig, list[Command], set[int]],
) -> None:
    """Duplicates produce nothing of their own; only the expiries any command triggers."""
    cfg, commands, duplicates = scenario
    ticks = [
        Clock(f"dup-{k}", c.event_time_ms) if k in duplicates else c for k, c in enumerate(commands)
    ]

    def anonymous(ds: list[Decision]) -> list[Decision]:
        return [dataclasses.replace(d, decision_id="", command_id="") for d in ds]

    with_dups = [anonymous(ds) for ds in run(cfg, commands)]
    with_ticks = [anonymous(ds) for ds in run(cfg, ticks)]
    assert with_dups == with_ticks
    for k in duplicates:
        kinds = {d.kind for d in with_dups[k]}
        assert kinds <= {DecisionKind.EXPIRED, *FINAL_KINDS}


@given(scenarios(), st.data())
def test_snapshot_restore_at_any_point_continues_identically(
    scenario: tuple[GovernorConfig, list[Command], set[int]], data: st.DataObject
) -> None:
    cfg, commands, _ = scenario
    commands = [*commands, Clock("the-end", FAR_FUTURE)]
    split = data.draw(st.integers(0, len(commands)))
    whole = run(cfg, commands)
    first = GovernorCore(cfg)
    head = [first.handle(c) for c in commands[:split]]
    snapshot = json.loads(json.dumps(first.to_snapshot()))
    restored = GovernorCore.from_snapshot(cfg, snapshot)
    tail = [restored.handle(c) for c in commands[split:]]
    assert head + tail == whole
    assert (
        restored.to_snapshot()
        == GovernorCore.from_snapshot(cfg, restored.to_snapshot()).to_snapshot()
    )


@given(scenarios())
def test_two_runs_are_identical(scenario: tuple[GovernorConfig, list[Command], set[int]]) -> None:
    cfg, commands, _ = scenario
    assert run(cfg, commands) == run(cfg, commands)


@given(configs(), st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=40))
@settings(max_examples=100)
def test_a_burst_of_requests_never_grants_beyond_the_active_slots(
    cfg: GovernorConfig, symbols: list[str]
) -> None:
    """The audit's burst: many strong requests at once, no releases in between."""
    core = GovernorCore(cfg)
    for k, symbol in enumerate(symbols):
        core.handle(SlotRequest(f"i{k}", symbol, Side.LONG, Decimal(1), 0.99, 1000))
    assert core.occupied <= core.active_slots()


@given(scenarios(horizons=(0, 20, 300, 5000)), st.data())
def test_a_short_memory_keeps_the_book_true_and_the_state_bounded(
    scenario: tuple[GovernorConfig, list[Command], set[int]], data: st.DataObject
) -> None:
    """Horizons far shorter than the scenario: ids and ended intents are forgotten mid-run,
    so redeliveries after it count as new. The book must stay true all the same, restore
    identically from any point, and remember nothing older than the horizon."""
    cfg, commands, _ = scenario
    core = GovernorCore(cfg)
    split = data.draw(st.integers(0, len(commands)))
    whole = run(cfg, commands)
    got: list[list[Decision]] = []
    for n, cmd in enumerate(commands):
        if n == split:
            core = GovernorCore.from_snapshot(cfg, json.loads(json.dumps(core.to_snapshot())))
        got.append(core.handle(cmd))
        for d in got[-1]:
            assert d.open_after + d.reserved_after <= cfg.max_open_positions
        check_book(core)
        snap = core.to_snapshot()
        oldest = core.now_ms - cfg.memory_horizon_ms
        assert all(last >= oldest for _, _, _, last in snap["handled"])
        ended = [row for row in snap["intents"] if row[2] not in ("RESERVED", "OPEN", "WAITING")]
        assert all(since >= oldest for _, _, _, since, *_ in ended)
    assert got == whole


@given(scenarios(), st.data())
def test_a_fill_or_release_naming_another_symbol_is_poison_and_changes_nothing(
    scenario: tuple[GovernorConfig, list[Command], set[int]], data: st.DataObject
) -> None:
    cfg, commands, _ = scenario
    core = GovernorCore(cfg)
    for cmd in commands:
        core.handle(cmd)
    requests = [c for c in commands if isinstance(c, SlotRequest)]
    if not requests:
        return
    target = data.draw(st.sampled_from(requests))
    wrong = data.draw(st.sampled_from([s for s in SYMBOLS if s != target.symbol]))
    bad = data.draw(
        st.sampled_from(
            [
                SlotFilled("bad-fill", target.intent_id, wrong, FAR_FUTURE),
                SlotRelease("bad-rel", wrong, target.intent_id, ReleaseReason.ROTATED_OUT, 1),
            ]
        )
    )
    before = core.to_snapshot()
    with pytest.raises(InvalidRecord) as err:
        core.handle(bad)
    assert err.value.reason == "SYMBOL_MISMATCH"
    assert core.to_snapshot() == before
