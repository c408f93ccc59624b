"""Margin maths of Binance USD-M futures: brackets, margins, PnL and liquidation prices.

Binance's definitions (FACTS.md; Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M
Futures Contracts"):

- maintenance margin ``MM = notional * MMR_b - cum_b`` where ``b`` is the bracket of the
  position notional;
- ``cum_n = floor_n * (MMR_n - MMR_{n-1}) + cum_{n-1}`` (``cum_1 = 0``), which makes MM a
  continuous function of the notional (Binance's example: 250,000 * (1 % - 0.5 %) + 50 = 1,300);
- liquidation price, one-way mode, side = +1 long / -1 short::

      LP = (WB - TMM1 + UPNL1 + cum - side*Q*EP) / (Q*MMR - side*Q)

  isolated margin: WB = the position's isolated wallet, TMM1 = UPNL1 = 0; cross margin: WB is
  the cross wallet balance, TMM1/UPNL1 the maintenance margin / unrealized PnL of every other
  position. When ``Q*LP`` falls in another bracket than the one assumed, Binance recomputes
  with that bracket's MMR and cum; here every bracket is tried and the one whose own range
  holds ``Q*LP`` is the answer (it is unique, see `liquidation_price`).

Every value is an exact `Decimal`; divisions run at 50 significant digits and the results are
rounded to the default context (28 digits), far below any tick size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal, localcontext

from exchange.model import PositionSide

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)


class BracketError(ValueError):
    """A leverage-bracket table that breaks Binance's own invariants (gaps, wrong cum, ...)."""


@dataclass(frozen=True, slots=True)
class Bracket:
    """One row of `GET /fapi/v1/leverageBracket`: notional range, max leverage, MMR and cum."""

    bracket: int
    initial_leverage: int
    notional_floor: Decimal
    notional_cap: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal


def derive_cums(floors_and_rates: Iterable[tuple[Decimal, Decimal]]) -> list[Decimal]:
    """cum_n = floor_n * (MMR_n - MMR_{n-1}) + cum_{n-1}, from (floor, MMR) pairs in order."""
    cums: list[Decimal] = []
    previous_rate = ZERO
    previous_cum = ZERO
    for index, (floor, rate) in enumerate(floors_and_rates):
        cum = ZERO if index == 0 else floor * (rate - previous_rate) + previous_cum
        cums.append(cum)
        previous_rate, previous_cum = rate, cum
    return cums


@dataclass(frozen=True, slots=True)
class BracketTable:
    """A symbol's brackets, checked at construction: contiguous from 0, rates rising,
    leverage falling, and every cum equal to the derivation above (so MM is continuous).

    A bracket ``b`` holds the notionals ``floor_b < n <= cap_b`` (the first also holds 0);
    a notional above the last cap is treated with the last bracket.
    """

    symbol: str
    brackets: tuple[Bracket, ...]

    def __post_init__(self) -> None:
        rows = self.brackets
        if not rows:
            raise BracketError(f"{self.symbol}: no brackets")
        if rows[0].notional_floor != ZERO:
            raise BracketError(f"{self.symbol}: first bracket starts at {rows[0].notional_floor}")
        for previous, row in zip((None, *rows[:-1]), rows, strict=True):
            if not row.notional_floor < row.notional_cap:
                raise BracketError(f"{self.symbol}: bracket {row.bracket} floor >= cap")
            if not ZERO < row.maint_margin_ratio < ONE:
                raise BracketError(f"{self.symbol}: bracket {row.bracket} MMR out of (0, 1)")
            if row.initial_leverage < 1:
                raise BracketError(f"{self.symbol}: bracket {row.bracket} leverage < 1")
            if previous is None:
                continue
            if row.notional_floor != previous.notional_cap:
                raise BracketError(
                    f"{self.symbol}: bracket {row.bracket} floor {row.notional_floor} != "
                    f"previous cap {previous.notional_cap}"
                )
            if row.maint_margin_ratio < previous.maint_margin_ratio:
                raise BracketError(f"{self.symbol}: bracket {row.bracket} MMR falls")
            if row.initial_leverage > previous.initial_leverage:
                raise BracketError(f"{self.symbol}: bracket {row.bracket} leverage rises")
        expected = derive_cums((r.notional_floor, r.maint_margin_ratio) for r in rows)
        for row, cum in zip(rows, expected, strict=True):
            if row.cum != cum:
                raise BracketError(
                    f"{self.symbol}: bracket {row.bracket} cum {row.cum} != derived {cum}"
                )

    @classmethod
    def from_rows(cls, symbol: str, rows: Sequence[Bracket]) -> BracketTable:
        return cls(symbol, tuple(sorted(rows, key=lambda r: r.notional_floor)))

    def for_notional(self, notional: Decimal) -> Bracket:
        """The bracket whose range holds `notional` (absolute value; last bracket beyond)."""
        notional = abs(notional)
        for row in self.brackets:
            if notional <= row.notional_cap:
                return row
        return self.brackets[-1]

    def max_leverage(self, notional: Decimal) -> int:
        """Highest leverage Binance allows for a position of this notional."""
        return self.for_notional(notional).initial_leverage

    def max_notional(self, leverage: int) -> Decimal:
        """Largest position notional allowed at `leverage` (0 when the leverage is too high)."""
        caps = [r.notional_cap for r in self.brackets if r.initial_leverage >= leverage]
        return max(caps) if caps else ZERO


def maintenance_margin(notional: Decimal, table: BracketTable) -> Decimal:
    """MM = |notional| * MMR - cum of the notional's bracket."""
    notional = abs(notional)
    row = table.for_notional(notional)
    return notional * row.maint_margin_ratio - row.cum


MARGIN_QUANTUM = Decimal("1e-8")  # USDT is accounted to 8 decimals


def initial_margin(notional: Decimal, leverage: int) -> Decimal:
    """Margin posted to open `notional` at `leverage`: |notional| / leverage, rounded up to
    the 8th decimal, so sums of margins stay exact (a 28-digit quotient does not)."""
    if leverage < 1:
        raise ValueError(f"leverage must be >= 1, got {leverage}")
    with localcontext() as ctx:
        ctx.prec = 50
        value = abs(notional) / Decimal(leverage)
        return value.quantize(MARGIN_QUANTUM, rounding=ROUND_UP)


def unrealized_pnl(
    side: PositionSide, quantity: Decimal, entry_price: Decimal, mark_price: Decimal
) -> Decimal:
    """side * quantity * (mark - entry); quantity is the absolute position size."""
    return side.sign * abs(quantity) * (mark_price - entry_price)


def margin_pnl_pct(
    side: PositionSide,
    quantity: Decimal,
    entry_price: Decimal,
    mark_price: Decimal,
    margin: Decimal,
) -> Decimal:
    """Unrealized PnL as a percentage of the position's margin (Binance's ROE %).

    -100 means the whole margin is gone; the exit processors close on a configured floor.
    """
    if margin <= ZERO:
        raise ValueError(f"margin must be > 0, got {margin}")
    with localcontext() as ctx:
        ctx.prec = 50
        value = unrealized_pnl(side, quantity, entry_price, mark_price) / margin * HUNDRED
    return +value


def _in_range(row: Bracket, notional: Decimal, first: bool, last: bool) -> Decimal:
    """How far `notional` lies outside the bracket's range (0 when inside)."""
    low = ZERO if first else row.notional_floor
    if notional < low:
        return low - notional
    if not last and notional > row.notional_cap:
        return notional - row.notional_cap
    return ZERO


def liquidation_price(
    side: PositionSide,
    quantity: Decimal,
    entry_price: Decimal,
    wallet_balance: Decimal,
    table: BracketTable,
    *,
    other_maintenance_margin: Decimal = ZERO,
    other_unrealized_pnl: Decimal = ZERO,
) -> Decimal | None:
    """Binance's one-way-mode liquidation price, with the bracket switch.

    Returns None when no positive price liquidates the position (a long whose wallet covers
    its whole notional). The margin balance minus MM is strictly monotonic in the price
    (its slope is Q*(1 - MMR) for a long and -Q*(1 + MMR) for a short, MMR < 1, and MM is
    continuous because of cum), so at most one bracket's candidate lies in its own range.
    """
    if quantity <= ZERO:
        raise ValueError(f"quantity must be > 0, got {quantity}")
    if entry_price <= ZERO:
        raise ValueError(f"entry price must be > 0, got {entry_price}")
    sign = Decimal(side.sign)
    rows = table.brackets
    best: tuple[Decimal, Decimal] | None = None  # (distance outside range, price)
    with localcontext() as ctx:
        ctx.prec = 50
        available = wallet_balance - other_maintenance_margin + other_unrealized_pnl
        for index, row in enumerate(rows):
            denominator = quantity * row.maint_margin_ratio - sign * quantity
            price = (available + row.cum - sign * quantity * entry_price) / denominator
            if price <= ZERO:
                continue
            distance = _in_range(row, quantity * price, index == 0, index == len(rows) - 1)
            if best is None or distance < best[0]:
                best = (distance, price)
            if distance == ZERO:
                break
    if best is None:
        return None
    # A candidate outside every range only survives Decimal rounding at a bracket boundary,
    # where neighbouring brackets give the same price; anything farther is a bug.
    if best[0] > quantity * Decimal("1e-12") * max(ONE, best[1]):
        raise ArithmeticError(f"{table.symbol}: no consistent bracket for the liquidation price")
    return +best[1]


def isolated_liquidation_price(
    side: PositionSide,
    quantity: Decimal,
    entry_price: Decimal,
    isolated_wallet: Decimal,
    table: BracketTable,
) -> Decimal | None:
    """Isolated margin: WB is the position's isolated wallet, TMM1 = UPNL1 = 0."""
    if isolated_wallet <= ZERO:
        raise ValueError(f"isolated wallet must be > 0, got {isolated_wallet}")
    return liquidation_price(side, quantity, entry_price, isolated_wallet, table)


def cross_liquidation_price(
    side: PositionSide,
    quantity: Decimal,
    entry_price: Decimal,
    cross_wallet_balance: Decimal,
    table: BracketTable,
    *,
    other_maintenance_margin: Decimal,
    other_unrealized_pnl: Decimal,
) -> Decimal | None:
    """Cross margin: WB is the cross wallet balance; the other positions' MM and PnL count."""
    return liquidation_price(
        side,
        quantity,
        entry_price,
        cross_wallet_balance,
        table,
        other_maintenance_margin=other_maintenance_margin,
        other_unrealized_pnl=other_unrealized_pnl,
    )


def bankruptcy_price(
    side: PositionSide, quantity: Decimal, entry_price: Decimal, isolated_wallet: Decimal
) -> Decimal | None:
    """Price at which an isolated position's margin balance is exactly 0 (None if <= 0)."""
    if quantity <= ZERO:
        raise ValueError(f"quantity must be > 0, got {quantity}")
    with localcontext() as ctx:
        ctx.prec = 50
        price = entry_price - Decimal(side.sign) * isolated_wallet / quantity
    return +price if price > ZERO else None
