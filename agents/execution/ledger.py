"""The execution ledger: one `IntentEntry` per intent id, plus indexes derived from them.

The ledger is the project's own idempotency store (the exchange is none: client ids are
unique only among open orders and forgotten after days, FACTS.md). Its durable form is a
compacted topic keyed by intent id whose values are `IntentEntry` records (tombstone =
`Forget`); `Ledger.restore` rebuilds it from those records in log order, and every index
here is derived, so the restored ledger equals the one that wrote them.

The core never mutates a ledger: it reads one and returns updates. The shell applies the
updates (`apply`) after they are durable.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from agents.execution.model import (
    LIVE_STATES,
    Forget,
    IntentEntry,
    LedgerUpdate,
    OrderRecord,
)


class Ledger:
    """Entries by intent id, with indexes by client order id and by symbol."""

    __slots__ = ("_by_coid", "_by_symbol", "_clocks", "_entries")

    def __init__(self, entries: Iterable[IntentEntry] = ()) -> None:
        self._entries: dict[str, IntentEntry] = {}
        self._by_coid: dict[str, str] = {}  # client order id -> intent id
        self._by_symbol: dict[str, dict[str, None]] = {}  # symbol -> ordered intent ids
        self._clocks: tuple[int, int] | None = (0, 0)  # (decision clock, clock); None: stale
        self.apply(entries)

    @classmethod
    def restore(cls, records: Iterable[LedgerUpdate]) -> Ledger:
        """The ledger a compacted topic describes: later records win, `Forget` deletes."""
        ledger = cls()
        ledger.apply(records)
        return ledger

    # ---- reads ---------------------------------------------------------------------------

    def get(self, intent_id: str) -> IntentEntry | None:
        return self._entries.get(intent_id)

    def __contains__(self, intent_id: object) -> bool:
        return intent_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[IntentEntry]:
        return iter(list(self._entries.values()))

    def find_order(self, client_order_id: str) -> tuple[IntentEntry, OrderRecord] | None:
        intent_id = self._by_coid.get(client_order_id)
        if intent_id is None:
            return None
        entry = self._entries[intent_id]
        rec = entry.order(client_order_id)
        return None if rec is None else (entry, rec)

    def on_symbol(self, symbol: str) -> list[IntentEntry]:
        """Every entry on `symbol`, oldest first."""
        return [self._entries[i] for i in self._by_symbol.get(symbol, ())]

    def live_on(self, symbol: str) -> list[IntentEntry]:
        """Entries with an order or a position at the exchange on `symbol`."""
        return [e for e in self.on_symbol(symbol) if e.state in LIVE_STATES]

    @property
    def decision_clock(self) -> int:
        """Event time of the newest governor decision applied to any entry (0: none)."""
        return self._maxima()[0]

    @property
    def clock(self) -> int:
        """Newest event time of any applied input (0: empty ledger)."""
        return self._maxima()[1]

    def _maxima(self) -> tuple[int, int]:
        """Both clocks are maxima over the entries, kept up to date as entries are put and
        recomputed only after an entry that may have held a maximum was dropped or lowered."""
        if self._clocks is None:
            self._clocks = (
                max((e.decided_at or 0 for e in self._entries.values()), default=0),
                max((e.updated_at for e in self._entries.values()), default=0),
            )
        return self._clocks

    def snapshot(self) -> dict[str, IntentEntry]:
        """A copy of the entries (frozen values): equal ledgers have equal snapshots."""
        return dict(self._entries)

    # ---- writes (the shell's, after the updates are durable) -------------------------------

    def apply(self, updates: Iterable[LedgerUpdate]) -> Ledger:
        for u in updates:
            if isinstance(u, Forget):
                self._drop(u.intent_id)
            elif isinstance(u, IntentEntry):
                self._put(u)
            else:
                raise TypeError(f"not a ledger update: {u!r}")
        return self

    def _put(self, entry: IntentEntry) -> None:
        old = self._entries.get(entry.intent_id)
        if old is not None and old.symbol != entry.symbol:
            self._drop(entry.intent_id)
            old = None
        if (
            old is not None
            and self._clocks is not None
            and (
                (entry.decided_at or 0) < (old.decided_at or 0) >= self._clocks[0]
                or entry.updated_at < old.updated_at >= self._clocks[1]
            )
        ):
            self._clocks = None  # a maximum went down (entries' times only grow in practice)
        self._entries[entry.intent_id] = entry
        if self._clocks is not None:
            d, u = self._clocks
            self._clocks = (max(d, entry.decided_at or 0), max(u, entry.updated_at))
        self._by_symbol.setdefault(entry.symbol, {})[entry.intent_id] = None
        for rec in entry.orders:
            self._by_coid[rec.client_order_id] = entry.intent_id

    def _drop(self, intent_id: str) -> None:
        entry = self._entries.pop(intent_id, None)
        if entry is None:
            return
        clocks = self._clocks
        if clocks is not None and (
            (entry.decided_at or 0) >= clocks[0] or entry.updated_at >= clocks[1]
        ):
            self._clocks = None  # it may have held a maximum (pruning drops old ones)
        for rec in entry.orders:
            if self._by_coid.get(rec.client_order_id) == intent_id:
                del self._by_coid[rec.client_order_id]
        ids = self._by_symbol.get(entry.symbol)
        if ids is not None:
            ids.pop(intent_id, None)
            if not ids:
                del self._by_symbol[entry.symbol]
