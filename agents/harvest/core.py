"""The harvest of one open position: R-multiple ladder, break-even move, trailing stop,
emergency exit at the stop, and (symmetric mode) partial stops on the loss side.

Pure: `(config, state, input) -> (new state, outputs)`, no I/O, no clock. The state is
small and JSON-safe (`HarvestState.to_json` / `from_json`), one per position, so the
shell keeps it in a table keyed by the position's intent id.

Closed bars are evaluated with one intrabar rule (docs/exits.md): the price is assumed
to go from the previous close to the open (a gap: every level crossed fills at the
open), then to the bar's *adverse* extreme, then to its favourable extreme, then to the
close (long: open -> low -> high -> close; short: open -> high -> low -> close). Adverse
first is the conservative reading of a bar that holds both a stop and a target. Each leg
is a continuous move, so every level it crosses fires in price order at the level itself:
one bar can fire several ladder steps, in order, and no step is ever skipped. A step
fires at most once, because the state counts the steps fired.

Everything runs in "signed price" s = side * price (side +1 long, -1 short), so larger
is always better for the position and one code path serves both sides exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal
from typing import Any

from agents.exits.model import (
    Bar,
    ExitIntent,
    ExitReason,
    PositionView,
    Side,
    StopLossDefaulted,
    dec,
    dstr,
    sign,
)
from agents.harvest.config import HarvestConfig, Rung
from quantum.errors import InvalidRecord

SNAPSHOT_VERSION = 1
PROCESSOR = "harvest"
_ATR_DIGITS = 12


@dataclass(frozen=True, slots=True)
class HarvestState:
    """Per-position harvest state. Prices are prices (not signed); `peak` is the best price
    seen since entry (highest for a long, lowest for a short)."""

    intent_id: str
    symbol: str
    side: Side
    entry: Decimal
    risk: Decimal  # R in price units
    initial_qty: Decimal
    open_qty: Decimal  # what this processor believes is still open
    stop: Decimal  # the stop in force
    stop_kind: ExitReason  # which rule set it: STOP_LOSS | BREAK_EVEN | TRAILING_STOP
    tp_fired: int  # profit-side ladder steps fired (always the first tp_fired ones)
    sl_fired: int  # loss-side steps fired (symmetric mode)
    be_done: bool
    trailing: bool  # the trailing stop is armed
    peak: Decimal
    last_price: Decimal  # where the price was last seen (entry, then each bar's close)
    atr: Decimal | None  # own incremental Wilder ATR (None before the first bar)
    atr_n: int
    last_bar_ms: int  # close time of the last bar taken in (-1: none); older bars are ignored
    opened_at_ms: int
    updated_at_ms: int  # event time of the last position record applied
    qty_step: Decimal | None
    closed: bool = False

    @property
    def fired_any(self) -> bool:
        return self.tp_fired > 0 or self.sl_fired > 0 or self.open_qty < self.initial_qty

    def to_json(self) -> dict[str, Any]:
        return {
            "v": SNAPSHOT_VERSION,
            "intent_id": self.intent_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "entry": dstr(self.entry),
            "risk": dstr(self.risk),
            "initial_qty": dstr(self.initial_qty),
            "open_qty": dstr(self.open_qty),
            "stop": dstr(self.stop),
            "stop_kind": self.stop_kind.value,
            "tp_fired": self.tp_fired,
            "sl_fired": self.sl_fired,
            "be_done": self.be_done,
            "trailing": self.trailing,
            "peak": dstr(self.peak),
            "last_price": dstr(self.last_price),
            "atr": dstr(self.atr),
            "atr_n": self.atr_n,
            "last_bar_ms": self.last_bar_ms,
            "opened_at_ms": self.opened_at_ms,
            "updated_at_ms": self.updated_at_ms,
            "qty_step": dstr(self.qty_step),
            "closed": self.closed,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> HarvestState:
        if d.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"harvest state version {d.get('v')!r}, expected {SNAPSHOT_VERSION}")
        return cls(
            intent_id=d["intent_id"],
            symbol=d["symbol"],
            side=Side(d["side"]),
            entry=Decimal(d["entry"]),
            risk=Decimal(d["risk"]),
            initial_qty=Decimal(d["initial_qty"]),
            open_qty=Decimal(d["open_qty"]),
            stop=Decimal(d["stop"]),
            stop_kind=ExitReason(d["stop_kind"]),
            tp_fired=int(d["tp_fired"]),
            sl_fired=int(d["sl_fired"]),
            be_done=bool(d["be_done"]),
            trailing=bool(d["trailing"]),
            peak=Decimal(d["peak"]),
            last_price=Decimal(d["last_price"]),
            atr=dec(d["atr"]),
            atr_n=int(d["atr_n"]),
            last_bar_ms=int(d["last_bar_ms"]),
            opened_at_ms=int(d["opened_at_ms"]),
            updated_at_ms=int(d["updated_at_ms"]),
            qty_step=dec(d["qty_step"]),
            closed=bool(d["closed"]),
        )


# ---- positions ------------------------------------------------------------------------


def on_position(
    cfg: HarvestConfig, state: HarvestState | None, pos: PositionView
) -> tuple[HarvestState | None, list[StopLossDefaulted]]:
    """Apply a `positions` record: start harvesting a new position, follow its quantity
    down as exits fill, mark it closed. A record older than the last one applied is a
    redelivery and changes nothing. Returns the state (None: nothing to keep) and at most
    one StopLossDefaulted warning (a new position without a stop-loss)."""
    if not cfg.enabled:
        return None, []
    pos.check()
    if state is None:
        if pos.closed or pos.quantity == 0:
            return None, []
        return _open(cfg, pos, carry=None)
    if pos.intent_id != state.intent_id or pos.symbol != state.symbol:
        raise InvalidRecord(
            "INVALID_VALUE",
            f"position {pos.intent_id}/{pos.symbol} sent to the state of "
            f"{state.intent_id}/{state.symbol}",
        )
    if state.closed or pos.updated_at_ms < state.updated_at_ms:
        return state, []
    if pos.closed or pos.quantity == 0:
        return replace(state, open_qty=Decimal(0), closed=True, updated_at_ms=pos.updated_at_ms), []
    if pos.quantity > state.initial_qty and not state.fired_any:
        # The entry is still filling (more quantity, nothing exited yet): start over from
        # the new average entry, keeping the market data already seen.
        return _open(cfg, pos, carry=state)
    return replace(
        state, open_qty=min(state.open_qty, pos.quantity), updated_at_ms=pos.updated_at_ms
    ), []


def _open(
    cfg: HarvestConfig, pos: PositionView, carry: HarvestState | None
) -> tuple[HarvestState, list[StopLossDefaulted]]:
    sgn = sign(pos.side)
    warnings: list[StopLossDefaulted] = []
    stop = pos.stop_loss
    if stop is None:
        stop = pos.entry_price * (1 - sgn * cfg.default_stop_pct)
        if carry is None:
            warnings.append(
                StopLossDefaulted(
                    pos.intent_id,
                    pos.symbol,
                    PROCESSOR,
                    stop,
                    cfg.default_stop_pct,
                    pos.updated_at_ms,
                )
            )
    if sgn * (pos.entry_price - stop) <= 0:
        raise InvalidRecord(
            "INVALID_VALUE",
            f"position {pos.intent_id}: stop-loss {stop} is not on the losing side of "
            f"entry {pos.entry_price} for a {pos.side.value}",
        )
    risk = pos.risk if pos.risk is not None else abs(pos.entry_price - stop)
    state = HarvestState(
        intent_id=pos.intent_id,
        symbol=pos.symbol,
        side=pos.side,
        entry=pos.entry_price,
        risk=risk,
        initial_qty=pos.quantity,
        open_qty=pos.quantity,
        stop=stop,
        stop_kind=ExitReason.STOP_LOSS,
        tp_fired=0,
        sl_fired=0,
        be_done=False,
        trailing=cfg.trailing_enabled and cfg.trail_start_r is None and not cfg.rungs,
        peak=pos.entry_price,
        last_price=pos.entry_price if carry is None else carry.last_price,
        atr=None if carry is None else carry.atr,
        atr_n=0 if carry is None else carry.atr_n,
        last_bar_ms=-1 if carry is None else carry.last_bar_ms,
        opened_at_ms=pos.opened_at_ms,
        updated_at_ms=pos.updated_at_ms,
        qty_step=pos.qty_step,
    )
    return state, warnings


# ---- bars -----------------------------------------------------------------------------


def on_bar(
    cfg: HarvestConfig, state: HarvestState, bar: Bar
) -> tuple[HarvestState, list[ExitIntent]]:
    """Evaluate one closed bar; returns the new state and the exits it fired, in order.

    A bar that closed at or before the last one taken in is a redelivery: no change. A bar
    that opened before the position did (the entry bar) is not evaluated, since its high
    and low may predate the entry; it still feeds the ATR.
    """
    bar.check()
    if bar.symbol != state.symbol:
        raise InvalidRecord(
            "INVALID_VALUE", f"bar of {bar.symbol} sent to the harvest of {state.symbol}"
        )
    if not cfg.enabled or state.closed or bar.close_time_ms <= state.last_bar_ms:
        return state, []
    exits: list[ExitIntent] = []
    if bar.open_time_ms >= state.opened_at_ms:
        atr = bar.atr if bar.atr is not None else state.atr
        walk = _Walk(cfg, state, bar, atr)
        walk.run()
        state, exits = walk.result()
    return _after_bar(cfg, state, bar), exits


def _after_bar(cfg: HarvestConfig, st: HarvestState, bar: Bar) -> HarvestState:
    """Take the bar into the incremental ATR (Wilder's: a plain mean while warming up)."""
    prev = st.last_price if st.last_bar_ms >= 0 else None
    tr = bar.high - bar.low
    if prev is not None:
        tr = max(tr, abs(bar.high - prev), abs(bar.low - prev))
    if st.atr is None or st.atr_n == 0:
        atr, n = tr, 1
    elif st.atr_n < cfg.atr_period:
        atr, n = (st.atr * st.atr_n + tr) / (st.atr_n + 1), st.atr_n + 1
    else:
        atr, n = (st.atr * (cfg.atr_period - 1) + tr) / cfg.atr_period, st.atr_n
    return replace(
        st, atr=_round_sig(atr), atr_n=n, last_price=bar.close, last_bar_ms=bar.close_time_ms
    )


def _round_sig(x: Decimal, digits: int = _ATR_DIGITS) -> Decimal:
    """`x` to `digits` significant digits. A short ATR keeps the state small, and keeps
    `peak - k * ATR` exact within Decimal's 28 digits, so a long and its mirrored short
    compute the very same stops."""
    if x == 0:
        return x
    return x.quantize(Decimal(1).scaleb(x.adjusted() - digits + 1))


class _Walk:
    """One bar's path through the levels, in signed prices (larger = better)."""

    def __init__(self, cfg: HarvestConfig, st: HarvestState, bar: Bar, atr: Decimal | None) -> None:
        self.cfg, self.st, self.bar = cfg, st, bar
        self.sgn = sign(st.side)
        self.s_entry = self.sgn * st.entry
        self.rungs: tuple[Rung, ...] = cfg.rungs
        self.loss_rungs: tuple[Rung, ...] = cfg.loss_rungs
        self.trail_d = cfg.trail_atr_mult * atr if atr is not None and atr > 0 else None
        # mutable copy of the state
        self.open_qty = st.open_qty
        self.s_stop = self.sgn * st.stop
        self.stop_kind = st.stop_kind
        self.tp_fired, self.sl_fired = st.tp_fired, st.sl_fired
        self.be_done, self.trailing = st.be_done, st.trailing
        self.s_peak = self.sgn * st.peak
        self.closed = False
        self.exits: list[ExitIntent] = []

    def level(self, r: Decimal) -> Decimal:
        return self.s_entry + r * self.st.risk

    def run(self) -> None:
        b = self.bar
        s_hi, s_lo = self.sgn * b.high, self.sgn * b.low
        points = [self.sgn * b.open, min(s_hi, s_lo), max(s_hi, s_lo), self.sgn * b.close]
        cur = self.sgn * self.st.last_price
        for k, target in enumerate(points):
            if self.closed:
                return
            self._leg(cur, target, gap=k == 0)
            cur = target

    def _leg(self, a: Decimal, b: Decimal, *, gap: bool) -> None:
        if b > a:
            self._up(a, b, gap)
        elif b < a:
            self._down(a, b, gap)

    # favourable move: ladder steps, break-even move, trailing
    def _up(self, a: Decimal, b: Decimal, gap: bool) -> None:
        events: list[tuple[Decimal, int, int]] = []  # (level, order at equal level, index)
        for i in range(self.tp_fired, len(self.rungs)):
            lv = self.level(self.rungs[i].r)
            if lv > b:
                break
            events.append((lv, 0, i))
        if self.cfg.break_even_r is not None and not self.be_done:
            lv = self.level(self.cfg.break_even_r)
            if lv <= b:
                events.append((lv, 1, -1))
        if self.cfg.trailing_enabled and not self.trailing and self.cfg.trail_start_r is not None:
            lv = self.level(self.cfg.trail_start_r)
            if lv <= b:
                events.append((lv, 2, -1))
        for lv, kind, i in sorted(events):
            if kind == 0:
                fill = b if gap else max(lv, a)
                rung = self.rungs[i]
                self._exit(
                    f"tp{i + 1}",
                    ExitReason.HARVEST,
                    self._rung_qty(rung),
                    fill,
                    f"ladder step {i + 1}: +{rung.r}R, {rung.fraction} of the initial quantity",
                )
                self.tp_fired = i + 1
                if self.closed:
                    return
                if (
                    self.tp_fired == len(self.rungs)
                    and self.cfg.trailing_enabled
                    and self.cfg.trail_start_r is None
                ):
                    self.trailing = True
            elif kind == 1:
                self.be_done = True
                be = self.level(self.cfg.break_even_offset_r)
                if be > self.s_stop:
                    self.s_stop, self.stop_kind = be, ExitReason.BREAK_EVEN
            else:
                self.trailing = True
        self.s_peak = max(self.s_peak, b)
        if self.trailing and self.trail_d is not None:
            t = self.s_peak - self.trail_d
            if t > self.s_stop:
                self.s_stop, self.stop_kind = t, ExitReason.TRAILING_STOP

    # adverse move: loss-side steps, then the stop
    def _down(self, a: Decimal, b: Decimal, gap: bool) -> None:
        events: list[tuple[Decimal, int, int]] = []  # (-level, order at equal level, index)
        for j in range(self.sl_fired, len(self.loss_rungs)):
            lv = self.level(-self.loss_rungs[j].r)
            if lv < b:
                break
            events.append((-lv, 0, j))
        stop_live = self.stop_kind is not ExitReason.STOP_LOSS or self.cfg.stop_enabled
        if stop_live and self.s_stop >= b:
            events.append((-self.s_stop, 1, -1))
        for neg_lv, kind, j in sorted(events):
            fill = b if gap else min(-neg_lv, a)
            if kind == 0:
                rung = self.loss_rungs[j]
                self._exit(
                    f"sl{j + 1}",
                    ExitReason.PARTIAL_STOP,
                    self._rung_qty(rung),
                    fill,
                    f"loss step {j + 1}: -{rung.r}R, {rung.fraction} of the initial quantity",
                )
                self.sl_fired = j + 1
            else:
                what = {
                    ExitReason.STOP_LOSS: "initial stop",
                    ExitReason.BREAK_EVEN: "break-even stop",
                    ExitReason.TRAILING_STOP: "trailing stop",
                }[self.stop_kind]
                self._exit("stop", self.stop_kind, self.open_qty, fill, f"{what} hit")
            if self.closed:
                return

    def _rung_qty(self, rung: Rung) -> Decimal:
        q = rung.fraction * self.st.initial_qty
        step = self.st.qty_step
        if step is not None:
            q = (q / step).to_integral_value(rounding=ROUND_DOWN) * step
            if self.open_qty - q < step:  # never leave dust that cannot be sold
                q = self.open_qty
        return min(q, self.open_qty)

    def _exit(self, step: str, reason: ExitReason, qty: Decimal, s_fill: Decimal, why: str) -> None:
        if qty > 0:
            self.exits.append(
                ExitIntent(
                    exit_id=f"{self.st.intent_id}:{step}",
                    symbol=self.st.symbol,
                    position_intent_id=self.st.intent_id,
                    quantity=qty,
                    reason=reason,
                    event_time_ms=self.bar.close_time_ms,
                    reference_price=self.sgn * s_fill,
                    detail=why,
                )
            )
            self.open_qty -= qty
        if self.open_qty <= 0 or step == "stop":
            self.closed = True

    def result(self) -> tuple[HarvestState, list[ExitIntent]]:
        st = replace(
            self.st,
            open_qty=self.open_qty,
            stop=self.sgn * self.s_stop,
            stop_kind=self.stop_kind,
            tp_fired=self.tp_fired,
            sl_fired=self.sl_fired,
            be_done=self.be_done,
            trailing=self.trailing,
            peak=self.sgn * self.s_peak,
            closed=self.closed,
        )
        return st, self.exits
