"""The liquidation price of a position, from the exchange's rules (pure).

Isolated margin, as the paper exchange and the live account trade: Binance's formula
(exchange.margin.isolated_liquidation_price) with the symbol's maintenance-margin
brackets and the position's isolated margin (entry notional / leverage). The positions
record carries it so the exit guard can act before the exchange does.
"""

from __future__ import annotations

from decimal import Decimal

from agents.governor.model import Side
from agents.positions.core import LiquidationPrice
from agents.positions.model import Position
from exchange.margin import isolated_liquidation_price
from exchange.model import PositionSide
from exchange.rules import ExchangeRules


def liquidation_from_rules(rules: ExchangeRules) -> LiquidationPrice:
    """A `PositionsCore` liquidation-price function over `rules` (None: unknown symbol)."""

    def price(pos: Position) -> Decimal | None:
        symbol = rules.get(pos.symbol)
        if symbol is None or pos.quantity <= 0:
            return None
        side = PositionSide.LONG if pos.side == Side.LONG else PositionSide.SHORT
        return isolated_liquidation_price(
            side, pos.quantity, pos.entry_price, pos.isolated_margin, symbol.brackets
        )

    return price
