"""Execution parameters. Defaults are the audited apply layer's and exit monitor's values."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class ExecutionConfig(BaseModel):
    """How granted intents become orders (all times are event time, milliseconds).

    symbol_cooldown_ms: 180000. No new entry order on a symbol within this long after the
        last entry order on it or the last close of a position on it (audit: the apply
        layer's `quantum:cooldown:open:{symbol}`, 180 s). The governor has its own
        cooldown after a close; this one also covers a rejected or expired entry.
    stop_loss_pct: 0.015. Protective STOP_MARKET at this fraction from the average entry
        fill, on the losing side (audit: exit monitor `sl = entry * 0.985` for a long).
        0 places no stop.
    take_profit_pct: 0.025. Protective TAKE_PROFIT_MARKET at this fraction on the winning
        side (audit: `tp = entry * 1.025`). 0 places no take-profit.
    use_intent_levels: False. True: use the sized intent's own stop_loss / take_profit when
        they lie on the right side of the average fill (sizing measured its risk at that
        stop), falling back to the percentages otherwise. False keeps the audit's rule.
    close_when_unprotected: True. A protective order that the exchange rejects, expires
        or cancels (not at our request) while the position is open closes the position at
        market with that order's exit reason: a stop rejected as "would trigger
        immediately" means the price is already through it, and a position without its
        stop is the audit's -90 % case.
    grant_max_age_ms: 60000. A GRANTED decision older than this, measured against the
        newest decision the ledger has seen, places no order: the governor frees a
        reservation after its reservation_ttl_ms (120 s), so a later order would open a
        position with no slot. Must stay below the governor's reservation_ttl_ms, with
        room for the fill (a paper market order fills at the next bar).
    ledger_retention_ms: 86400000 (24 h). Terminal ledger entries (closed, rejected,
        expired, denied, blocked) and plans that never got a decision are forgotten after
        this long of event time. Must exceed grant_max_age_ms and the symbol cooldown,
        and the producers' redelivery horizon, so a redelivered input still finds its
        entry (and one older than grant_max_age_ms places nothing anyway).
    """

    model_config = ConfigDict(frozen=True)

    symbol_cooldown_ms: int = Field(180_000, ge=0)
    stop_loss_pct: Decimal = Field(Decimal("0.015"), ge=0, lt=1)
    take_profit_pct: Decimal = Field(Decimal("0.025"), ge=0, lt=1)
    use_intent_levels: bool = False
    close_when_unprotected: bool = True
    grant_max_age_ms: int = Field(60_000, ge=0)
    ledger_retention_ms: int = Field(24 * 60 * 60 * 1000, ge=0)
