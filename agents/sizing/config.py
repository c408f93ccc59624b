"""Sizing parameters; the caps are the audited exposure balancer's values, for comparison."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SizingMode(StrEnum):
    RISK = "RISK"  # lose risk_per_trade of equity (fees included) if the stop fills
    FIXED_NOTIONAL = "FIXED_NOTIONAL"  # a fixed quote-asset notional per trade (baselines)
    FIXED_QUANTITY = "FIXED_QUANTITY"  # a fixed base-asset quantity per trade (baselines)


class SizingConfig(BaseModel):
    """How a trade intent becomes a quantity. Every mode obeys the same caps and filters.

    mode: RISK (default), FIXED_NOTIONAL or FIXED_QUANTITY, see `SizingMode`.
    risk_per_trade: fraction of equity lost when the stop fills, entry and exit fees
        included (0.01 = 1 %; the audit gives no risk %, 1 % is the common practice the
        exposure caps below were sized around).
    max_total_margin_fraction: open + reserved isolated margin never above this fraction of
        equity (0.85, audit §3.2 exposure_balancer max_margin_util = 0.85).
    max_symbol_margin_fraction: margin on one symbol never above this fraction of equity
        (0.15, audit §3.2 max_symbol_exposure = 0.15).
    max_leverage: highest leverage an intent may ask for (30, the audited intents' leverage;
        the symbol's own bracket limit applies too).
    fee_rate: taker fee rate counted on entry and exit in the risk of a trade (0.0005).
    fixed_notional: quote-asset notional per trade in FIXED_NOTIONAL mode (required there).
    fixed_quantity: base-asset quantity per trade in FIXED_QUANTITY mode (required there).
    initial_equity: the account's equity before the first trade (10,000 USDT, the paper
        exchange's `initial_balance`); realized PnL from closed trades is added to it.

    A size is only ever reduced to fit a cap and floored to the market lot step; a size
    below the exchange minimum after that is rejected (BELOW_MIN_NOTIONAL), never raised to
    the minimum — the audit's silent $10 floor (§3.3-3.5).
    """

    model_config = ConfigDict(frozen=True)

    mode: SizingMode = SizingMode.RISK
    risk_per_trade: Decimal = Field(Decimal("0.01"), gt=0, le=1)
    max_total_margin_fraction: Decimal = Field(Decimal("0.85"), gt=0, le=1)
    max_symbol_margin_fraction: Decimal = Field(Decimal("0.15"), gt=0, le=1)
    max_leverage: int = Field(30, ge=1, le=125)
    fee_rate: Decimal = Field(Decimal("0.0005"), ge=0, lt=1)
    fixed_notional: Decimal | None = Field(None, gt=0)
    fixed_quantity: Decimal | None = Field(None, gt=0)
    initial_equity: Decimal = Field(Decimal("10000"), gt=0)

    @model_validator(mode="after")
    def _fixed_amounts(self) -> SizingConfig:
        if self.mode is SizingMode.FIXED_NOTIONAL and self.fixed_notional is None:
            raise ValueError("FIXED_NOTIONAL mode needs fixed_notional")
        if self.mode is SizingMode.FIXED_QUANTITY and self.fixed_quantity is None:
            raise ValueError("FIXED_QUANTITY mode needs fixed_quantity")
        return self
