"""THE AUDITED (OLD) DESIGN, simulated - and the same events through our governor.

A deterministic discrete-event model of the pipeline the audit
(seed/000_ac16b9210803e0cf.txt) describes, to reproduce its race: 17 open positions
under a limit of 10. Nothing here is production code. Each component follows the
audit section cited on it; docs/audit-race.md explains the model and the numbers.

`simulate_audited` runs the old design; `simulate_governor` runs the same `Scenario`
through a harness around `GovernorCore`. Both return a `RaceResult` whose `timeline`
is the exchange's true open-position count over event time.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from agents.governor.config import GovernorConfig
from agents.governor.core import GovernorCore
from agents.governor.model import (
    Clock,
    Command,
    Decision,
    DecisionKind,
    Regime,
    ReleaseReason,
    SetRegime,
    Side,
    SlotFilled,
    SlotRelease,
    SlotRequest,
)
from agents.governor.simulation.scenario import Scenario, Signal


@dataclass
class RaceResult:
    design: str
    max_open: int = 0
    timeline: list[tuple[int, int]] = field(default_factory=list)  # (t_ms, open after)
    entries: int = 0
    closes: int = 0
    notes: list[str] = field(default_factory=list)  # what happened, in order
    decisions: list[Decision] = field(default_factory=list)  # ours only

    def record(self, t_ms: int, open_now: int) -> None:
        self.timeline.append((t_ms, open_now))
        self.max_open = max(self.max_open, open_now)


class _Loop:
    """Event queue ordered by (time, insertion): ties resolve the same way every run."""

    def __init__(self) -> None:
        self._q: list[tuple[int, int, Callable[[int], None]]] = []
        self._seq = 0

    def at(self, t_ms: int, fn: Callable[[int], None]) -> None:
        heapq.heappush(self._q, (t_ms, self._seq, fn))
        self._seq += 1

    def run(self, until_ms: int) -> None:
        while self._q and self._q[0][0] <= until_ms:
            t, _, fn = heapq.heappop(self._q)
            fn(t)


# ---- the audited design --------------------------------------------------------------


@dataclass(frozen=True)
class AuditedParams:
    """The audit's values (§1.1, Appendix) and the latencies it reports (§1.4, §5.4)."""

    selector_interval_ms: int = 10_000  # PORTFOLIO_BUFFER_INTERVAL=10 (§1.4)
    top_n: int = 10  # TOP_N_LIMIT (§1.1)
    min_confidence: float = 0.55  # MIN_SIGNAL_CONFIDENCE (§1.1)
    ledger_lag_ms: tuple[int, int] = (5_000, 10_000)  # Redis position lag (§1.4, §5.4)
    bridge_delay_ms: tuple[int, int] = (200, 1_000)  # trade.intent -> apply.plan (§1.5 T+11)
    governor_service_ms: tuple[int, int] = (200, 1_000)  # one plan at a time (§5.1)
    apply_service_ms: tuple[int, int] = (100, 500)  # one plan at a time (§5.1, §5.7)
    slots: tuple[int, int, int] = (4, 6, 3)  # ACTIVE_SLOTS BASE/TREND_STRONG/CHOP (§1.1)
    rotation_threshold: float = 0.15  # ROTATION_THRESHOLD (§1.1)
    rotation_lock_ttl_ms: int = 120_000  # ROTATION_LOCK_TTL (§1.1, §5.5)
    apply_max_open: int = 10  # APPLY_MAX_OPEN_POSITIONS (§1.1, §1.3)
    cooldown_ms: int = 180_000  # apply-layer cooldown:open (§5.2)
    # §1.5 says each new rotation closes "another weak position": the governor skips
    # positions it already targeted. False = always the snapshot's weakest (worse).
    skip_targeted_weakest: bool = True


def simulate_audited(
    scenario: Scenario, rng: random.Random, params: AuditedParams | None = None
) -> RaceResult:
    p = params or AuditedParams()
    res = RaceResult("audited")
    loop = _Loop()
    slot_limit = dict(zip(Regime, p.slots, strict=True))[scenario.regime]

    exchange: dict[str, float] = {}  # symbol -> score: the truth
    closing: set[str] = set()
    redis: dict[str, float] = {}  # quantum:position:* as the services see it
    redis_stamp: dict[str, int] = {}  # truth time of the last applied update per symbol
    buffer: list[Signal] = []
    locks: dict[str, tuple[int, str]] = {}  # new symbol -> (expires, close symbol) (§5.5)
    cooldown: dict[str, int] = {}
    gov_queue: list[Signal] = []
    apply_queue: list[tuple[str, str, Signal | None]] = []  # (kind, symbol, signal)
    busy = {"gov": False, "apply": False}
    close_delay: dict[str, int] = {}
    hold: dict[str, int] = {}

    def lag() -> int:
        return rng.randint(*p.ledger_lag_ms)

    def publish_to_redis(t: int, symbol: str, score: float | None) -> None:
        """The ledger commit lands `lag` later; an older update never wins (§1.4)."""

        def land(_: int) -> None:
            if redis_stamp.get(symbol, -1) > t:
                return
            redis_stamp[symbol] = t
            if score is None:
                redis.pop(symbol, None)
            else:
                redis[symbol] = score

        loop.at(t + lag(), land)

    def open_position(t: int, symbol: str, score: float, c_delay: int, h: int) -> None:
        if symbol in exchange:
            return  # one-way mode: a second entry adds to the same position
        exchange[symbol] = score
        close_delay[symbol] = c_delay
        hold[symbol] = h
        res.entries += 1
        res.record(t, len(exchange))
        res.notes.append(f"{t / 1000:7.1f}s OPEN  {symbol} -> {len(exchange)} open")
        publish_to_redis(t, symbol, score)
        loop.at(t + h, lambda now: start_close(now, symbol, "exit"))

    def start_close(t: int, symbol: str, why: str) -> None:
        if symbol not in exchange or symbol in closing:
            return  # already flat or already closing: a reduce-only close is a no-op
        closing.add(symbol)

        def flat(now: int) -> None:
            closing.discard(symbol)
            if exchange.pop(symbol, None) is None:
                return
            res.closes += 1
            res.record(now, len(exchange))
            res.notes.append(f"{now / 1000:7.1f}s CLOSE {symbol} ({why}) -> {len(exchange)} open")
            publish_to_redis(now, symbol, None)

        loop.at(t + close_delay[symbol], flat)

    # §1.2 step 1 / §1.4: the AI engine buffers predictions; every 10 s the selector reads
    # the (lagging) Redis positions, drops HOLD/low confidence and symbols it sees open
    # (correlation 1.0 with itself), ranks by confidence and publishes the top 10.
    def on_signal(_: int, s: Signal) -> None:
        buffer.append(s)

    def selector(t: int) -> None:
        seen_open = set(redis)
        best: dict[str, Signal] = {}
        for s in buffer:
            if s.confidence < p.min_confidence or s.symbol in seen_open:
                continue
            if s.symbol not in best or s.confidence > best[s.symbol].confidence:
                best[s.symbol] = s
        buffer.clear()
        ranked = sorted(best.values(), key=lambda s: (-s.confidence, s.signal_id))[: p.top_n]
        for s in ranked:
            loop.at(t + rng.randint(*p.bridge_delay_ms), lambda now, s=s: to_governor(now, s))
        if t + p.selector_interval_ms <= scenario.duration_ms:
            loop.at(t + p.selector_interval_ms, selector)

    # §1.2 step 3, §1.5 T+12, §5.5: the production governor, one plan at a time.
    def to_governor(t: int, s: Signal) -> None:
        gov_queue.append(s)
        if not busy["gov"]:
            busy["gov"] = True
            loop.at(t + rng.randint(*p.governor_service_ms), governor_done)

    def governor_done(t: int) -> None:
        s = gov_queue.pop(0)
        count = len(redis)  # Governor (Production) reads the Redis snapshot (§1.6)
        if count < slot_limit:
            permit(t, s)
        else:
            live = {k: v for k, v in locks.items() if v[0] > t}
            if s.symbol in live:
                res.notes.append(f"{t / 1000:7.1f}s GOV   {s.symbol} lock held: blocked")
            else:
                targeted = {close for _, close in live.values()} if p.skip_targeted_weakest else ()
                candidates = [
                    (score, sym)
                    for sym, score in redis.items()
                    if sym not in targeted and s.confidence - score >= p.rotation_threshold
                ]
                if not candidates:
                    res.notes.append(f"{t / 1000:7.1f}s GOV   {s.symbol} full, no rotation")
                else:
                    _, weakest = min(candidates)
                    locks[s.symbol] = (t + p.rotation_lock_ttl_ms, weakest)  # SETNX, TTL
                    res.notes.append(
                        f"{t / 1000:7.1f}s GOV   rotate {weakest} out for {s.symbol} "
                        f"(redis shows {count}); entry ALLOWED"
                    )
                    to_apply(t, ("CLOSE", weakest, None))
                    permit(t, s)  # the audited bug: allowed before the close is done
        if gov_queue:
            loop.at(t + rng.randint(*p.governor_service_ms), governor_done)
        else:
            busy["gov"] = False

    def permit(t: int, s: Signal) -> None:
        to_apply(t, ("ENTRY", s.symbol, s))

    # §1.2 step 4, §1.3: the apply layer's gates, on the lagging Redis view.
    def to_apply(t: int, plan: tuple[str, str, Signal | None]) -> None:
        apply_queue.append(plan)
        if not busy["apply"]:
            busy["apply"] = True
            loop.at(t + rng.randint(*p.apply_service_ms), apply_done)

    def apply_done(t: int) -> None:
        kind, symbol, s = apply_queue.pop(0)
        if kind == "CLOSE":
            start_close(t, symbol, "rotation")
        elif s is not None:
            count = len(redis)  # _count_active_positions(): SCAN quantum:position:*
            if count >= p.apply_max_open:
                res.notes.append(f"{t / 1000:7.1f}s APPLY {symbol} blocked: redis count {count}")
            elif symbol in redis:
                res.notes.append(f"{t / 1000:7.1f}s APPLY {symbol} blocked: anti-duplicate")
            elif cooldown.get(symbol, -(10**12)) + p.cooldown_ms > t:
                res.notes.append(f"{t / 1000:7.1f}s APPLY {symbol} blocked: cooldown")
            else:
                cooldown[symbol] = t
                res.notes.append(f"{t / 1000:7.1f}s APPLY {symbol} order sent (redis {count})")
                loop.at(
                    t + s.fill_delay_ms,
                    lambda now, s=s: open_position(
                        now, s.symbol, s.confidence, s.close_delay_ms, s.hold_ms
                    ),
                )
        if apply_queue:
            loop.at(t + rng.randint(*p.apply_service_ms), apply_done)
        else:
            busy["apply"] = False

    for pos in scenario.initial:  # T+0: already open and already in Redis
        exchange[pos.symbol] = redis[pos.symbol] = pos.score
        redis_stamp[pos.symbol] = 0
        close_delay[pos.symbol] = pos.close_delay_ms
        hold[pos.symbol] = pos.hold_ms
        loop.at(pos.hold_ms, lambda now, sym=pos.symbol: start_close(now, sym, "exit"))
    res.record(0, len(exchange))
    for s in scenario.signals:
        loop.at(s.t_ms, lambda now, s=s: on_signal(now, s))
    loop.at(p.selector_interval_ms, selector)
    loop.run(scenario.duration_ms + 60_000)  # let in-flight orders and closes land
    return res


# ---- the same events through our governor --------------------------------------------


def simulate_governor(
    scenario: Scenario,
    config: GovernorConfig | None = None,
    *,
    min_confidence: float = 0.55,
    clock_every_ms: int = 5_000,
) -> RaceResult:
    """Signals become SlotRequests at their own time (no buffer); the execution side
    follows the decisions with the scenario's delays: GRANTED -> order -> fill ->
    SlotFilled; ROTATE_OUT -> close -> flat -> SlotRelease(ROTATED_OUT); a position's
    own exit -> close -> SlotRelease(POSITION_CLOSED). The initial positions exist
    before the governor does, so they enter as fills with no reservation (admitted up to
    the hard cap, like any reconciled position); having no score they are never rotated.
    """
    cfg = config or GovernorConfig()
    core = GovernorCore(cfg)
    res = RaceResult("governor")
    loop = _Loop()
    exchange: dict[str, str] = {}  # symbol -> intent id: the truth
    closing: set[str] = set()
    close_delay: dict[str, int] = {}
    signals = {s.signal_id: s for s in scenario.signals}
    seq = [0]

    def send(t: int, command: Command) -> None:
        for d in core.handle(command):
            res.decisions.append(d)
            react(t, d)

    def cid(prefix: str) -> str:
        seq[0] += 1
        return f"{prefix}-{seq[0]}"

    def react(t: int, d: Decision) -> None:
        if d.kind is DecisionKind.GRANTED and d.intent_id in signals:
            s = signals[d.intent_id]
            loop.at(t + s.fill_delay_ms, lambda now, s=s: filled(now, s))
        elif d.kind is DecisionKind.ROTATE_OUT and d.symbol is not None:
            res.notes.append(f"{t / 1000:7.1f}s GOV   rotate {d.symbol} out for {d.for_intent_id}")
            start_close(t, d.symbol, ReleaseReason.ROTATED_OUT)
        elif d.kind is DecisionKind.FILL_REJECTED and d.symbol is not None:
            start_close(t, d.symbol, ReleaseReason.POSITION_CLOSED)

    def filled(t: int, s: Signal) -> None:
        exchange[s.symbol] = s.signal_id
        close_delay[s.symbol] = s.close_delay_ms
        res.entries += 1
        res.record(t, len(exchange))
        res.notes.append(f"{t / 1000:7.1f}s OPEN  {s.symbol} -> {len(exchange)} open")
        send(t, SlotFilled(cid("fill"), s.signal_id, s.symbol, t))
        loop.at(
            t + s.hold_ms,
            lambda now: start_close(now, s.symbol, ReleaseReason.POSITION_CLOSED),
        )

    def start_close(t: int, symbol: str, reason: ReleaseReason) -> None:
        if symbol not in exchange or symbol in closing:
            return
        closing.add(symbol)

        def flat(now: int) -> None:
            closing.discard(symbol)
            intent = exchange.pop(symbol, None)
            if intent is None:
                return
            res.closes += 1
            res.record(now, len(exchange))
            res.notes.append(f"{now / 1000:7.1f}s CLOSE {symbol} -> {len(exchange)} open")
            send(now, SlotRelease(cid("release"), symbol, intent, reason, now))

        loop.at(t + close_delay[symbol], flat)

    def on_signal(t: int, s: Signal) -> None:
        if s.confidence >= min_confidence:
            request = SlotRequest(s.signal_id, s.symbol, Side.LONG, Decimal(10), s.confidence, t)
            send(t, request)

    def tick(t: int) -> None:
        send(t, Clock(cid("clock"), t))
        if t + clock_every_ms <= scenario.duration_ms + 60_000:
            loop.at(t + clock_every_ms, tick)

    send(0, SetRegime("regime-0", scenario.regime, 0))
    for pos in scenario.initial:
        intent = f"initial-{pos.symbol}"
        exchange[pos.symbol] = intent
        close_delay[pos.symbol] = pos.close_delay_ms
        send(0, SlotFilled(f"fill-{intent}", intent, pos.symbol, 0))
        loop.at(
            pos.hold_ms,
            lambda now, sym=pos.symbol: start_close(now, sym, ReleaseReason.POSITION_CLOSED),
        )
    res.record(0, len(exchange))
    for s in scenario.signals:
        loop.at(s.t_ms, lambda now, s=s: on_signal(now, s))
    loop.at(clock_every_ms, tick)
    loop.run(scenario.duration_ms + 60_000)
    return res
