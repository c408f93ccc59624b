"""The invariant checker passes an honest log and fails each kind of lie at the right offset.

The bad logs are built by hand, decision by decision, so each test states exactly
which offset breaks which rule; that is what proves the chaos test's checker can fail.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from agents.governor.audit import audit_decisions
from agents.governor.config import GovernorConfig
from agents.governor.core import GovernorCore
from agents.governor.model import (
    Clock,
    Decision,
    DecisionKind,
    DenyReason,
    Regime,
    ReleaseReason,
    SetRegime,
    Side,
    SlotFilled,
    SlotRelease,
    SlotRequest,
)

K = DecisionKind


def request(intent: str, symbol: str, score: float = 0.6, t: int = 0) -> SlotRequest:
    return SlotRequest(intent, symbol, Side.LONG, Decimal(10), score, t)


def decision(
    n: int,
    kind: DecisionKind,
    intent: str | None,
    open_after: int,
    reserved_after: int,
    *,
    active_slots: int = 10,
    max_open: int = 10,
    deny: DenyReason | None = None,
    halted: bool = False,
) -> Decision:
    return Decision(
        decision_id=f"c{n}#0",
        command_id=f"c{n}",
        kind=kind,
        event_time_ms=n,
        intent_id=intent,
        symbol=None if intent is None else f"S-{intent}",
        side=None,
        notional=None,
        score=None,
        deny_reason=deny,
        release_reason=None,
        for_intent_id=None,
        regime=Regime.BASE,
        halted=halted,
        open_after=open_after,
        reserved_after=reserved_after,
        active_slots=active_slots,
        max_open_positions=max_open,
    )


def grants(count: int, active_slots: int = 10) -> list[Decision]:
    """`count` honest grants, each reserving one more slot."""
    return [
        decision(n, K.GRANTED, f"i{n}", 0, n + 1, active_slots=active_slots) for n in range(count)
    ]


def governor_log() -> tuple[list[Decision], list[SlotRequest]]:
    cfg = GovernorConfig(reservation_ttl_ms=1000)
    core = GovernorCore(cfg)
    requests = [request(f"i{n}", f"S{n}", score=0.5 + n / 100, t=n) for n in range(6)]
    commands = [
        SetRegime("g", Regime.TREND_STRONG, 0),
        *requests[:4],
        SlotFilled("f0", "i0", "S0", 10),
        SlotFilled("f1", "i1", "S1", 10),
        SetRegime("g2", Regime.CHOP, 11),
        requests[4],
        Clock("tick", 5000),  # i2, i3 expire
        SlotFilled("f-late", "i2", "S2", 5001),  # late fill, admitted
        requests[5],
        SlotRelease("r", "S0", None, ReleaseReason.POSITION_CLOSED, 5002),
        SlotRelease("r2", "S0", None, ReleaseReason.POSITION_CLOSED, 5003),
        Clock("end", 10**9),
    ]
    return [d for c in commands for d in core.handle(c)], requests


def test_a_log_written_by_the_governor_passes() -> None:
    log, requests = governor_log()
    report = audit_decisions(enumerate(log), requests)
    assert report.ok, report.render()
    assert report.first_violation is None
    assert report.decisions == len(log)
    assert report.requests == 6 and report.missing_decisions == []
    assert report.grants + sum(report.denials.values()) == 6
    assert report.expiries >= 2 and report.fills == 3
    assert (report.releases, report.releases_ignored) == (1, 1)
    assert "OK" in report.render()


def test_an_eleventh_grant_at_max_ten_fails_at_its_offset() -> None:
    log = grants(10)
    log.append(decision(10, K.GRANTED, "i10", 0, 11, active_slots=11))  # claims slots 11
    report = audit_decisions(enumerate(log), max_open_positions=10)
    assert not report.ok
    assert report.first_violation is not None
    assert (report.first_violation.offset, report.first_violation.decision_id) == (10, "c10#0")
    assert "exceeds max_open_positions 10" in report.first_violation.message
    assert report.max_occupied == 11
    assert "VIOLATED" in report.render() and "offset 10" in report.render()


def test_a_second_grant_for_the_same_intent_is_a_duplicate_final() -> None:
    log = [*grants(2), decision(2, K.GRANTED, "i0", 0, 3)]
    report = audit_decisions(enumerate(log))
    assert not report.ok and report.first_violation is not None
    assert report.first_violation.offset == 2
    assert "second final decision" in report.first_violation.message
    assert report.duplicate_finals == ["i0"]


def test_a_grant_when_the_regime_slots_are_full() -> None:
    log = [*grants(4, active_slots=4), decision(4, K.GRANTED, "i4", 0, 5, active_slots=4)]
    report = audit_decisions(enumerate(log))
    assert not report.ok and report.first_violation is not None
    assert report.first_violation.offset == 4
    assert "occupancy 4 with 4 active slots" in report.first_violation.message


def test_claimed_counts_that_lie_are_caught() -> None:
    # the grant is real, but the governor claims the book is still empty
    log = [*grants(3), decision(3, K.GRANTED, "i3", 0, 3)]
    report = audit_decisions(enumerate(log))
    assert not report.ok and report.first_violation is not None
    assert report.first_violation.offset == 3
    assert "recomputed open=0 reserved=4" in report.first_violation.message


def test_a_fill_that_skips_the_count_is_caught_because_kinds_are_replayed() -> None:
    # offset 2 claims FILLED for an intent that was never granted but keeps the counts
    log = [*grants(2), decision(2, K.FILLED, "ghost", 0, 2)]
    report = audit_decisions(enumerate(log))
    assert report.first_violation is not None and report.first_violation.offset == 2


def test_the_first_violation_is_reported_and_counting_continues() -> None:
    log = [
        *grants(2, active_slots=1),  # offset 1 grants at occupancy 1 with 1 slot
        decision(2, K.DENIED, "x", 0, 2, deny=DenyReason.LIMIT_FULL),
        decision(3, K.GRANTED, "i0", 0, 3, active_slots=1),
    ]
    report = audit_decisions(enumerate(log, start=100))
    assert report.first_violation is not None and report.first_violation.offset == 101
    assert report.violations == 2
    assert report.denials == {"LIMIT_FULL": 1} and report.grants == 3


def test_a_request_without_a_final_decision_is_missing() -> None:
    log, requests = governor_log()
    extra = request("never-decided", "ZZZ")
    report = audit_decisions(enumerate(log), [*requests, extra, extra])
    assert not report.ok and report.missing_decisions == ["never-decided"]
    assert report.first_violation is not None and report.first_violation.offset is None
    assert report.requests == 7
    assert "missing final decisions: 1" in report.render()


def test_a_duplicated_decision_record_is_caught() -> None:
    log, _ = governor_log()
    replayed = [*log[:5], log[4], *log[5:]]  # the same record written twice
    report = audit_decisions(enumerate(replayed))
    assert report.first_violation is not None and report.first_violation.offset == 5


def test_a_grant_while_halted_and_a_silent_regime_change_are_caught() -> None:
    halted = [decision(0, K.GRANTED, "i0", 0, 1, halted=True)]
    assert audit_decisions(enumerate(halted)).first_violation is not None
    log = grants(2)
    log[1] = dataclasses.replace(log[1], regime=Regime.CHOP)
    report = audit_decisions(enumerate(log))
    assert report.first_violation is not None and report.first_violation.offset == 1
    assert "without a REGIME_CHANGED" in report.first_violation.message


def test_a_log_of_the_new_lifecycle_kinds_passes() -> None:
    """Late, overtaken and merged fills, withdrawn waits and a lower cap after a restart."""
    cfg = GovernorConfig(max_open_positions=3, active_slots_base=3, reservation_ttl_ms=100)
    core = GovernorCore(cfg)
    commands = [
        request("a", "A", 0.5),
        SlotFilled("fa", "a", "A", 1),
        request("b", "B", 0.9, t=2),
        SlotFilled("fb", "b", "B", 2),
        request("c", "C", 0.9, t=3),
        SlotFilled("fc", "c", "C", 3),
        request("w", "W", 0.9, t=4),  # rotates a out
        request("w2", "W2", 0.95, t=5),  # ROTATION_PENDING
        SlotRelease("rw", "W", "w", ReleaseReason.ORDER_REJECTED, 6),  # withdrawn
        SlotRelease("ra", "A", "a", ReleaseReason.ROTATED_OUT, 7),
        request("d", "D", 0.6, t=8),
        Clock("tick", 200),  # d expires
        request("d2", "D", 0.6, t=201),
        SlotFilled("fd", "d", "D", 202),  # late fill on a held symbol
        SlotRelease("rd2", "D", "d2", ReleaseReason.POSITION_CLOSED, 203),  # overtakes its fill
        SlotFilled("fd2", "d2", "D", 204),  # FILL_IGNORED
        SlotRelease("rb", "B", None, ReleaseReason.ORDER_REJECTED, 205),  # ignored: open
    ]
    log = [d for c in commands for d in core.handle(c)]
    lower = GovernorCore.from_snapshot(
        GovernorConfig(max_open_positions=1, active_slots_base=1), core.to_snapshot()
    )
    log += lower.handle(request("e", "E", 0.9, t=300))  # CONFIG_CHANGED, then LIMIT_FULL
    log += lower.handle(SlotRelease("rc", "C", "c", ReleaseReason.POSITION_CLOSED, 301))
    kinds = {d.kind for d in log}
    assert {K.FILL_SYMBOL_HELD, K.FILL_IGNORED, K.CONFIG_CHANGED, K.RELEASE_IGNORED} <= kinds
    report = audit_decisions(enumerate(log), max_open_positions=None)
    assert report.ok, report.render()
    assert (report.fills_symbol_held, report.fills_ignored, report.config_changes) == (1, 1, 1)
    assert report.denials["WITHDRAWN"] == 1 and report.denials["ROTATION_PENDING"] == 1


def test_two_slots_on_one_symbol_are_caught() -> None:
    log = grants(1)
    second = decision(1, K.GRANTED, "i1", 0, 2)
    log.append(dataclasses.replace(second, symbol="S-i0"))
    report = audit_decisions(enumerate(log))
    assert report.first_violation is not None and report.first_violation.offset == 1
    assert "takes S-i0, which i0 holds" in report.first_violation.message


def test_an_order_reason_that_frees_an_open_position_is_caught() -> None:
    log = [*grants(1), decision(1, K.FILLED, "i0", 1, 0)]
    freed = decision(2, K.RELEASED, "i0", 0, 0)
    log.append(dataclasses.replace(freed, release_reason=ReleaseReason.ORDER_REJECTED))
    report = audit_decisions(enumerate(log))
    assert report.first_violation is not None and report.first_violation.offset == 2
    assert "ORDER_REJECTED freed i0, an open position" in report.first_violation.message


def test_a_fill_ignored_or_called_held_that_is_not_is_caught() -> None:
    ignored = [*grants(1), decision(1, K.FILL_IGNORED, "i0", 0, 1)]  # i0 holds a slot
    report = audit_decisions(enumerate(ignored))
    assert report.first_violation is not None and report.first_violation.offset == 1
    held = [*grants(1), decision(1, K.FILL_SYMBOL_HELD, "x", 0, 1)]  # nobody holds S-x
    report = audit_decisions(enumerate(held))
    assert report.first_violation is not None and report.first_violation.offset == 1


def test_a_cap_lowered_without_config_changed_or_an_over_cap_book_growing_is_caught() -> None:
    log = grants(3)
    log.append(decision(3, K.DENIED, "x", 0, 3, max_open=2, deny=DenyReason.LIMIT_FULL))
    report = audit_decisions(enumerate(log))
    assert report.first_violation is not None and report.first_violation.offset == 3
    assert "without a CONFIG_CHANGED" in report.first_violation.message
    announced = [*grants(3), decision(3, K.CONFIG_CHANGED, None, 0, 3, max_open=2)]
    assert audit_decisions(enumerate(announced)).ok  # over the cap, but announced
    grown = [*announced, decision(4, K.FILLED, "late", 1, 3, max_open=2)]
    report = audit_decisions(enumerate(grown))
    assert report.first_violation is not None and report.first_violation.offset == 4
    assert "exceeds max_open_positions 2" in report.first_violation.message
