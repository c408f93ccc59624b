"""The selector's pure decision core: signals + bars + positions -> intents and rejections.

No I/O, no wall clock: windows open and close in event time, so a replay of the same
topics gives the same intents in the same order. The rules, in the order they apply
(docs/selector.md states each with its audit source):

On arrival of a signal (rejections are emitted at once):
1. HOLD is no candidate: nothing is emitted (it still counts for window completeness).
2. DUPLICATE_SIGNAL: its signal id was seen within `dedup_ttl_ms`.
3. NOT_IN_UNIVERSE: its symbol is not on the allowlist.
4. BELOW_CONFIDENCE_FLOOR: confidence < `min_confidence`.
5. LATE_SIGNAL: its event-time window has already closed.
Otherwise it waits in its window `[k * window_ms, (k + 1) * window_ms)`.

When a window closes (the watermark reaches its end, every universe symbol has reported
in it, or the stream ends), its candidates are ranked by confidence, then symbol, then
signal id, and taken in that order:
6. SAME_SYMBOL_IN_WINDOW: a better-ranked candidate on the same symbol is in the window.
7. POSITION_OPEN: the symbol has an open position.
8. PENDING_INTENT: an intent on the symbol was selected less than `pending_ttl_ms` ago and
   no position has shown up yet.
9. FLAT_SELL: a SHORT on a flat symbol while `skip_flat_sell` is on.
10. CORRELATED: rolling return correlation >= `max_correlation` with the symbol of an
    open position or a pending intent (including intents selected earlier in this window).
11. TOP_N_EXCEEDED: `top_n` intents were already selected in this window.
Otherwise: a `TradeIntent` with the configured stop and take-profit, and the symbol is
pending.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from agents.selector.config import SelectorConfig
from agents.selector.model import (
    Bar,
    Direction,
    Output,
    PositionUpdate,
    Rejected,
    RejectReason,
    Side,
    Signal,
    Stage,
    TradeIntent,
    intent_id_for,
    rejection_id_for,
)

SNAPSHOT_VERSION = 1


class InvalidInput(ValueError):
    """An input no rule can apply to (NaN confidence, price <= 0): the shell dead-letters
    it as `quantum.errors.InvalidRecord(reason, message)`."""

    def __init__(self, message: str, reason: str = "INVALID_VALUE") -> None:
        super().__init__(message)
        self.reason = reason


def _rank(signal: Signal) -> tuple[float, str, str]:
    return (-signal.confidence, signal.symbol, signal.signal_id)


def correlation(a: list[float], b: list[float]) -> float | None:
    """Pearson correlation of two equal-length series; None if either is constant."""
    n = len(a)
    if n != len(b) or n < 2:
        return None
    ma, mb = math.fsum(a) / n, math.fsum(b) / n
    da = [x - ma for x in a]
    db = [y - mb for y in b]
    saa = math.fsum(x * x for x in da)
    sbb = math.fsum(y * y for y in db)
    if saa <= 0.0 or sbb <= 0.0:
        return None
    rho = math.fsum(x * y for x, y in zip(da, db, strict=True)) / math.sqrt(saa * sbb)
    return max(-1.0, min(1.0, rho))


class SelectorCore:
    """Mutable for speed; every output is a function of the inputs in their order."""

    def __init__(self, config: SelectorConfig) -> None:
        self._cfg = config
        self._universe = config.universe or None
        self._seen: dict[str, int] = {}  # signal id -> event time (dedup)
        self._seen_order: deque[tuple[int, str]] = deque()  # (event time, id), arrival order
        self._windows: dict[int, list[Signal]] = {}  # open windows' candidates
        self._reported: dict[int, set[str]] = {}  # symbols that sent a signal per window
        self._closed_below = -1  # windows with index < this are closed (-1: none yet)
        self._watermark = -1
        self._last_close: dict[str, tuple[int, Decimal]] = {}
        self._returns: dict[str, deque[tuple[int, float]]] = {}
        self._open: dict[str, Side] = {}
        self._pending: dict[str, int] = {}  # symbol -> event time its intent was selected

    # ---- views -------------------------------------------------------------------------

    @property
    def config(self) -> SelectorConfig:
        return self._cfg

    @property
    def watermark(self) -> int:
        return self._watermark

    def open_windows(self) -> list[int]:
        return sorted(self._windows)

    def open_positions(self) -> dict[str, Side]:
        return dict(self._open)

    def correlation_between(self, a: str, b: str) -> float | None:
        """Rolling return correlation over their common bars, or None if too few."""
        ra, rb = self._returns.get(a), self._returns.get(b)
        if not ra or not rb:
            return None
        other = dict(rb)
        pairs = [(x, other[t]) for t, x in ra if t in other]
        if len(pairs) < self._cfg.correlation_min_periods:
            return None
        return correlation([x for x, _ in pairs], [y for _, y in pairs])

    # ---- inputs ------------------------------------------------------------------------

    def on_bar(self, bar: Bar) -> bool:
        """Take a closed bar's close into the symbol's rolling returns. A bar not newer
        than the symbol's last (a redelivery) changes nothing: returns False."""
        if bar.close <= 0:
            raise InvalidInput(f"bar {bar.symbol}@{bar.event_time}: close {bar.close} <= 0")
        last = self._last_close.get(bar.symbol)
        if last is not None and bar.event_time <= last[0]:
            return False
        if last is not None:
            ret = float(bar.close / last[1] - 1)
            series = self._returns.setdefault(
                bar.symbol, deque(maxlen=self._cfg.correlation_window)
            )
            series.append((bar.event_time, ret))
        self._last_close[bar.symbol] = (bar.event_time, bar.close)
        return True

    def on_position(self, update: PositionUpdate) -> None:
        """The positions topic says `symbol` is open on a side, or flat."""
        if update.side is None:
            self._open.pop(update.symbol, None)
        else:
            self._open[update.symbol] = update.side
            self._pending.pop(update.symbol, None)

    def on_signal(self, signal: Signal, *, watermark: int | None = None) -> list[Output]:
        """Handle one signal; returns its rejection (if any) and whatever windows close.

        watermark: the event time all input partitions have reached (see
        `quantum.end_of_stream.EventTimeWatermark`); by default the highest signal event
        time seen, which is right when the signals arrive in event-time order.
        """
        self._check(signal)
        out: list[Output] = []
        window = signal.event_time // self._cfg.window_ms
        late = window < self._closed_below
        if signal.direction == Direction.HOLD:
            if not late:
                self._reported.setdefault(window, set()).add(signal.symbol)
        else:
            reason = self._admit(signal, late)
            if reason is not None:
                out.append(self._reject(signal, reason, self._detail(signal, reason)))
            else:
                self._windows.setdefault(window, []).append(signal)
                self._reported.setdefault(window, set()).add(signal.symbol)
        self._advance(signal.event_time if watermark is None else watermark, out)
        if not late:
            self._close_if_complete(window, out)
        return out

    def on_watermark(self, watermark: int) -> list[Output]:
        """Event time has reached `watermark` on every input: close the windows it ends."""
        out: list[Output] = []
        self._advance(watermark, out)
        return out

    def on_end_of_stream(self) -> list[Output]:
        """No more signals will come: close every open window, in order."""
        out: list[Output] = []
        for window in sorted(self._reported.keys() | self._windows.keys()):
            self._close(window, out)
        return out

    # ---- rules -------------------------------------------------------------------------

    def _check(self, signal: Signal) -> None:
        c = signal.confidence
        if not isinstance(c, int | float) or not math.isfinite(c) or not 0.0 <= c <= 1.0:
            raise InvalidInput(f"signal {signal.signal_id}: confidence {c!r} not in [0, 1]")
        if not signal.price.is_finite() or signal.price <= 0:
            raise InvalidInput(f"signal {signal.signal_id}: price {signal.price} <= 0")
        if signal.event_time < 0:
            raise InvalidInput(f"signal {signal.signal_id}: event time {signal.event_time} < 0")

    def _admit(self, signal: Signal, late: bool) -> RejectReason | None:
        """Rules 2-5; records the id for dedup."""
        if signal.signal_id in self._seen:
            return RejectReason.DUPLICATE_SIGNAL
        self._seen[signal.signal_id] = signal.event_time
        self._seen_order.append((signal.event_time, signal.signal_id))
        if self._universe is not None and signal.symbol not in self._universe:
            return RejectReason.NOT_IN_UNIVERSE
        if signal.confidence < self._cfg.min_confidence:
            return RejectReason.BELOW_CONFIDENCE_FLOOR
        if late:
            return RejectReason.LATE_SIGNAL
        return None

    def _detail(self, signal: Signal, reason: RejectReason) -> str:
        if reason == RejectReason.BELOW_CONFIDENCE_FLOOR:
            return f"confidence {signal.confidence:.4f} < {self._cfg.min_confidence}"
        if reason == RejectReason.LATE_SIGNAL:
            return f"window ending {self._window_end(signal)} closed at watermark {self._watermark}"
        if reason == RejectReason.NOT_IN_UNIVERSE:
            return f"{signal.symbol} is not in the universe"
        return f"signal id {signal.signal_id} already handled"

    def _window_end(self, signal: Signal) -> int:
        return (signal.event_time // self._cfg.window_ms + 1) * self._cfg.window_ms

    def _advance(self, watermark: int, out: list[Output]) -> None:
        if watermark <= self._watermark:
            return
        self._watermark = watermark
        # The watermark W promises no more events before W (events *at* W may still come:
        # a bar's signals share its close time). Window k holds [k * w, (k + 1) * w), so it
        # is complete once (k + 1) * w <= W.
        ended_below = watermark // self._cfg.window_ms
        for window in sorted(self._reported.keys() | self._windows.keys()):
            if window >= ended_below:
                break
            self._close(window, out)
        self._closed_below = max(self._closed_below, ended_below)
        self._expire(watermark)

    def _close_if_complete(self, window: int, out: list[Output]) -> None:
        if not (self._cfg.close_when_complete and self._universe is not None):
            return
        if self._reported.get(window, set()) >= self._universe:
            for w in sorted(self._reported.keys() | self._windows.keys()):
                if w > window:
                    break
                self._close(w, out)

    def _close(self, window: int, out: list[Output]) -> None:
        candidates = sorted(self._windows.pop(window, []), key=_rank)
        self._reported.pop(window, None)
        self._closed_below = max(self._closed_below, window + 1)
        best: set[str] = set()
        selected = 0
        for signal in candidates:
            if signal.symbol in best:
                out.append(
                    self._reject(
                        signal,
                        RejectReason.SAME_SYMBOL_IN_WINDOW,
                        "a higher-ranked signal on the symbol is in the same window",
                    )
                )
                continue
            best.add(signal.symbol)
            verdict = self._judge(signal, selected)
            if verdict is not None:
                out.append(self._reject(signal, *verdict))
                continue
            out.append(self._intent(signal))
            self._pending[signal.symbol] = signal.event_time
            selected += 1

    def _judge(self, signal: Signal, selected: int) -> tuple[RejectReason, str] | None:
        """Rules 7-11 for a window's candidate; None: select it."""
        symbol = signal.symbol
        if symbol in self._open:
            return RejectReason.POSITION_OPEN, f"{symbol} is open {self._open[symbol].value}"
        since = self._pending.get(symbol)
        if since is not None and signal.event_time < since + self._cfg.pending_ttl_ms:
            return RejectReason.PENDING_INTENT, f"an intent on {symbol} was selected at {since}"
        if signal.direction == Direction.SHORT and self._cfg.skip_flat_sell:
            return RejectReason.FLAT_SELL, f"SHORT on flat {symbol} while flat sells are skipped"
        worst: tuple[float, str] | None = None
        for other in sorted(self._held(signal.event_time)):
            if other == symbol:
                continue
            rho = self.correlation_between(symbol, other)
            if (
                rho is not None
                and rho >= self._cfg.max_correlation
                and (worst is None or rho > worst[0])
            ):
                worst = (rho, other)
        if worst is not None:
            return (
                RejectReason.CORRELATED,
                f"return correlation {worst[0]:.3f} with {worst[1]} >= {self._cfg.max_correlation}",
            )
        if selected >= self._cfg.top_n:
            return RejectReason.TOP_N_EXCEEDED, f"{selected} already selected (top_n)"
        return None

    def _held(self, at: int) -> set[str]:
        """Symbols a new position would sit beside: open ones and live pending intents."""
        live = {s for s, t in self._pending.items() if at < t + self._cfg.pending_ttl_ms}
        return set(self._open) | live

    def _intent(self, signal: Signal) -> TradeIntent:
        entry = signal.price
        sl, tp = self._cfg.stop_loss_pct, self._cfg.take_profit_pct
        if signal.direction == Direction.LONG:
            side, stop, take = Side.LONG, entry * (1 - sl), entry * (1 + tp)
        else:
            side, stop, take = Side.SHORT, entry * (1 + sl), entry * (1 - tp)
        return TradeIntent(
            intent_id=intent_id_for(signal.signal_id),
            signal_id=signal.signal_id,
            symbol=signal.symbol,
            side=side,
            entry_price=entry,
            stop_loss=stop,
            take_profit=take,
            leverage=self._cfg.leverage,
            score=float(signal.confidence),
            event_time=signal.event_time,
        )

    def _reject(self, signal: Signal, reason: RejectReason, detail: str) -> Rejected:
        return Rejected(
            rejection_id=rejection_id_for(signal.signal_id, Stage.SELECTION, reason.value),
            stage=Stage.SELECTION,
            reason=reason.value,
            symbol=signal.symbol,
            signal_id=signal.signal_id,
            detail=detail,
            event_time=signal.event_time,
        )

    def _expire(self, now: int) -> None:
        """Forget dedup ids and pending intents older than their TTLs (bounded state)."""
        horizon = now - self._cfg.dedup_ttl_ms
        # Arrival order is event-time order up to a window's spread, so popping from the
        # front is O(1) per id; an id that arrived out of order lives a little longer.
        while self._seen_order and self._seen_order[0][0] < horizon:
            _, sid = self._seen_order.popleft()
            self._seen.pop(sid, None)
        gone = [s for s, t in self._pending.items() if now >= t + self._cfg.pending_ttl_ms]
        for s in gone:
            del self._pending[s]

    # ---- state for the shell's table ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state; `SelectorCore.restore(config, snapshot)` continues from it."""

        def sig(s: Signal) -> list[Any]:
            return [
                s.signal_id,
                s.symbol,
                s.direction.value,
                s.confidence,
                s.event_time,
                str(s.price),
            ]

        return {
            "version": SNAPSHOT_VERSION,
            "seen": list(self._seen.items()),
            "windows": [[w, [sig(s) for s in c]] for w, c in sorted(self._windows.items())],
            "reported": [[w, sorted(s)] for w, s in sorted(self._reported.items())],
            "closed_below": self._closed_below,
            "watermark": self._watermark,
            "last_close": [[s, t, str(c)] for s, (t, c) in sorted(self._last_close.items())],
            "returns": [[s, [list(x) for x in r]] for s, r in sorted(self._returns.items())],
            "open": sorted([s, side.value] for s, side in self._open.items()),
            "pending": sorted([s, t] for s, t in self._pending.items()),
        }

    @classmethod
    def restore(cls, config: SelectorConfig, snapshot: Mapping[str, Any]) -> SelectorCore:
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"selector snapshot version {snapshot.get('version')!r} unknown")
        core = cls(config)
        core._seen = {sid: int(t) for sid, t in snapshot["seen"]}
        core._seen_order = deque((t, sid) for sid, t in core._seen.items())
        core._windows = {
            int(w): [
                Signal(sid, sym, Direction(d), float(c), int(t), Decimal(p))
                for sid, sym, d, c, t, p in cands
            ]
            for w, cands in snapshot["windows"]
        }
        core._reported = {int(w): set(s) for w, s in snapshot["reported"]}
        core._closed_below = int(snapshot["closed_below"])
        core._watermark = int(snapshot["watermark"])
        core._last_close = {s: (int(t), Decimal(c)) for s, t, c in snapshot["last_close"]}
        core._returns = {
            s: deque(((int(t), float(x)) for t, x in r), maxlen=config.correlation_window)
            for s, r in snapshot["returns"]
        }
        core._open = {s: Side(side) for s, side in snapshot["open"]}
        core._pending = {s: int(t) for s, t in snapshot["pending"]}
        return core
