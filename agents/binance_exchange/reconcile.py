"""Reconciliation, pure: the exchange's positions and open orders against ours -> a diff,
and whether a diff has lasted long enough to halt.

Ours is the positions topic (latest record per symbol): an OPEN position's signed
quantity, and the protective orders it says are in force (`stop_loss`, `take_profit`:
the triggers of its open stop and take-profit orders, docs/execution.md "Positions").
The exchange's is `GET /fapi/v3/positionRisk`, `openOrders` and `openAlgoOrders`.

Differences (`Mismatch.kind`):

- POSITION_MISSING: we hold a position the exchange does not have;
- POSITION_UNKNOWN: the exchange has a position we do not know;
- POSITION_DIFFERS: both have one, with another signed quantity;
- PROTECTION_MISSING: our position's stop or take-profit trigger has no open algo order
  of that type and trigger on the exchange;
- ORDER_UNKNOWN: the exchange has an open order or algo order that none of our positions
  explains (a plain order left open, a stop of a position we closed).

A fill lands on the exchange before it reaches the positions topic, so one comparison
can differ for a moment; `Confirmation` halts only when the same differences are seen in
`confirm_after` consecutive checks (default 2, one reconcile period apart).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal(0)


class MismatchKind(StrEnum):
    POSITION_MISSING = "POSITION_MISSING"
    POSITION_UNKNOWN = "POSITION_UNKNOWN"
    POSITION_DIFFERS = "POSITION_DIFFERS"
    PROTECTION_MISSING = "PROTECTION_MISSING"
    ORDER_UNKNOWN = "ORDER_UNKNOWN"


@dataclass(frozen=True, slots=True)
class OurPosition:
    """A position as the positions topic has it (signed: > 0 long, < 0 short)."""

    symbol: str
    amount: Decimal
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ExchangePosition:
    symbol: str
    amount: Decimal  # signed, one-way mode


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """An open order: a plain one (`algo` False) or a conditional (trigger price set)."""

    symbol: str
    client_id: str
    order_type: str
    side: str
    trigger_price: Decimal | None
    algo: bool


@dataclass(frozen=True, slots=True)
class Mismatch:
    kind: MismatchKind
    symbol: str
    ours: str
    theirs: str

    def __str__(self) -> str:
        return f"{self.kind} {self.symbol}: ours {self.ours}, exchange {self.theirs}"


@dataclass(frozen=True, slots=True)
class Diff:
    mismatches: tuple[Mismatch, ...]

    @property
    def clean(self) -> bool:
        return not self.mismatches

    def render(self) -> str:
        if self.clean:
            return "reconcile: clean (positions and open orders match)"
        lines = [f"reconcile: {len(self.mismatches)} mismatch(es)"]
        lines += [f"  {m}" for m in self.mismatches]
        return "\n".join(lines)


_STOP_TYPES = frozenset({"STOP_MARKET", "STOP"})
_TP_TYPES = frozenset({"TAKE_PROFIT_MARKET", "TAKE_PROFIT"})


def compare(
    ours: Iterable[OurPosition],
    positions: Iterable[ExchangePosition],
    orders: Iterable[ExchangeOrder],
) -> Diff:
    """Every difference between our book and the exchange's, sorted by symbol and kind."""
    mine = {p.symbol: p for p in ours if p.amount != 0}
    theirs = {p.symbol: p for p in positions if p.amount != 0}
    found: list[Mismatch] = []
    for symbol in sorted(mine.keys() | theirs.keys()):
        a, b = mine.get(symbol), theirs.get(symbol)
        if a is not None and b is None:
            found.append(Mismatch(MismatchKind.POSITION_MISSING, symbol, f"{a.amount}", "flat"))
        elif a is None and b is not None:
            found.append(Mismatch(MismatchKind.POSITION_UNKNOWN, symbol, "flat", f"{b.amount}"))
        elif a is not None and b is not None and a.amount != b.amount:
            found.append(
                Mismatch(MismatchKind.POSITION_DIFFERS, symbol, f"{a.amount}", f"{b.amount}")
            )
    open_orders = list(orders)
    explained: set[int] = set()
    for symbol, p in sorted(mine.items()):
        closing = "SELL" if p.amount > 0 else "BUY"
        for trigger, types, what in (
            (p.stop_loss, _STOP_TYPES, "stop"),
            (p.take_profit, _TP_TYPES, "take-profit"),
        ):
            if trigger is None:
                continue
            match = next(
                (
                    i
                    for i, o in enumerate(open_orders)
                    if i not in explained
                    and o.symbol == symbol
                    and o.algo
                    and o.order_type in types
                    and o.side == closing
                    and o.trigger_price == trigger
                ),
                None,
            )
            if match is None:
                found.append(
                    Mismatch(
                        MismatchKind.PROTECTION_MISSING, symbol, f"{what} at {trigger}", "none"
                    )
                )
            else:
                explained.add(match)
    for i, o in enumerate(open_orders):
        if i not in explained:
            at = f" at {o.trigger_price}" if o.trigger_price is not None else ""
            found.append(
                Mismatch(
                    MismatchKind.ORDER_UNKNOWN,
                    o.symbol,
                    "none",
                    f"{o.order_type} {o.side}{at} ({o.client_id})",
                )
            )
    found.sort(key=lambda m: (m.symbol, m.kind))
    return Diff(tuple(found))


@dataclass(frozen=True, slots=True)
class Confirmation:
    """How many consecutive checks have shown the same differences; halts once."""

    confirm_after: int = 2
    last: Diff = Diff(())
    seen: int = 0
    halted_for: Diff | None = None

    def check(self, diff: Diff) -> tuple[Confirmation, bool]:
        """(new state, halt now?): True once per persisting set of differences."""
        if diff.clean:
            return replace(self, last=diff, seen=0, halted_for=None), False
        seen = self.seen + 1 if diff == self.last else 1
        halt = seen >= self.confirm_after and self.halted_for != diff
        state = replace(self, last=diff, seen=seen, halted_for=diff if halt else self.halted_for)
        return state, halt
