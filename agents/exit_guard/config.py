"""Exit guard and drawdown breaker parameters (audit §2: the exits the audited system lacked)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class ExitGuardConfig(BaseModel):
    """Position-level safety exits; each closes the whole remaining position.

    enabled: False turns the guard off entirely (no state, no exits). Default True.
    take_profit_pct: close at entry +/- this (audit exit monitor: +2.5 %). None disables it.
        Note: with the harvest ladder on, a 2.5 % take-profit closes the trailing remainder
        at ~1.67R (1.5 % stop); switch it off to let the ladder's remainder run.
    stop_loss_enabled: close when the price crosses the position's stop-loss (audit: price
        SL "ACTIVE"). Default True.
    default_stop_pct: a position without a stop-loss gets entry -/+ this (audit exit monitor:
        1.5 %) and a StopLossDefaulted warning, never silence (audit §2.3: a missing SL fell
        back to 2 % = -60 % of margin at 30x).
    margin_loss_pct: close when unrealized PnL <= -this share of the position's margin
        (the audit found no PnL% exit, §2.4). Default 0.5: at 30x that is a 1.67 % adverse
        move, just beyond the 1.5 % stop, so the stop fires first in normal markets and
        this catches a missing or slipped stop long before -90 %. None disables it.
    liquidation_buffer_pct: close when the price is within this share of the liquidation
        price (long: (price - liq) / price <= Y; short: (liq - price) / price <= Y).
        Default 0.01 (1 % of the price, ~1/3 of the whole margin at 30x). None disables it.
    max_hold_ms: time stop: close at the first bar closing at least this long after the
        position opened. Default None (off: the audited system had none and gives no value).
    evaluate_marks: also evaluate a position record's mark price as an observation (the
        exchange liquidates on the mark, klines are last-trade prices). Default True.

    Read by the shell (agents/exit_guard/agent.py), not the core:
    wait_for_stop: hold a new position that arrives without a stop-loss until its symbol's
        next bar, then apply default_stop_pct with a warning. Default True: the positions
        agent reports the entry fill before execution's protective stop is acknowledged, so
        nearly every position's first record has no stop-loss yet. False: at once.
    closed_retention_ms: how long the state of a closed position is kept, in event time
        (24 h, like positions' dedup horizon).
    """

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    take_profit_pct: Decimal | None = Field(Decimal("0.025"), gt=0)
    stop_loss_enabled: bool = True
    default_stop_pct: Decimal = Field(Decimal("0.015"), gt=0, lt=1)
    margin_loss_pct: Decimal | None = Field(Decimal("0.5"), gt=0)
    liquidation_buffer_pct: Decimal | None = Field(Decimal("0.01"), ge=0, lt=1)
    max_hold_ms: int | None = Field(None, gt=0)
    evaluate_marks: bool = True
    wait_for_stop: bool = True
    closed_retention_ms: int = Field(24 * 60 * 60 * 1000, gt=0)


class BreakerConfig(BaseModel):
    """Account drawdown circuit breaker: Halt to the governor (reduce-only: new entries are
    denied, exits go on) when equity falls too far from its peak.

    enabled: False: the breaker never halts. Default True.
    max_drawdown_pct: halt when (peak - equity) / peak >= this. Default 0.10: the audit
        gives no account limit; 10 % is a common account-level stop, and at 30x two
        stopped positions (-45 % of their margin each) can already cost that much.
    auto_resume_after_ms: None (default): only an operator resumes (`Resume` on the
        portfolio topic); a drawdown large enough to halt deserves a human look. A number:
        the breaker itself sends `Resume` at the first equity point at least this long
        (event time) after the halt, and measures drawdown from the equity at resume.

    Read by the shell (agents/exit_guard/agent.py), not the core:
    initial_equity: account equity before the first trade, to which the positions' realized
        and unrealized PnL net of fees are added (10,000 USDT: the paper exchange's
        initial_balance and sizing's initial_equity).
    flatten_on_halt: on Halt, also close every open position the exit guard follows
        (reduce-only exits with reason HALT, id `<position>:halt`). Default False: the
        audited reduce-only mode stops new entries and lets the exits run; flattening at
        the bottom of a drawdown is a choice for the operator.
    """

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    max_drawdown_pct: Decimal = Field(Decimal("0.10"), gt=0, lt=1)
    auto_resume_after_ms: int | None = Field(None, gt=0)
    initial_equity: Decimal = Field(Decimal("10000"), gt=0)
    flatten_on_halt: bool = False
