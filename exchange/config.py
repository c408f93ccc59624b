"""Paper exchange parameters."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class IntrabarPath(StrEnum):
    """Which extreme of a bar the price is assumed to visit first (open -> x -> y -> close)."""

    ADVERSE_FIRST = "ADVERSE_FIRST"  # the one against the open position: a stop before a TP
    FAVORABLE_FIRST = "FAVORABLE_FIRST"  # the one in favour of the position: a TP before a stop
    NEAREST_FIRST = "NEAREST_FIRST"  # the extreme closer to the open (ties: low first)


EIGHT_HOURS_MS = 8 * 60 * 60 * 1000


class PaperExchangeConfig(BaseModel):
    """How the paper exchange fills, charges and liquidates. docs/paper-exchange.md has the rules.

    initial_balance: USDT wallet at the start (10,000; the audit's testnet account had
        ~1,000 — set it to compare).
    taker_fee_rate: fee on MARKET, STOP_MARKET and TAKE_PROFIT_MARKET fills and on LIMIT
        orders filled at a bar's open (0.0005 = 0.05 %, Binance USD-M VIP 0 taker; ccxt's
        2023 market snapshot recorded 0.04 %. Check yours with GET /fapi/v1/commissionRate).
    maker_fee_rate: fee on LIMIT orders filled at their price inside a bar (0.0002 = 0.02 %).
    market_slippage_bps: adverse slippage of MARKET fills at the next bar's open, in basis
        points; the price is then rounded to the tick against the trader (1 bp).
    stop_slippage_bps: adverse slippage of triggered STOP_MARKET/TAKE_PROFIT_MARKET fills (0:
        they fill at their trigger, or at the open when the bar gaps through it).
    intrabar_path: the both-touch rule, see `IntrabarPath` (ADVERSE_FIRST: conservative).
    default_leverage: leverage of a symbol until `SetLeverage` (20, Binance's default).
    funding_rate_8h: funding rate applied at every funding time (None = no funding, the
        default; e.g. 0.0001 = Binance's 0.01 % baseline). Longs pay a positive rate.
    funding_interval_ms: time between funding settlements (8 h, at 00:00/08:00/16:00 UTC).
    quote_asset: asset of balances and fees (USDT).
    """

    model_config = ConfigDict(frozen=True)

    initial_balance: Decimal = Field(Decimal("10000"), gt=0)
    taker_fee_rate: Decimal = Field(Decimal("0.0005"), ge=0, lt=1)
    maker_fee_rate: Decimal = Field(Decimal("0.0002"), gt=-1, lt=1)
    market_slippage_bps: Decimal = Field(Decimal("1"), ge=0, lt=10000)
    stop_slippage_bps: Decimal = Field(Decimal("0"), ge=0, lt=10000)
    intrabar_path: IntrabarPath = IntrabarPath.ADVERSE_FIRST
    default_leverage: int = Field(20, ge=1, le=125)
    funding_rate_8h: Decimal | None = None
    funding_interval_ms: int = Field(EIGHT_HOURS_MS, gt=0)
    quote_asset: str = "USDT"
