"""The governor's pure decision core: (config, commands so far) -> decisions.

No I/O, no wall clock, no randomness: event time arrives in the commands, so a replay
of the portfolio topic yields the same decisions, and the Kafka shell can snapshot the
state with its offsets in one transaction. The semantics are written out in
docs/governor.md; the invariant (open + reserved <= max_open_positions, grants only
below the active slots, one slot per symbol, one final decision per intent) is what the
property tests and `agents.governor.audit` check.

Every intent has one `SlotState` and moves only along the machine of docs/governor.md:
a fill or release applies to the state it refers to and to nothing else, so the count
of held slots is always the number of intents in RESERVED or OPEN. Ended intents and
handled command ids are remembered for `memory_horizon_ms` of event time, which bounds
the state (and the snapshot) however long the log grows.
"""

from __future__ import annotations

from collections import deque
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
    SlotState,
)
from quantum.errors import InvalidRecord

SNAPSHOT_VERSION = 2

WAITING = SlotState.WAITING
RESERVED = SlotState.RESERVED
OPEN = SlotState.OPEN
CLOSED = SlotState.CLOSED
DENIED = SlotState.DENIED
EXPIRED = SlotState.EXPIRED
REJECTED = SlotState.REJECTED

# Releases that mean "the position was really traded out": they free an open position
# (or a reservation whose fill they overtook) and start the symbol's cooldown.
_POSITION_REASONS = frozenset({ReleaseReason.POSITION_CLOSED, ReleaseReason.ROTATED_OUT})
# Releases that mean "the entry order ended unfilled": they free only a reservation.
_ORDER_REASONS = frozenset({ReleaseReason.ORDER_REJECTED, ReleaseReason.ORDER_EXPIRED})

# Dedup is per (command kind, command id): one bit per kind in the remembered entry.
_KIND_BIT: dict[type, int] = {
    SlotRequest: 1,
    SlotFilled: 2,
    SlotRelease: 4,
    SetRegime: 8,
    Halt: 16,
    Resume: 32,
    Clock: 64,
}
_ALL_KINDS = 127
_NEVER = 2**63
_ENDED = frozenset({SlotState.CLOSED, SlotState.DENIED, SlotState.EXPIRED, SlotState.REJECTED})


def _blank(value: str) -> bool:
    return not value or value.isspace()


def check_command(
    command: Command,
    record_timestamp_ms: int | None = None,
    max_event_skew_ms: int | None = None,
) -> None:
    """Raise InvalidRecord for a command no governor may decide (the shell dead-letters it).

    EMPTY_ID: an empty or blank command id or intent id (it would dedup with nothing or
    everything). EVENT_TIME_SKEW: the event time is more than `max_event_skew_ms` ahead of
    the Kafka record timestamp (a producer in microseconds would freeze every TTL); only
    checked when both are given. Readers of the log call this too, so they agree with the
    governor on which records are commands.
    """
    if _blank(command.command_id):
        raise InvalidRecord(
            "EMPTY_ID", f"{type(command).__name__}: empty or blank command id/intent id"
        )
    kind = type(command)
    if kind is SlotFilled or kind is SlotRelease:
        intent = command.intent_id  # type: ignore[union-attr]
        if intent is not None and _blank(intent):
            raise InvalidRecord(
                "EMPTY_ID", f"{kind.__name__} {command.command_id!r}: empty or blank intent id"
            )
    if record_timestamp_ms is not None and max_event_skew_ms is not None:
        ahead = command.event_time_ms - record_timestamp_ms
        if ahead > max_event_skew_ms:
            raise InvalidRecord(
                "EVENT_TIME_SKEW",
                f"{kind.__name__} {command.command_id!r}: event time {command.event_time_ms} is "
                f"{ahead} ms ahead of its record timestamp {record_timestamp_ms} "
                f"(limit {max_event_skew_ms} ms; milliseconds since the epoch expected)",
            )


@dataclass(slots=True)
class _Intent:
    """One intent's lifecycle record.

    `since`: for RESERVED/OPEN the event time it took its slot (a grant or a late fill's
    admission); for every other state the time it entered that state. Side, notional and
    score are known for a requested intent and kept while it is live or EXPIRED (its order
    may still fill); a late-admitted unknown intent has none, so it is never rotated out.
    """

    intent_id: str
    symbol: str
    state: SlotState
    since: int
    side: Side | None = None
    notional: Decimal | None = None
    score: float | None = None
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
        self._regime = Regime.BASE
        self._apply_config(config)
        self._config_notice = False  # CONFIG_CHANGED due with the next command
        self._now = 0
        self._halted = False
        self._intents: dict[str, _Intent] = {}  # every remembered intent
        self._live: dict[str, _Intent] = {}  # RESERVED / OPEN, by intent id
        self._holder: dict[str, _Intent] = {}  # symbol -> its one RESERVED / OPEN intent
        self._ended: deque[tuple[int, str]] = deque()  # (since, id) of ended intents, in time
        self._open = 0
        self._reserved = 0
        self._rotation: _Rotation | None = None
        self._cooldown: dict[str, int] = {}  # symbol -> released_at
        self._cooldown_q: deque[tuple[int, str]] = deque()  # (released_at, symbol), in time
        # command id -> [kind bits handled, times seen, last seen]
        self._seen: dict[str, list[int]] = {}
        self._seen_q: deque[tuple[int, str]] = deque()  # (seen at, id), in time
        # Lower bounds of when anything can next be forgotten / expire, so most commands
        # skip both passes. An early bound only costs a pass that finds nothing.
        self._forget_due = _NEVER
        self._expiry_due = _NEVER
        # per-command scratch
        self._out: list[Decision] = []
        self._cmd_id = ""
        self._repeat_no = 0  # > 0: the k-th command with an id seen before

    def _apply_config(self, config: GovernorConfig) -> None:
        self._cfg = config
        self._slots_by_regime = {
            Regime.BASE: config.active_slots_base,
            Regime.TREND_STRONG: config.active_slots_trend_strong,
            Regime.CHOP: config.active_slots_chop,
        }
        self._threshold = Decimal(repr(config.rotation_threshold))
        self._horizon = config.memory_horizon_ms
        self._set_active()
        self._forget_due = self._expiry_due = 0  # recomputed by the next passes

    def reconfigure(self, config: GovernorConfig) -> None:
        """Run under `config` from now on (a restart with other settings). If it differs,
        the next command's first decision is CONFIG_CHANGED, which announces the new limits
        in the log; a lower cap than the occupancy then denies entries until it is under."""
        if config != self._cfg:
            self._apply_config(config)
            self._config_notice = True

    # ---- read-only views -------------------------------------------------------------

    @property
    def config(self) -> GovernorConfig:
        return self._cfg

    @property
    def remembered(self) -> int:
        """Entries a snapshot holds: intents (live and terminal) and handled command ids."""
        return len(self._intents) + len(self._seen)

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
        return self._active

    def _set_active(self) -> None:
        self._active = min(self._slots_by_regime[self._regime], self._cfg.max_open_positions)

    def slot_state(self, intent_id: str) -> SlotState | None:
        """The intent's state, or None if unknown (or forgotten after the horizon)."""
        rec = self._intents.get(intent_id)
        return None if rec is None else rec.state

    def intent_states(self) -> dict[str, SlotState]:
        return {i: rec.state for i, rec in self._intents.items()}

    def holders(self) -> dict[str, str]:
        """symbol -> the intent holding its one slot (RESERVED or OPEN)."""
        return {sym: rec.intent_id for sym, rec in self._holder.items()}

    def has_handled(self, command: Command) -> bool:
        entry = self._seen.get(command.command_id)
        return entry is not None and bool(entry[0] & _KIND_BIT[type(command)])

    # ---- the one entry point ---------------------------------------------------------

    def handle(self, command: Command) -> list[Decision]:
        """Decide one command. Raises InvalidRecord (and changes nothing, not even the
        clock) for a command that can never be decided; see `check_command`."""
        kind = type(command)
        cid = command.command_id
        if not cid or cid.isspace():
            check_command(command)  # raises EMPTY_ID
        if kind is SlotFilled or kind is SlotRelease:
            self._check_intent(command)  # type: ignore[arg-type]
        self._out = out = []
        self._cmd_id = cid
        if command.event_time_ms > self._now:
            self._now = command.event_time_ms
        now = self._now
        if now >= self._forget_due:
            self._forget(now)
        bit = _KIND_BIT[kind]
        entry = self._seen.get(cid)
        if entry is None:
            self._seen[cid] = [bit, 1, now]
            self._seen_q.append((now, cid))
            due = now + self._horizon + 1
            if due < self._forget_due:
                self._forget_due = due
            self._repeat_no = 0
            repeat = False
        else:
            # The id was seen before (a repeat, or a namesake of another kind): name this
            # command's decisions `cid#k.n` so decision ids stay unique downstream.
            self._repeat_no = entry[1]
            repeat = bool(entry[0] & bit)
            entry[0] |= bit
            entry[1] += 1
            if entry[2] != now:
                entry[2] = now
                self._seen_q.append((now, cid))
        if self._config_notice:
            self._config_notice = False
            self._emit(DecisionKind.CONFIG_CHANGED)
            self._serve_waiting(freed_out=False)
        if now >= self._expiry_due:
            self._expire()
        if repeat:
            return out
        if kind is SlotRequest:
            self._request(command)  # type: ignore[arg-type]
        elif kind is SlotFilled:
            self._filled(command)  # type: ignore[arg-type]
        elif kind is SlotRelease:
            self._release(command)  # type: ignore[arg-type]
        elif kind is SetRegime:
            self._regime = command.regime  # type: ignore[union-attr]
            self._set_active()
            self._emit(DecisionKind.REGIME_CHANGED)
            self._serve_waiting(freed_out=False)
        elif kind is Halt:
            self._halted = True
            self._emit(DecisionKind.HALTED)
        elif kind is Resume:
            self._halted = False
            self._emit(DecisionKind.RESUMED)
            self._serve_waiting(freed_out=False)
        elif kind is not Clock:  # pragma: no cover - the Command union is closed
            raise TypeError(f"not a governor command: {command!r}")
        return out

    def _check_intent(self, command: SlotFilled | SlotRelease) -> None:
        """check_command's intent-id rule, plus: a fill or release must name its intent's
        symbol (SYMBOL_MISMATCH), or the book could no longer say which symbol is held."""
        intent = command.intent_id
        if intent is None:
            return
        if not intent or intent.isspace():
            check_command(command)  # raises EMPTY_ID
        rec = self._intents.get(intent)
        if rec is not None and rec.symbol != command.symbol:
            raise InvalidRecord(
                "SYMBOL_MISMATCH",
                f"{type(command).__name__} {command.command_id!r} names {command.symbol!r} "
                f"for intent {intent!r}, which is on {rec.symbol!r}",
            )

    # ---- rules -------------------------------------------------------------------------

    def _forget(self, now: int) -> None:
        """Drop what is older than the horizon (handled ids, ended intents) and cooldowns
        that have run out; then note when the next of them is due."""
        horizon = self._horizon
        limit = now - horizon
        due = _NEVER
        # The queues hold (time, key) in time order; an entry whose key was seen again (or
        # ended or released again) later is stale and skipped.
        seen, seen_q = self._seen, self._seen_q
        while seen_q:
            at, cid = seen_q[0]
            if at >= limit:
                due = at + horizon + 1
                break
            seen_q.popleft()
            entry = seen.get(cid)
            if entry is not None and entry[2] == at:
                del seen[cid]
        ended = self._ended
        intents = self._intents
        while ended:
            since, iid = ended[0]
            if since >= limit:
                due = min(due, since + horizon + 1)
                break
            ended.popleft()
            rec = intents.get(iid)
            if rec is not None and rec.since == since and rec.state in _ENDED:
                del intents[iid]
        cooldown, cooldown_q = self._cooldown, self._cooldown_q
        cool = self._cfg.symbol_cooldown_ms
        while cooldown_q:
            at, sym = cooldown_q[0]
            if at > now - cool:
                due = min(due, at + cool)
                break
            cooldown_q.popleft()
            if cooldown.get(sym) == at:
                del cooldown[sym]
        self._forget_due = due

    def _remember_end(self, rec: _Intent) -> None:
        self._ended.append((self._now, rec.intent_id))
        due = self._now + self._horizon + 1
        if due < self._forget_due:
            self._forget_due = due

    def _expire(self) -> None:
        """Reservations past their TTL and rotation waits past their timeout, in
        (due time, id) order so the result never depends on dict order."""
        now = self._now
        ttl = self._cfg.reservation_ttl_ms
        due: list[tuple[int, str, int]] = []
        later = _NEVER
        for s in self._live.values():
            if s.state is RESERVED:
                at = s.since + ttl
                if at <= now:
                    due.append((at, s.intent_id, 0))
                elif at < later:
                    later = at
        rot = self._rotation
        if rot is not None:
            at = rot.started_at + self._cfg.rotation_timeout_ms
            if at <= now:
                due.append((at, rot.request.intent_id, 1))
            elif at < later:
                later = at
        # Grants made by this pass (a waiter served) lower it again in _take/_start_rotation.
        self._expiry_due = later
        if not due:
            return
        due.sort()
        for _, ident, kind in due:
            if kind == 0:
                slot = self._live.get(ident)
                if slot is None or slot.state is not RESERVED:
                    continue
                self._free(slot)
                self._emit_intent(DecisionKind.EXPIRED, slot)
                self._finish(slot, EXPIRED)
                self._serve_waiting(freed_out=False)
            else:
                rot = self._rotation
                if rot is None or rot.request.intent_id != ident:
                    continue  # already served by an earlier expiry in this pass
                self._end_rotation()
                self._deny(rot.request, DenyReason.ROTATION_TIMEOUT)

    def _request(self, req: SlotRequest) -> None:
        if req.intent_id in self._intents:
            # A fill for it came first (or it ended): never a second record for one intent.
            self._emit_request(DecisionKind.DENIED, req, DenyReason.DUPLICATE_INTENT)
            return
        if self._halted:
            self._deny(req, DenyReason.HALTED)
            return
        blocked = self._entry_block(req.symbol)
        if blocked is not None:
            self._deny(req, blocked)
            return
        occupied = self._open + self._reserved
        active = self.active_slots()
        rot = self._rotation
        if rot is None and occupied < active:
            self._grant(req)
            return
        if occupied == active:
            if rot is not None:
                # Only one rotation at a time (the audit's bug was parallel ones). A request
                # that would have rotated says so; it is not granted ahead of the waiter.
                weakest = self._weakest(include_closing=True)
                if weakest is not None and self._beats(req.score, weakest):
                    self._deny(req, DenyReason.ROTATION_PENDING)
                    return
            else:
                weakest = self._weakest(include_closing=False)
                if weakest is not None and self._beats(req.score, weakest):
                    self._start_rotation(req, weakest)
                    return
        self._deny(req, self._full_reason())

    def _filled(self, cmd: SlotFilled) -> None:
        rec = self._intents.get(cmd.intent_id)
        state = None if rec is None else rec.state
        if state is RESERVED:
            rec.state = OPEN  # type: ignore[union-attr]
            self._reserved -= 1
            self._open += 1
            self._emit_intent(DecisionKind.FILLED, rec)  # type: ignore[arg-type]
            return
        if state is OPEN:
            return  # a repeated (or partial) fill of an open position changes nothing
        if state is CLOSED or state is REJECTED:
            self._emit_intent(DecisionKind.FILL_IGNORED, rec)  # type: ignore[arg-type]
            return
        if state is WAITING:
            # Its own order filled although it was never granted: the wait ends, and the
            # fill is a real position like any late one.
            rot = self._end_rotation()
            self._deny(rot.request, DenyReason.DUPLICATE_INTENT)
            rec = self._intents[cmd.intent_id]
        # A late fill (its reservation EXPIRED, the request was DENIED, or the intent is
        # unknown): a real position on the exchange, counted if the symbol and the cap allow.
        if rec is None:
            rec = _Intent(cmd.intent_id, cmd.symbol, DENIED, self._now)
            self._intents[cmd.intent_id] = rec
        if cmd.symbol in self._holder:
            # One-way mode merged it into the holder's position: no second slot.
            self._emit_intent(DecisionKind.FILL_SYMBOL_HELD, rec)
            self._finish(rec, REJECTED)
        elif self._open + self._reserved < self._cfg.max_open_positions:
            if rec.state is not EXPIRED:
                rec.side = rec.notional = rec.score = None
            self._take(rec, OPEN)
            self._emit_intent(DecisionKind.FILLED, rec)
            rot = self._rotation
            if rot is not None and rot.request.symbol == rec.symbol:
                self._end_rotation()
                self._deny(rot.request, DenyReason.DUPLICATE_SYMBOL)
        else:
            self._emit_intent(DecisionKind.FILL_REJECTED, rec)
            self._finish(rec, REJECTED)

    def _release(self, cmd: SlotRelease) -> None:
        reason = cmd.reason
        order_ended = reason in _ORDER_REASONS
        if cmd.intent_id is not None:
            rec = self._intents.get(cmd.intent_id)
            state = None if rec is None else rec.state
            if state is WAITING:
                rot = self._end_rotation()
                self._deny(rot.request, DenyReason.WITHDRAWN)
                return
            if state is EXPIRED:
                # Frees nothing, but says how its order ended: a later fill is then no
                # position (FILL_IGNORED) instead of a late admission.
                self._emit_ignored(cmd)
                self._finish(rec, REJECTED if order_ended else CLOSED)  # type: ignore[arg-type]
                return
            # By intent, a position reason may free a reservation: it overtook the fill.
            applies = state is RESERVED or (state is OPEN and not order_ended)
        else:
            rec = self._holder.get(cmd.symbol)
            # By symbol, the reason must match the state, and the slot must be older than
            # the release: a re-sent stale close never frees a newer position.
            applies = (
                rec is not None
                and rec.since <= cmd.event_time_ms
                and (rec.state is RESERVED if order_ended else rec.state is OPEN)
            )
        if not applies:
            self._emit_ignored(cmd)
            return
        assert rec is not None
        self._free(rec)
        if not order_ended:
            self._cooldown[rec.symbol] = self._now
            self._cooldown_q.append((self._now, rec.symbol))
            if self._now + self._cfg.symbol_cooldown_ms < self._forget_due:
                self._forget_due = self._now + self._cfg.symbol_cooldown_ms
        self._emit_intent(DecisionKind.RELEASED, rec, release_reason=reason)
        self._finish(rec, REJECTED if order_ended else CLOSED)
        rot = self._rotation
        self._serve_waiting(freed_out=rot is not None and rot.out_intent_id == rec.intent_id)

    def _serve_waiting(self, freed_out: bool) -> None:
        """Capacity appeared (a slot freed, the regime widened, a resume, new limits): the
        waiting request is served first. The rotated-out slot itself freeing while halted
        or without room ends the wait with a denial; anything else leaves it waiting."""
        rot = self._rotation
        if rot is None:
            return
        if self._halted:
            if freed_out:
                self._end_rotation()
                self._deny(rot.request, DenyReason.HALTED)
            return
        if self._open + self._reserved < self.active_slots():
            self._end_rotation()
            blocked = self._entry_block(rot.request.symbol)
            if blocked is None:
                self._grant(rot.request)
            else:
                self._deny(rot.request, blocked)
        elif freed_out:
            self._end_rotation()
            self._deny(rot.request, self._full_reason())

    # ---- helpers -----------------------------------------------------------------------

    def _entry_block(self, symbol: str) -> DenyReason | None:
        """Why no new entry may take `symbol` now (held, waited for, cooling down)."""
        rot = self._rotation
        if symbol in self._holder or (rot is not None and rot.request.symbol == symbol):
            return DenyReason.DUPLICATE_SYMBOL
        released_at = self._cooldown.get(symbol)
        if released_at is not None and self._now - released_at < self._cfg.symbol_cooldown_ms:
            return DenyReason.COOLDOWN
        return None

    def _full_reason(self) -> DenyReason:
        if self._open + self._reserved >= self._cfg.max_open_positions:
            return DenyReason.LIMIT_FULL
        return DenyReason.REGIME_SLOTS_FULL

    def _beats(self, score: float, weakest: _Intent) -> bool:
        """request - weakest >= threshold, in exact decimals of the scores as written
        (0.70 - 0.55 is 0.15, not 0.1499999...)."""
        assert weakest.score is not None
        return Decimal(repr(score)) - Decimal(repr(weakest.score)) >= self._threshold

    def _weakest(self, *, include_closing: bool) -> _Intent | None:
        best: _Intent | None = None
        best_key: tuple[float, str] | None = None
        for s in self._live.values():
            if s.state is not OPEN or s.score is None or (s.closing and not include_closing):
                continue
            key = (s.score, s.intent_id)
            if best_key is None or key < best_key:
                best, best_key = s, key
        return best

    def _start_rotation(self, req: SlotRequest, weakest: _Intent) -> None:
        weakest.closing = True
        self._rotation = _Rotation(req, weakest.intent_id, self._now)
        self._expire_by(self._now + self._cfg.rotation_timeout_ms)
        self._intents[req.intent_id] = _Intent(
            req.intent_id, req.symbol, WAITING, self._now, req.side, req.notional, req.score
        )
        self._emit(
            DecisionKind.ROTATE_OUT,
            intent_id=weakest.intent_id,
            symbol=weakest.symbol,
            side=weakest.side,
            notional=weakest.notional,
            score=weakest.score,
            for_intent_id=req.intent_id,
        )

    def _end_rotation(self) -> _Rotation:
        """End the pending rotation by whatever path; the rotated-out mark always clears."""
        rot = self._rotation
        assert rot is not None
        self._rotation = None
        out = self._live.get(rot.out_intent_id)
        if out is not None:
            out.closing = False
        return rot

    def _grant(self, req: SlotRequest) -> None:
        rec = _Intent(
            req.intent_id, req.symbol, RESERVED, self._now, req.side, req.notional, req.score
        )
        self._intents[req.intent_id] = rec
        self._take(rec, RESERVED)
        self._emit_request(DecisionKind.GRANTED, req, None)

    def _deny(self, req: SlotRequest, reason: DenyReason) -> None:
        """Final denial of a new or waiting request; its intent is then DENIED (remembered)."""
        old = self._intents.get(req.intent_id)
        assert old is None or old.state is WAITING, old
        rec = _Intent(req.intent_id, req.symbol, DENIED, self._now)
        self._intents[req.intent_id] = rec
        self._remember_end(rec)
        self._emit_request(DecisionKind.DENIED, req, reason)

    def _take(self, rec: _Intent, state: SlotState) -> None:
        rec.state = state
        rec.since = self._now
        rec.closing = False
        self._live[rec.intent_id] = rec
        self._holder[rec.symbol] = rec
        if state is OPEN:
            self._open += 1
        else:
            self._reserved += 1
            self._expire_by(self._now + self._cfg.reservation_ttl_ms)

    def _expire_by(self, at: int) -> None:
        if at < self._expiry_due:
            self._expiry_due = at

    def _free(self, rec: _Intent) -> None:
        del self._live[rec.intent_id]
        del self._holder[rec.symbol]
        if rec.state is OPEN:
            self._open -= 1
        else:
            self._reserved -= 1

    def _finish(self, rec: _Intent, state: SlotState) -> None:
        """Move a freed (or never-admitted) intent into an ended state, remembered from now."""
        rec.state = state
        rec.since = self._now
        rec.closing = False
        if state is not EXPIRED:  # only an expired order may still become a position
            rec.side = rec.notional = rec.score = None
        self._remember_end(rec)

    def _emit_ignored(self, cmd: SlotRelease) -> None:
        self._emit(
            DecisionKind.RELEASE_IGNORED,
            intent_id=cmd.intent_id,
            symbol=cmd.symbol,
            release_reason=cmd.reason,
        )

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

    def _emit_intent(
        self, kind: DecisionKind, rec: _Intent, release_reason: ReleaseReason | None = None
    ) -> None:
        self._emit(
            kind,
            intent_id=rec.intent_id,
            symbol=rec.symbol,
            side=rec.side,
            notional=rec.notional,
            score=rec.score,
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
        k = self._repeat_no
        out.append(
            Decision(  # positionally, in field order: this is the hottest line of a decision
                f"{self._cmd_id}#{k}.{len(out)}" if k else f"{self._cmd_id}#{len(out)}",
                self._cmd_id,
                kind,
                self._now,
                intent_id,
                symbol,
                side,
                notional,
                score,
                deny_reason,
                release_reason,
                for_intent_id,
                self._regime,
                self._halted,
                self._open,
                self._reserved,
                self._active,
                self._cfg.max_open_positions,
            )
        )

    # ---- snapshot ----------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state; restoring it and continuing gives exactly the decisions
        of an uninterrupted run. Compact lists, not dicts: it holds a horizon of ids."""
        rot = self._rotation
        return {
            "v": SNAPSHOT_VERSION,
            "config": self._cfg.model_dump(mode="json"),
            "config_notice": self._config_notice,
            "now_ms": self._now,
            "regime": self._regime.value,
            "halted": self._halted,
            "intents": [_intent_to_json(rec) for rec in self._intents.values()],
            "rotation": None
            if rot is None
            else {
                "request": _request_to_json(rot.request),
                "out_intent_id": rot.out_intent_id,
                "started_at": rot.started_at,
            },
            "cooldown": sorted(([sym, at] for sym, at in self._cooldown.items()), key=_at),
            "handled": sorted(([cid, *entry] for cid, entry in self._seen.items()), key=_last),
        }

    @staticmethod
    def snapshot_config(data: dict[str, Any]) -> GovernorConfig | None:
        """The config the snapshotted state was decided under (None for version 1)."""
        raw = data.get("config")
        return None if raw is None else GovernorConfig(**raw)

    @classmethod
    def from_snapshot(cls, config: GovernorConfig, data: dict[str, Any]) -> GovernorCore:
        """Restore under `config`; if it differs from the snapshot's, the next command first
        emits CONFIG_CHANGED (see `reconfigure`)."""
        version = data.get("v")
        if version == 1:
            return cls._from_v1(config, data)
        if version != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported governor snapshot version: {version!r}")
        core = cls(config)
        core._config_notice = bool(data["config_notice"]) or (
            data["config"] != config.model_dump(mode="json")
        )
        core._now = int(data["now_ms"])
        core._regime = Regime(data["regime"])
        core._set_active()
        core._halted = bool(data["halted"])
        ended: list[tuple[int, str]] = []
        for row in data["intents"]:
            rec = _intent_from_json(row)
            core._intents[rec.intent_id] = rec
            if rec.state is RESERVED or rec.state is OPEN:
                core._live[rec.intent_id] = rec
                core._holder[rec.symbol] = rec
                if rec.state is OPEN:
                    core._open += 1
                else:
                    core._reserved += 1
            elif rec.state is not WAITING:
                ended.append((rec.since, rec.intent_id))
        ended.sort(key=lambda e: e[0])  # stable: equal times keep their order
        core._ended = deque(ended)
        r = data["rotation"]
        if r is not None:
            core._rotation = _Rotation(
                _request_from_json(r["request"]), r["out_intent_id"], int(r["started_at"])
            )
        core._cooldown = {sym: int(at) for sym, at in data["cooldown"]}
        core._cooldown_q = deque(sorted((at, sym) for sym, at in core._cooldown.items()))
        core._seen = {
            cid: [int(bits), int(times), int(last)] for cid, bits, times, last in data["handled"]
        }
        core._seen_q = deque(sorted((entry[2], cid) for cid, entry in core._seen.items()))
        core._forget_due = core._expiry_due = 0  # the first command recomputes both
        return core

    @classmethod
    def _from_v1(cls, config: GovernorConfig, data: dict[str, Any]) -> GovernorCore:
        """A snapshot of the core before the intent state machine (commit 6d28e54): its
        handled ids had no kind, so each counts as handled for every kind, and is
        remembered from the snapshot's time on."""
        now = int(data["now_ms"])
        rows: list[list[Any]] = [
            [
                s["intent_id"],
                s["symbol"],
                s["state"],
                int(s["granted_at"]),
                s["side"],
                s["notional"],
                s["score"],
                bool(s["closing"]),
            ]
            for s in data["slots"]
        ]
        r = data["rotation"]
        if r is not None:
            q = r["request"]
            rows.append(
                [
                    q["intent_id"],
                    q["symbol"],
                    "WAITING",
                    int(r["started_at"]),
                    q["side"],
                    q["notional"],
                    q["score"],
                    False,
                ]
            )
        repeats = data["repeats"]
        v2 = {
            "v": SNAPSHOT_VERSION,
            "config": config.model_dump(mode="json"),
            "config_notice": False,
            "now_ms": now,
            "regime": data["regime"],
            "halted": data["halted"],
            "intents": rows,
            "rotation": r,
            "cooldown": data["cooldown"],
            "handled": [
                [cid, _ALL_KINDS, 1 + int(repeats.get(cid, 0)), now] for cid in data["handled"]
            ],
        }
        return cls.from_snapshot(config, v2)


def _at(row: list[Any]) -> int:
    return row[1]


def _last(row: list[Any]) -> int:
    return row[3]


def _intent_to_json(rec: _Intent) -> list[Any]:
    row: list[Any] = [rec.intent_id, rec.symbol, rec.state.value, rec.since]
    if rec.side is not None or rec.score is not None or rec.closing:
        row += [
            None if rec.side is None else rec.side.value,
            None if rec.notional is None else str(rec.notional),
            rec.score,
            rec.closing,
        ]
    return row


def _intent_from_json(row: list[Any]) -> _Intent:
    rec = _Intent(row[0], row[1], SlotState(row[2]), int(row[3]))
    if len(row) > 4:
        side, notional, score, closing = row[4:8]
        rec.side = None if side is None else Side(side)
        rec.notional = None if notional is None else Decimal(notional)
        rec.score = score
        rec.closing = bool(closing)
    return rec


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
