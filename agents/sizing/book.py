"""The sizing stage's view of the account: equity and the margin in use per symbol.

Sizing is a global decision (total margin <= 85 % of equity), so it keeps one book:
margin of open positions (from the positions topic), margin reserved for intents it has
sized and the governor has not yet settled, and realized PnL from closed trades. A
reservation ends when its intent is denied, expires, is released, or when the position it
became shows up on the positions topic (whose margin then counts instead). Every input
is applied once: closed trades by trade id, the rest are idempotent overwrites.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agents.sizing.model import SizedIntent, SizingState

ZERO = Decimal(0)


@dataclass
class ExposureBook:
    initial_equity: Decimal
    realized: Decimal = ZERO
    open_margin: dict[str, Decimal] = field(default_factory=dict)  # symbol -> margin
    open_intent: dict[str, str] = field(default_factory=dict)  # symbol -> intent id
    reserved: dict[str, tuple[str, Decimal]] = field(default_factory=dict)  # intent -> (sym, m)
    trades_seen: set[str] = field(default_factory=set)

    def state(self) -> SizingState:
        margin = dict(self.open_margin)
        for symbol, m in self.reserved.values():
            margin[symbol] = margin.get(symbol, ZERO) + m
        return SizingState(self.initial_equity + self.realized, margin)

    def reserve(self, sized: SizedIntent) -> None:
        self.reserved[sized.intent_id] = (sized.symbol, sized.margin)

    def settle(self, intent_id: str) -> None:
        """The governor ended the intent's reservation (denied, expired, released)."""
        self.reserved.pop(intent_id, None)

    def on_position(self, symbol: str, intent_id: str, status: str, margin: Decimal) -> None:
        self.reserved.pop(intent_id, None)
        if status == "OPEN":
            self.open_margin[symbol] = margin
            self.open_intent[symbol] = intent_id
        elif self.open_intent.get(symbol) in (intent_id, None):
            self.open_margin.pop(symbol, None)
            self.open_intent.pop(symbol, None)

    def on_trade(self, trade_id: str, net_pnl: Decimal) -> None:
        if trade_id not in self.trades_seen:
            self.trades_seen.add(trade_id)
            self.realized += net_pnl

    def snapshot(self) -> dict[str, Any]:
        return {
            "initial_equity": str(self.initial_equity),
            "realized": str(self.realized),
            "open": [[s, str(m), self.open_intent.get(s, "")] for s, m in self.open_margin.items()],
            "reserved": [[i, s, str(m)] for i, (s, m) in self.reserved.items()],
            "trades_seen": sorted(self.trades_seen),
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> ExposureBook:
        book = cls(Decimal(data["initial_equity"]), Decimal(data["realized"]))
        for symbol, margin, intent in data["open"]:
            book.open_margin[symbol] = Decimal(margin)
            if intent:
                book.open_intent[symbol] = intent
        book.reserved = {i: (s, Decimal(m)) for i, s, m in data["reserved"]}
        book.trades_seen = set(data["trades_seen"])
        return book
