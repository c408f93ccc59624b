"""The governor's pure decision core: (config, commands so far) -> decisions.

No I/O, no wall clock, no randomness: event time arrives in the commands, so a replay
of the portfolio topic yields the same decisions, and the Kafka shell can snapshot the
state with its offsets in one transaction. The semantics are written out in
docs/governor.md; the invariant (open + reserved <= max_open_positions, grants only
below the active slots, one final decision per intent) is what the property tests and
`agents.governor.audit` check.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agents.governor.config import GovernorConfig
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
)

SNAPSHOT_VERSION = 1

RESERVED = "RESERVED"
OPEN = "OPEN"

# Releases that mean "the position was really traded out", so re-entry waits.
_COOLDOWN_REASONS = frozenset({ReleaseReason.POSITION_CLOSED, ReleaseReason.ROTATED_OUT})


@dataclass(slots=True)
class _Slot:
    """One occupied slot. Late-admitted positions (fill with no reservation) know no
    side, notional or score; with no score they are never picked for rotation."""

    intent_id: str
    symbol: str
    side: Side | None
    notional: Decimal | None
    score: float | None
    state: str  # RESERVED | OPEN
    granted_at: int
    closing: bool = False  # a ROTATE_OUT for it is in flight


@dataclass(slots=True)
class _Rotation:
    """The one request waiting for a rotated-out position's slot."""

    request: SlotRequest
    out_intent_id: str
    started_at: int


class GovernorCore:
    """Mutable for speed; every observable behaviour is a function of the inputs."""

    def __init__(self, config: GovernorConfig) -> None:
        self._cfg = config
        self._slots_by_regime = {
            Regime.BASE: config.active_slots_base,
            Regime.TREND_STRONG: config.active_slots_trend_strong,
            Regime.CHOP: config.active_slots_chop,
        }
        self._now = 0
        self._regime = Regime.BASE
        self._halted = False
        self._slots: dict[str, _Slot] = {}  # by intent id, insertion ordered
        self._open = 0
        self._reserved = 0
        self._rotation: _Rotation | None = None
        self._cooldown: dict[str, int] = {}  # symbol -> released_at
        self._handled: dict[str, None] = {}  # ordered set of handled command ids
        self._repeats: dict[str, int] = {}  # command id -> times seen again
        # per-command scratch
        self._out: list[Decision] = []
        self._cmd_id = ""
        self._id_prefix = ""

    # ---- read-only views -------------------------------------------------------------

    @property
    def config(self) -> GovernorConfig:
        return self._cfg

    @property
    def open_count(self) -> int:
        return self._open

    @property
    def reserved_count(self) -> int:
        return self._reserved

    @property
    def occupied(self) -> int:
        return self._open + self._reserved

    @property
    def regime(self) -> Regime:
        return self._regime

    @property
    def halted(self) -> bool:
        return self._halted

    @property
    def now_ms(self) -> int:
        return self._now

    @property
    def pending_rotation(self) -> tuple[str, str] | None:
        """(waiting intent id, rotated-out intent id), or None."""
        r = self._rotation
        return None if r is None else (r.request.intent_id, r.out_intent_id)

    def active_slots(self) -> int:
        return min(self._slots_by_regime[self._regime], self._cfg.max_open_positions)

    def has_handled(self, command_id: str) -> bool:
        return command_id in self._handled

    # ---- the one entry point ---------------------------------------------------------

    def handle(self, command: Command) -> list[Decision]:
        self._out = out = []
        cid = self._cmd_id = command.command_id
        if command.event_time_ms > self._now:
            self._now = command.event_time_ms
        if cid in self._handled:
            # A repeat can still trigger expiries; name them apart from the original's
            # decisions (`cid#k.n` for the k-th repeat) so decision ids stay unique.
            k = self._repeats[cid] = self._repeats.get(cid, 0) + 1
            self._id_prefix = f"{cid}#{k}."
            self._expire()
            return out
        self._id_prefix = f"{cid}#"
        self._expire()
        self._handled[cid] = None
        if isinstance(command, SlotRequest):
            self._request(command)
        elif isinstance(command, SlotFilled):
            self._filled(command)
        elif isinstance(command, SlotRelease):
            self._release(command)
        elif isinstance(command, SetRegime):
            self._regime = command.regime
            self._emit(DecisionKind.REGIME_CHANGED)
        elif isinstance(command, Halt):
            self._halted = True
            self._emit(DecisionKind.HALTED)
        elif isinstance(command, Resume):
            self._halted = False
            self._emit(DecisionKind.RESUMED)
        elif isinstance(command, Clock):
            pass
        else:  # pragma: no cover - the Command union is closed
            raise TypeError(f"not a governor command: {command!r}")
        return out

    # ---- rules -------------------------------------------------------------------------

    def _expire(self) -> None:
        """Reservations past their TTL and rotation waits past their timeout, in
        (due time, id) order so the result never depends on dict order."""
        now = self._now
        ttl = self._cfg.reservation_ttl_ms
        due: list[tuple[int, str, int]] = [
            (s.granted_at + ttl, s.intent_id, 0)
            for s in self._slots.values()
            if s.state == RESERVED and s.granted_at + ttl <= now
        ]
        rot = self._rotation
        if rot is not None and rot.started_at + self._cfg.rotation_timeout_ms <= now:
            due.append((rot.started_at + self._cfg.rotation_timeout_ms, rot.request.intent_id, 1))
        if not due:
            return
        due.sort()
        for _, ident, kind in due:
            if kind == 0:
                slot = self._slots.get(ident)
                if slot is None or slot.state != RESERVED:
                    continue
                self._free(slot)
                self._emit_slot(DecisionKind.EXPIRED, slot)
                self._serve_waiting(freed_intent=ident)
            else:
                rot = self._rotation
                if rot is None or rot.request.intent_id != ident:
                    continue  # already served by an earlier expiry in this pass
                self._rotation = None
                out_slot = self._slots.get(rot.out_intent_id)
                if out_slot is not None:
                    out_slot.closing = False  # its close evidently did not happen
                self._deny(rot.request, DenyReason.ROTATION_TIMEOUT)

    def _request(self, req: SlotRequest) -> None:
        if self._halted:
            self._deny(req, DenyReason.HALTED)
            return
        if self._symbol_busy(req.symbol) or req.intent_id in self._slots:
            self._deny(req, DenyReason.DUPLICATE_SYMBOL)
            return
        released_at = self._cooldown.get(req.symbol)
        if released_at is not None:
            if self._now - released_at < self._cfg.symbol_cooldown_ms:
                self._deny(req, DenyReason.COOLDOWN)
                return
            del self._cooldown[req.symbol]  # expired: keep the state small
        occupied = self._open + self._reserved
        active = self.active_slots()
        if occupied < active:
            self._grant(req)
            return
        if occupied == active and self._rotation is None:
            weakest = self._weakest()
            if weakest is not None and req.score - weakest.score >= self._cfg.rotation_threshold:
                weakest.closing = True
                self._rotation = _Rotation(req, weakest.intent_id, self._now)
                self._emit(
                    DecisionKind.ROTATE_OUT,
                    intent_id=weakest.intent_id,
                    symbol=weakest.symbol,
                    side=weakest.side,
                    notional=weakest.notional,
                    score=weakest.score,
                    for_intent_id=req.intent_id,
                )
                return
        if occupied >= self._cfg.max_open_positions:
            self._deny(req, DenyReason.LIMIT_FULL)
        else:
            self._deny(req, DenyReason.REGIME_SLOTS_FULL)

    def _filled(self, cmd: SlotFilled) -> None:
        slot = self._slots.get(cmd.intent_id)
        if slot is not None:
            if slot.state == RESERVED:
                slot.state = OPEN
                self._reserved -= 1
                self._open += 1
                self._emit_slot(DecisionKind.FILLED, slot)
            return  # already open: a repeated fill changes nothing
        if self._open + self._reserved < self._cfg.max_open_positions:
            slot = _Slot(cmd.intent_id, cmd.symbol, None, None, None, OPEN, self._now)
            self._slots[cmd.intent_id] = slot
            self._open += 1
            self._emit_slot(DecisionKind.FILLED, slot)
        else:
            self._emit(DecisionKind.FILL_REJECTED, intent_id=cmd.intent_id, symbol=cmd.symbol)

    def _release(self, cmd: SlotRelease) -> None:
        slot: _Slot | None
        if cmd.intent_id is not None:
            slot = self._slots.get(cmd.intent_id)
        else:
            slot = self._slot_for_symbol(cmd.symbol)
        if slot is None:
            self._emit(
                DecisionKind.RELEASE_IGNORED,
                intent_id=cmd.intent_id,
                symbol=cmd.symbol,
                release_reason=cmd.reason,
            )
            return
        self._free(slot)
        if cmd.reason in _COOLDOWN_REASONS:
            self._cooldown[slot.symbol] = self._now
        self._emit_slot(DecisionKind.RELEASED, slot, release_reason=cmd.reason)
        self._serve_waiting(freed_intent=slot.intent_id)

    def _serve_waiting(self, freed_intent: str) -> None:
        """One freed slot serves the one waiting request, if there is room now."""
        rot = self._rotation
        if rot is None:
            return
        is_out = freed_intent == rot.out_intent_id
        room = self._open + self._reserved < self.active_slots()
        if self._halted:
            if is_out:
                self._rotation = None
                self._deny(rot.request, DenyReason.HALTED)
            return
        if not room:
            if is_out:
                self._rotation = None
                self._deny(rot.request, DenyReason.REGIME_SLOTS_FULL)
            return
        self._rotation = None
        req = rot.request
        # Late fills may have taken the symbol (or the very intent) while it waited.
        if self._symbol_busy(req.symbol) or req.intent_id in self._slots:
            self._deny(req, DenyReason.DUPLICATE_SYMBOL)
        else:
            self._grant(req)

    # ---- helpers -----------------------------------------------------------------------

    def _grant(self, req: SlotRequest) -> None:
        slot = _Slot(
            req.intent_id, req.symbol, req.side, req.notional, req.score, RESERVED, self._now
        )
        self._slots[req.intent_id] = slot
        self._reserved += 1
        self._emit_request(DecisionKind.GRANTED, req, None)

    def _deny(self, req: SlotRequest, reason: DenyReason) -> None:
        self._emit_request(DecisionKind.DENIED, req, reason)

    def _free(self, slot: _Slot) -> None:
        del self._slots[slot.intent_id]
        if slot.state == OPEN:
            self._open -= 1
        else:
            self._reserved -= 1

    def _symbol_busy(self, symbol: str) -> bool:
        rot = self._rotation
        if rot is not None and rot.request.symbol == symbol:
            return True
        return any(s.symbol == symbol for s in self._slots.values())

    def _slot_for_symbol(self, symbol: str) -> _Slot | None:
        """An open slot before a reserved one; oldest first within each."""
        reserved = None
        for s in self._slots.values():
            if s.symbol == symbol:
                if s.state == OPEN:
                    return s
                if reserved is None:
                    reserved = s
        return reserved

    def _weakest(self) -> _Slot | None:
        best: _Slot | None = None
        best_key: tuple[float, str] | None = None
        for s in self._slots.values():
            if s.state != OPEN or s.score is None or s.closing:
                continue
            key = (s.score, s.intent_id)
            if best_key is None or key < best_key:
                best, best_key = s, key
        return best

    def _emit_request(
        self, kind: DecisionKind, req: SlotRequest, reason: DenyReason | None
    ) -> None:
        self._emit(
            kind,
            intent_id=req.intent_id,
            symbol=req.symbol,
            side=req.side,
            notional=req.notional,
            score=req.score,
            deny_reason=reason,
        )

    def _emit_slot(
        self, kind: DecisionKind, slot: _Slot, release_reason: ReleaseReason | None = None
    ) -> None:
        self._emit(
            kind,
            intent_id=slot.intent_id,
            symbol=slot.symbol,
            side=slot.side,
            notional=slot.notional,
            score=slot.score,
            release_reason=release_reason,
        )

    def _emit(
        self,
        kind: DecisionKind,
        *,
        intent_id: str | None = None,
        symbol: str | None = None,
        side: Side | None = None,
        notional: Decimal | None = None,
        score: float | None = None,
        deny_reason: DenyReason | None = None,
        release_reason: ReleaseReason | None = None,
        for_intent_id: str | None = None,
    ) -> None:
        out = self._out
        self._out.append(
            Decision(
                decision_id=f"{self._id_prefix}{len(out)}",
                command_id=self._cmd_id,
                kind=kind,
                event_time_ms=self._now,
                intent_id=intent_id,
                symbol=symbol,
                side=side,
                notional=notional,
                score=score,
                deny_reason=deny_reason,
                release_reason=release_reason,
                for_intent_id=for_intent_id,
                regime=self._regime,
                halted=self._halted,
                open_after=self._open,
                reserved_after=self._reserved,
                active_slots=self.active_slots(),
                max_open_positions=self._cfg.max_open_positions,
            )
        )

    # ---- snapshot ----------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state; order-preserving so a restore behaves identically."""
        rot = self._rotation
        return {
            "v": SNAPSHOT_VERSION,
            "now_ms": self._now,
            "regime": self._regime.value,
            "halted": self._halted,
            "slots": [
                {
                    "intent_id": s.intent_id,
                    "symbol": s.symbol,
                    "side": None if s.side is None else s.side.value,
                    "notional": None if s.notional is None else str(s.notional),
                    "score": s.score,
                    "state": s.state,
                    "granted_at": s.granted_at,
                    "closing": s.closing,
                }
                for s in self._slots.values()
            ],
            "rotation": None
            if rot is None
            else {
                "request": _request_to_json(rot.request),
                "out_intent_id": rot.out_intent_id,
                "started_at": rot.started_at,
            },
            "cooldown": [[sym, at] for sym, at in self._cooldown.items()],
            "handled": list(self._handled),
            "repeats": dict(self._repeats),
        }

    @classmethod
    def from_snapshot(cls, config: GovernorConfig, data: dict[str, Any]) -> GovernorCore:
        if data.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported governor snapshot version: {data.get('v')!r}")
        core = cls(config)
        core._now = int(data["now_ms"])
        core._regime = Regime(data["regime"])
        core._halted = bool(data["halted"])
        for s in data["slots"]:
            slot = _Slot(
                intent_id=s["intent_id"],
                symbol=s["symbol"],
                side=None if s["side"] is None else Side(s["side"]),
                notional=None if s["notional"] is None else Decimal(s["notional"]),
                score=s["score"],
                state=s["state"],
                granted_at=int(s["granted_at"]),
                closing=bool(s["closing"]),
            )
            core._slots[slot.intent_id] = slot
            if slot.state == OPEN:
                core._open += 1
            else:
                core._reserved += 1
        r = data["rotation"]
        if r is not None:
            core._rotation = _Rotation(
                _request_from_json(r["request"]), r["out_intent_id"], int(r["started_at"])
            )
        core._cooldown = {sym: int(at) for sym, at in data["cooldown"]}
        core._handled = dict.fromkeys(data["handled"])
        core._repeats = {cid: int(k) for cid, k in data["repeats"].items()}
        return core


def _request_to_json(r: SlotRequest) -> dict[str, Any]:
    return {
        "intent_id": r.intent_id,
        "symbol": r.symbol,
        "side": r.side.value,
        "notional": str(r.notional),
        "score": r.score,
        "event_time_ms": r.event_time_ms,
    }


def _request_from_json(d: dict[str, Any]) -> SlotRequest:
    return SlotRequest(
        intent_id=d["intent_id"],
        symbol=d["symbol"],
        side=Side(d["side"]),
        notional=Decimal(d["notional"]),
        score=d["score"],
        event_time_ms=int(d["event_time_ms"]),
    )
