"""The account's equity as the drawdown breaker sees it, from the `positions` records alone.

Equity = initial equity + for every position, realized PnL - fees + unrealized PnL (at its
mark). A position record carries all three, so no other topic is needed: the trades topic
would repeat the closed positions' realized PnL (and arrive on its own schedule, counting
a close twice or not at all for a moment). An open position's share is replaced by each
of its records; a closed position's final share moves into `settled`, and its id is kept
(for `retention_ms` of event time) so that a late or redelivered OPEN record of it cannot
count it again. Pure and JSON-safe, like the cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from agents.exits.model import dstr

SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class EquityBook:
    initial: Decimal
    settled: Decimal = Decimal(0)  # net PnL of the closed positions
    open: dict[str, Decimal] = field(default_factory=dict)  # intent id -> net PnL so far
    closed: dict[str, int] = field(default_factory=dict)  # intent id -> when it closed
    last_ms: int = -1  # event time of the latest record taken in

    def equity(self) -> Decimal:
        return self.initial + self.settled + sum(self.open.values(), Decimal(0))

    def to_json(self) -> dict[str, Any]:
        return {
            "v": SNAPSHOT_VERSION,
            "initial": dstr(self.initial),
            "settled": dstr(self.settled),
            "open": {k: dstr(v) for k, v in self.open.items()},
            "closed": dict(self.closed),
            "last_ms": self.last_ms,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EquityBook:
        if d.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"equity book version {d.get('v')!r}, expected {SNAPSHOT_VERSION}")
        return cls(
            initial=Decimal(d["initial"]),
            settled=Decimal(d["settled"]),
            open={k: Decimal(v) for k, v in d["open"].items()},
            closed={k: int(v) for k, v in d["closed"].items()},
            last_ms=int(d["last_ms"]),
        )


def on_position(
    book: EquityBook,
    *,
    intent_id: str,
    closed: bool,
    realized_pnl: Decimal,
    fees: Decimal,
    unrealized_pnl: Decimal,
    event_time_ms: int,
    retention_ms: int,
) -> EquityBook:
    """Take one positions record. A record of a position already settled changes nothing."""
    if intent_id in book.closed:
        return book
    share = realized_pnl - fees + (Decimal(0) if closed else unrealized_pnl)
    now = max(book.last_ms, event_time_ms)
    opened = dict(book.open)
    if not closed:
        opened[intent_id] = share
        return replace(book, open=opened, last_ms=now)
    opened.pop(intent_id, None)
    kept = {k: t for k, t in book.closed.items() if now - t < retention_ms}
    kept[intent_id] = event_time_ms
    return replace(book, settled=book.settled + share, open=opened, closed=kept, last_ms=now)
