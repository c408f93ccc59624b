"""What the harvest and exit-guard shells share: per-position core states kept under one
table key each, positions and bars routed to them, and the two races of a live pipeline.

A `PositionProcessor` is a `KeyedProcessor` (agents/stateful.py) for a core that keeps one
state per position. It reads `positions` and `market.ticks` and writes `exit.intents` and
`risk.warnings`; the harvest and the guard each plug their pure core in through four
methods. Table keys: `pos:<position intent id>` (the core's JSON state),
`pending:<position intent id>` (a position waiting for its stop-loss, the raw record),
`bar:<symbol>` (the symbol's last bar, the raw record).

The two races (docs/exits.md, "Shells"):

* **The entry bar.** A position is opened by a fill at a bar's open, and the bar that caused
  the fill reaches this processor on `market.ticks` before the position record does. So the
  processor keeps each symbol's last bar, and a new position is first evaluated against it
  (the core skips a bar that opened before the position did).
* **The stop-loss.** The positions agent reports the entry fill before execution's
  protective stop is acknowledged, so a position's first record usually has no stop-loss.
  With `wait_for_stop`, a new position without one is held until its symbol's next bar;
  a record with the stop meanwhile starts it with the stop, else the bar starts it with the
  configured default and a `StopLossDefaulted` warning.

A record is applied all or nothing: on any error the in-memory state is put back as it was
before the record, and the shell dead-letters it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Generic, TypeVar

from agents.exits.codec import (
    bar_from_record,
    exit_intent_to_record,
    position_from_record,
    stop_defaulted_to_record,
)
from agents.exits.model import Bar, ExitIntent, PositionView, StopLossDefaulted
from agents.stateful import Out, Record
from exchange.model import OrderType
from exchange.rules import ExchangeRules
from quantum.end_of_stream import EndOfStream
from quantum.errors import InvalidRecord
from topologies.declaration import EXIT_INTENTS, MARKET_TICKS, POSITIONS, RISK_WARNINGS

S = TypeVar("S")  # a core's per-position state

POS = "pos:"
PENDING = "pending:"
BAR = "bar:"


class PositionProcessor(ABC, Generic[S]):
    """Routes records to a per-position core; see the module docstring."""

    def __init__(
        self,
        entries: dict[str, dict[str, Any]],
        *,
        wait_for_stop: bool,
        retention_ms: int,
        rules: ExchangeRules | None = None,
    ) -> None:
        self.wait_for_stop = wait_for_stop
        self.retention_ms = retention_ms
        self.rules = rules
        self.states: dict[str, S] = {}
        # symbol -> the ids of its states: a bar visits its own symbol's positions only, not
        # every state kept (closed ones stay for `retention_ms`). Exact at all times.
        self._by_symbol: dict[str, set[str]] = {}
        self.pending: dict[str, dict[str, Any]] = {}
        self.bars: dict[str, dict[str, Any]] = {}
        self._changed: dict[str, dict[str, Any] | None] = {}
        for key in sorted(entries):
            value = entries[key]
            if key.startswith(POS):
                self.states[key[len(POS) :]] = self.state_from_json(value)
            elif key.startswith(PENDING):
                self.pending[key[len(PENDING) :]] = value
            elif key.startswith(BAR):
                self.bars[key[len(BAR) :]] = value
            else:
                self.restore_extra(key, value)
        self._index()

    # ---- what a core plugs in ----------------------------------------------------------

    @property
    @abstractmethod
    def enabled(self) -> bool: ...

    @abstractmethod
    def apply_position(
        self, state: S | None, pos: PositionView
    ) -> tuple[S | None, list[ExitIntent], list[StopLossDefaulted]]: ...

    @abstractmethod
    def apply_bar(self, state: S, bar: Bar) -> tuple[S, list[ExitIntent]]: ...

    @abstractmethod
    def state_to_json(self, state: S) -> dict[str, Any]: ...

    @abstractmethod
    def state_from_json(self, value: dict[str, Any]) -> S: ...

    @abstractmethod
    def describe(self, state: S) -> tuple[str, bool, int]:
        """(symbol, closed, event time of the last position record applied)."""

    def restore_extra(self, key: str, value: dict[str, Any]) -> None:
        raise ValueError(f"unknown state key {key!r}")

    def extra_snapshot(self) -> Any:
        """Whatever else the processor keeps, to put back if a record fails (immutable)."""
        return None

    def extra_restore(self, saved: Any) -> None:
        return None

    def on_other(self, record: Record) -> list[Out]:
        raise InvalidRecord("INVALID_VALUE", f"no input {record.topic!r} here")

    def after_position(self, value: dict[str, Any], pos: PositionView) -> list[Out]:
        return []

    # ---- Processor (with dirty parts) ------------------------------------------------

    def on_record(self, record: Record) -> list[Out]:
        saved = (
            dict(self.states),
            dict(self.pending),
            dict(self.bars),
            dict(self._changed),
            self.extra_snapshot(),
        )
        try:
            if record.topic == POSITIONS:
                return self._on_position(record.value)
            if record.topic == MARKET_TICKS:
                return self._on_bar(record.value)
            return self.on_other(record)
        except BaseException:
            self.states, self.pending, self.bars, self._changed, extra = saved
            self.extra_restore(extra)
            self._index()
            raise

    def on_end_of_stream(self, marker: EndOfStream) -> list[Out]:
        return []  # nothing waits for the end: every exit is decided on its bar

    def dirty_parts(self) -> dict[str, dict[str, Any] | None]:
        """The keys a record touched (None deletes one): agents/stateful.py stores each."""
        changed, self._changed = self._changed, {}
        return changed

    def _index(self) -> None:
        self._by_symbol = {}
        for pid, state in self.states.items():
            self._by_symbol.setdefault(self.describe(state)[0], set()).add(pid)

    # ---- helpers for subclasses --------------------------------------------------------

    def set_extra(self, key: str, value: dict[str, Any] | None) -> None:
        self._changed[key] = value

    def open_states(self) -> Iterator[tuple[str, S]]:
        for pid in sorted(self.states):
            if not self.describe(self.states[pid])[1]:
                yield pid, self.states[pid]

    def put(self, pid: str, state: S) -> None:
        if pid not in self.states:
            self._by_symbol.setdefault(self.describe(state)[0], set()).add(pid)
        self.states[pid] = state
        self._changed[POS + pid] = self.state_to_json(state)

    def exit_outs(self, exits: list[ExitIntent]) -> list[Out]:
        return [Out(EXIT_INTENTS, exit_intent_to_record(x), x.symbol.encode()) for x in exits]

    # ---- routing -----------------------------------------------------------------------

    def _qty_step(self, symbol: str) -> Decimal | None:
        rules = None if self.rules is None else self.rules.get(symbol)
        return None if rules is None else rules.lot(OrderType.MARKET).step

    def _on_position(self, value: dict[str, Any]) -> list[Out]:
        pos = position_from_record(value, qty_step=self._qty_step(value["symbol"]))
        pos.check()
        pid = pos.intent_id
        outs: list[Out] = []
        if (
            self.enabled
            and self.wait_for_stop
            and pid not in self.states
            and pos.stop_loss is None
            and not pos.closed
            and pos.quantity > 0
        ):
            self.pending[pid] = value
            self._changed[PENDING + pid] = value
        else:
            if self.pending.pop(pid, None) is not None:
                self._changed[PENDING + pid] = None
            outs += self._apply(pos)
        return outs + self.after_position(value, pos)

    def _apply(self, pos: PositionView) -> list[Out]:
        pid = pos.intent_id
        old = self.states.get(pid)
        new, exits, warnings = self.apply_position(old, pos)
        if new is None:
            return []
        held = self.bars.get(pos.symbol)
        if old is None and held is not None:
            new, more = self.apply_bar(new, bar_from_record(held))  # the entry bar
            exits = exits + more
        self.put(pid, new)
        outs = [
            Out(RISK_WARNINGS, stop_defaulted_to_record(w), w.symbol.encode()) for w in warnings
        ]
        return outs + self.exit_outs(exits)

    def _on_bar(self, value: dict[str, Any]) -> list[Out]:
        bar = bar_from_record(value)
        bar.check()
        outs: list[Out] = []
        for pid in sorted(self.pending):
            record = self.pending[pid]
            if record["symbol"] != bar.symbol:
                continue
            del self.pending[pid]
            self._changed[PENDING + pid] = None
            # waited one bar for its stop-loss: now the default and the warning
            outs += self._apply(position_from_record(record, qty_step=self._qty_step(bar.symbol)))
        for pid in sorted(self._by_symbol.get(bar.symbol, ())):
            state = self.states[pid]
            _, closed, updated_at = self.describe(state)
            if closed:
                if bar.close_time_ms - updated_at >= self.retention_ms:
                    del self.states[pid]
                    self._by_symbol[bar.symbol].discard(pid)
                    self._changed[POS + pid] = None
                continue
            new, exits = self.apply_bar(state, bar)
            if new != state:
                self.put(pid, new)
            outs += self.exit_outs(exits)
        held = self.bars.get(bar.symbol)
        if held is None or int(held["close_time"]) < bar.close_time_ms:
            self.bars[bar.symbol] = value
            self._changed[BAR + bar.symbol] = value
        return outs
