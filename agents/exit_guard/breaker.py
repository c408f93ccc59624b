"""The account drawdown circuit breaker: equity curve in, governor `Halt` / `Resume` out.

Pure; the state is a handful of numbers (JSON-safe, one per account). While halted, the
governor denies every new entry and exits go on (exits need no slot): reduce-only mode.

Resume (docs/exits.md): by default only an operator resumes, by sending `Resume` to the
portfolio topic; the breaker reads it back (`on_resume`) and measures drawdown from the
equity at that moment, so it does not halt again at once for the loss the operator has
accepted. With `auto_resume_after_ms` set, the breaker sends `Resume` itself at the first
equity point that long after the halt, re-basing the peak the same way.

Command ids come from the equity point's event time (`breaker:halt:<ms>`), so a redelivered
point yields the same id and the governor, which ignores repeated command ids, halts once.
Several points may share an event time (every symbol's bar closes on the same minute, and
each moves the equity): each is evaluated; only an older point is ignored. Taking an equal
point again is harmless, since it changes nothing that the first did not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from agents.exit_guard.config import BreakerConfig
from agents.exits.model import dec, dstr
from agents.governor.model import Halt, Resume
from quantum.errors import InvalidRecord

SNAPSHOT_VERSION = 1
COMMAND_PREFIX = "breaker:"


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """Account equity (balance + unrealized PnL, quote asset) at an event time."""

    event_time_ms: int
    equity: Decimal


@dataclass(frozen=True, slots=True)
class BreakerState:
    peak: Decimal | None = None  # highest equity since start or the last resume
    last_equity: Decimal | None = None
    halted: bool = False
    halted_at_ms: int | None = None
    last_ms: int = -1  # event time of the last point taken in; older points are ignored
    halts: int = 0

    def drawdown(self) -> Decimal | None:
        """(peak - last equity) / peak, or None before a positive peak."""
        if self.peak is None or self.last_equity is None or self.peak <= 0:
            return None
        return (self.peak - self.last_equity) / self.peak

    def to_json(self) -> dict[str, Any]:
        return {
            "v": SNAPSHOT_VERSION,
            "peak": dstr(self.peak),
            "last_equity": dstr(self.last_equity),
            "halted": self.halted,
            "halted_at_ms": self.halted_at_ms,
            "last_ms": self.last_ms,
            "halts": self.halts,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BreakerState:
        if d.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"breaker state version {d.get('v')!r}, expected {SNAPSHOT_VERSION}")
        return cls(
            peak=dec(d["peak"]),
            last_equity=dec(d["last_equity"]),
            halted=bool(d["halted"]),
            halted_at_ms=d["halted_at_ms"],
            last_ms=int(d["last_ms"]),
            halts=int(d["halts"]),
        )


def on_equity(
    cfg: BreakerConfig, state: BreakerState, point: EquityPoint
) -> tuple[BreakerState, list[Halt | Resume]]:
    """Take one equity point: maybe `Halt` (drawdown >= max_drawdown_pct), maybe `Resume`
    (auto-resume due). A point older than the last one is a redelivery: no change."""
    eq = point.equity
    if not (isinstance(eq, Decimal) and eq.is_finite() and eq >= 0):
        raise InvalidRecord("INVALID_VALUE", f"equity must be a finite decimal >= 0, got {eq!r}")
    if not cfg.enabled or point.event_time_ms < state.last_ms:
        return state, []
    t = point.event_time_ms
    state = replace(state, last_equity=eq, last_ms=t)
    if state.halted:
        due = (
            cfg.auto_resume_after_ms is not None
            and state.halted_at_ms is not None
            and t - state.halted_at_ms >= cfg.auto_resume_after_ms
        )
        if not due:
            return state, []
        resumed = replace(state, halted=False, halted_at_ms=None, peak=eq)
        return resumed, [Resume(command_id=f"{COMMAND_PREFIX}resume:{t}", event_time_ms=t)]
    peak = eq if state.peak is None else max(state.peak, eq)
    state = replace(state, peak=peak)
    dd = state.drawdown()
    if dd is None or dd < cfg.max_drawdown_pct:
        return state, []
    halt = Halt(
        command_id=f"{COMMAND_PREFIX}halt:{t}",
        reason=(
            f"drawdown {dd * 100:.2f} % from peak {peak:f} to {eq:f} "
            f">= {cfg.max_drawdown_pct * 100:f} %"
        ),
        event_time_ms=t,
    )
    return replace(state, halted=True, halted_at_ms=t, halts=state.halts + 1), [halt]


def on_resume(state: BreakerState, resume: Resume) -> BreakerState:
    """A `Resume` seen on the portfolio topic. The breaker's own (id `breaker:...`) is
    already applied; an operator's lifts the halt and re-bases the peak on the last
    equity, so the loss the operator accepted does not halt again at once."""
    if resume.command_id.startswith(COMMAND_PREFIX) or not state.halted:
        return state
    return replace(state, halted=False, halted_at_ms=None, peak=state.last_equity)
