"""Re-check the slot invariant from a decisions log alone, trusting none of its counts.

The governor writes `open_after`/`reserved_after` on every decision; a checker that
read those back would only prove the governor agrees with itself. So this module
replays the decision *kinds* per intent (GRANTED -> reserved, FILLED -> open,
EXPIRED/RELEASED -> free; FILL_IGNORED, FILL_SYMBOL_HELD, FILL_REJECTED and
RELEASE_IGNORED change nothing) and compares its own occupancy with the limits and with
what the governor claimed, offset by offset. It also holds the log to one slot per
symbol, to release reasons that free only the state they refer to, and to a hard cap
that changes only with a CONFIG_CHANGED (after which an over-cap book may only shrink).
Pure: no Kafka, the caller supplies the log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from agents.governor.model import Decision, DecisionKind, ReleaseReason, SlotRequest

_RESERVED = "reserved"
_OPEN = "open"
_ORDER_REASONS = (ReleaseReason.ORDER_REJECTED, ReleaseReason.ORDER_EXPIRED)


@dataclass(frozen=True)
class Violation:
    offset: int | None  # None for a violation of the whole log (a missing decision)
    decision_id: str | None
    message: str


@dataclass
class AuditReport:
    ok: bool = True
    first_violation: Violation | None = None
    decisions: int = 0
    requests: int = 0
    grants: int = 0
    denials: dict[str, int] = field(default_factory=dict)
    rotations: int = 0
    expiries: int = 0
    releases: int = 0
    releases_ignored: int = 0
    fills: int = 0
    fills_rejected: int = 0
    fills_ignored: int = 0
    fills_symbol_held: int = 0
    config_changes: int = 0
    missing_decisions: list[str] = field(default_factory=list)
    duplicate_finals: list[str] = field(default_factory=list)
    max_occupied: int = 0
    violations: int = 0  # how many offsets broke a rule (only the first is detailed)

    def render(self) -> str:
        lines = [
            f"portfolio audit: {'OK' if self.ok else 'VIOLATED'}",
            f"  decisions      {self.decisions}",
            f"  requests       {self.requests}",
            f"  grants         {self.grants}",
            f"  denials        {sum(self.denials.values())}"
            + "".join(f"  {k}={v}" for k, v in sorted(self.denials.items())),
            f"  rotations      {self.rotations}",
            f"  fills          {self.fills} (rejected {self.fills_rejected}, "
            f"ignored {self.fills_ignored}, on a held symbol {self.fills_symbol_held})",
            f"  expiries       {self.expiries}",
            f"  releases       {self.releases} (ignored {self.releases_ignored})",
            f"  max occupied   {self.max_occupied}",
        ]
        if self.config_changes:
            lines.append(f"  config changes {self.config_changes}")
        if self.missing_decisions:
            shown = ", ".join(self.missing_decisions[:10])
            more = len(self.missing_decisions) - 10
            lines.append(
                f"  missing final decisions: {len(self.missing_decisions)}: {shown}"
                + (f" (+{more} more)" if more > 0 else "")
            )
        if self.duplicate_finals:
            lines.append(f"  intents with more than one final decision: {self.duplicate_finals}")
        v = self.first_violation
        if v is not None:
            where = "end of log" if v.offset is None else f"offset {v.offset} ({v.decision_id})"
            lines.append(f"  first violation at {where}: {v.message}")
            if self.violations > 1:
                lines.append(f"  ({self.violations} violations in all)")
        return "\n".join(lines)


def audit_decisions(
    decisions: Iterable[tuple[int, Decision]],
    requests: Iterable[SlotRequest] | None = None,
    max_open_positions: int | None = None,
) -> AuditReport:
    """Check every (offset, decision) in log order.

    `max_open_positions`, if given, is the limit to hold the log to; otherwise each
    decision's own `max_open_positions` is used (it is the configured cap, not a count),
    and it may change only with a CONFIG_CHANGED decision.
    """
    report = AuditReport()
    denials: Counter[str] = Counter()
    held: dict[str, str] = {}  # intent id -> _RESERVED | _OPEN, recomputed here
    holder: dict[str, str] = {}  # symbol -> the intent holding its one slot
    over_cap = 0  # occupancy a CONFIG_CHANGED left above a lowered cap; it may only shrink
    finals: dict[str, int] = {}  # intent id -> offset of its first final decision
    seen_ids: set[str] = set()
    prev: Decision | None = None

    def violate(offset: int | None, decision_id: str | None, message: str) -> None:
        report.violations += 1
        if report.ok:
            report.ok = False
            report.first_violation = Violation(offset, decision_id, message)

    for offset, d in decisions:
        report.decisions += 1
        problems: list[str] = []
        if d.decision_id in seen_ids:
            problems.append(f"decision id {d.decision_id} appears twice")
        seen_ids.add(d.decision_id)
        limit = d.max_open_positions if max_open_positions is None else max_open_positions
        if d.max_open_positions != limit:
            problems.append(
                f"decision claims max_open_positions={d.max_open_positions}, not {limit}"
            )
        if prev is not None:
            if (
                max_open_positions is None
                and d.max_open_positions != prev.max_open_positions
                and d.kind is not DecisionKind.CONFIG_CHANGED
            ):
                problems.append(
                    f"max_open_positions changed {prev.max_open_positions} -> "
                    f"{d.max_open_positions} without a CONFIG_CHANGED"
                )
            if d.regime != prev.regime and d.kind is not DecisionKind.REGIME_CHANGED:
                problems.append(f"regime changed to {d.regime} without a REGIME_CHANGED")
            if d.halted != prev.halted and d.kind not in (
                DecisionKind.HALTED,
                DecisionKind.RESUMED,
            ):
                problems.append("halted flag changed without HALTED/RESUMED")
        before = len(held)
        intent = d.intent_id
        kind = d.kind

        if kind in (DecisionKind.GRANTED, DecisionKind.DENIED) and intent is not None:
            if intent in finals:
                report.duplicate_finals.append(intent)
                problems.append(
                    f"second final decision ({kind}) for {intent}, first at offset {finals[intent]}"
                )
            else:
                finals[intent] = offset

        if kind is DecisionKind.GRANTED:
            report.grants += 1
            if intent is None or d.symbol is None:
                problems.append("GRANTED without an intent id or symbol")
            else:
                if d.halted:
                    problems.append(f"{intent} granted while halted")
                if before >= d.active_slots:
                    problems.append(
                        f"{intent} granted at occupancy {before} with {d.active_slots} active slots"
                    )
                if intent in held:
                    problems.append(f"{intent} granted while it already holds a slot")
                _take(held, holder, intent, d.symbol, _RESERVED, problems)
        elif kind is DecisionKind.DENIED:
            denials[str(d.deny_reason)] += 1
        elif kind is DecisionKind.ROTATE_OUT:
            report.rotations += 1
            if intent is None or held.get(intent) != _OPEN:
                problems.append(f"rotate-out of {intent}, which is not an open position")
        elif kind is DecisionKind.EXPIRED:
            report.expiries += 1
            if intent is None or held.get(intent) != _RESERVED:
                problems.append(f"{intent} expired but holds no reservation")
            else:
                _free(held, holder, intent)
        elif kind is DecisionKind.FILLED:
            report.fills += 1
            if intent is None or d.symbol is None or held.get(intent) == _OPEN:
                problems.append(f"{intent} filled but is already open (or names nothing)")
            else:
                # from reserved, or admitted straight to open
                _take(held, holder, intent, d.symbol, _OPEN, problems)
        elif kind is DecisionKind.FILL_REJECTED:
            report.fills_rejected += 1
            if before < limit:
                problems.append(f"fill of {intent} rejected at occupancy {before} below {limit}")
        elif kind is DecisionKind.FILL_IGNORED:
            report.fills_ignored += 1
            if intent is None or intent in held:
                problems.append(f"fill of {intent} ignored although it holds a slot")
        elif kind is DecisionKind.FILL_SYMBOL_HELD:
            report.fills_symbol_held += 1
            other = None if d.symbol is None else holder.get(d.symbol)
            if intent is None or intent in held or other is None or other == intent:
                problems.append(f"fill of {intent} on {d.symbol} called held, but {other} holds it")
        elif kind is DecisionKind.RELEASED:
            report.releases += 1
            if intent is None or intent not in held:
                problems.append(f"{intent} released but holds no slot")
            else:
                if d.release_reason in _ORDER_REASONS and held[intent] == _OPEN:
                    problems.append(f"{d.release_reason} freed {intent}, an open position")
                _free(held, holder, intent)
        elif kind is DecisionKind.RELEASE_IGNORED:
            report.releases_ignored += 1
            state = None if intent is None else held.get(intent)
            # By intent, a reservation yields to any reason, an open position to a close.
            if state == _RESERVED or (state == _OPEN and d.release_reason not in _ORDER_REASONS):
                problems.append(f"release of {intent} ignored although it frees its slot")
        elif kind is DecisionKind.CONFIG_CHANGED:
            report.config_changes += 1
            over_cap = before if before > limit else 0

        occupied = len(held)
        report.max_occupied = max(report.max_occupied, occupied)
        if occupied > limit and occupied > over_cap:
            problems.append(f"occupancy {occupied} exceeds max_open_positions {limit}")
        over_cap = min(over_cap, occupied)  # an over-cap book only shrinks back under
        opened = sum(1 for state in held.values() if state == _OPEN)
        if (d.open_after, d.reserved_after) != (opened, occupied - opened):
            problems.append(
                f"claims open={d.open_after} reserved={d.reserved_after}, "
                f"recomputed open={opened} reserved={occupied - opened}"
            )
        if problems:
            violate(offset, d.decision_id, "; ".join(problems))
        prev = d

    report.denials = dict(denials)
    if requests is None:
        report.requests = len(finals)
    else:
        wanted = list(dict.fromkeys(r.intent_id for r in requests))
        report.requests = len(wanted)
        report.missing_decisions = [i for i in wanted if i not in finals]
        if report.missing_decisions:
            n = len(report.missing_decisions)
            violate(None, None, f"{n} request(s) have no final decision")
    return report


def _take(
    held: dict[str, str],
    holder: dict[str, str],
    intent: str,
    symbol: str,
    state: str,
    problems: list[str],
) -> None:
    other = holder.get(symbol)
    if other is not None and other != intent:
        problems.append(f"{intent} takes {symbol}, which {other} holds")
    held[intent] = state
    holder[symbol] = intent


def _free(held: dict[str, str], holder: dict[str, str], intent: str) -> None:
    del held[intent]
    for symbol, who in list(holder.items()):
        if who == intent:
            del holder[symbol]
