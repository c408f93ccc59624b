"""Selector parameters. Defaults are the audited system's values where it had one."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SelectorConfig(BaseModel):
    """Which signals become trade intents (all times are event time, milliseconds).

    min_confidence: signals below it are rejected (audit: MIN_SIGNAL_CONFIDENCE=0.55).
    top_n: at most this many intents per window, best confidence first (audit:
        TOP_N_LIMIT=10).
    window_ms: signals are ranked within event-time windows of this length (audit: the
        10 s PORTFOLIO_BUFFER_INTERVAL, here event time, not a wall-clock buffer). A window
        closes when the event-time watermark passes its end, or at the end of stream.
    close_when_complete: also close a window as soon as every universe symbol has sent a
        signal in it (HOLDs count), so a live selector does not wait for the next bar.
        Needs a universe.
    max_correlation: a candidate whose rolling return correlation with any open (or
        pending) position's symbol is >= this is rejected (audit: MAX_SYMBOL_CORRELATION
        =0.80).
    correlation_window: bars of rolling returns kept per symbol for that correlation.
    correlation_min_periods: fewer common returns than this: correlation unknown, not
        rejected (too little data to call two symbols correlated).
    universe: the allowlist of symbols; empty = every symbol (audit: the intent bridge's
        PolicyStore universe allowlist).
    skip_flat_sell: reject a SHORT on a symbol with no position (audit: the intent bridge
        skipped flat SELL intents; a SELL was an exit, never an entry). False lets SHORT
        signals open short positions.
    stop_loss_pct / take_profit_pct: the intent's stop and take-profit distance from the
        entry (audit exit monitor: -1.5 % / +2.5 %; mirrored for shorts).
    leverage: the intent's leverage (audit: 30 in the AI engine's intent payload); the
        sizing stage sizes by risk at the stop, so leverage sets margin, not risk.
    dedup_ttl_ms: how long a signal id is remembered for dedup (audit: the intent bridge's
        24 h dedup key).
    pending_ttl_ms: after selecting a symbol, treat it as taken until the positions topic
        shows it or this long passes (the governor's reservation TTL, 120 s), so the next
        bar does not select it again while the first intent is in flight.
    """

    model_config = ConfigDict(frozen=True)

    min_confidence: float = Field(0.55, ge=0.0, le=1.0)
    top_n: int = Field(10, ge=1)
    window_ms: int = Field(10_000, ge=1)
    close_when_complete: bool = True
    max_correlation: float = Field(0.80, ge=-1.0, le=1.0)
    correlation_window: int = Field(60, ge=2)
    correlation_min_periods: int = Field(30, ge=2)
    universe: frozenset[str] = frozenset()
    skip_flat_sell: bool = True
    stop_loss_pct: Decimal = Field(Decimal("0.015"), gt=0, lt=1)
    take_profit_pct: Decimal = Field(Decimal("0.025"), gt=0, lt=1)
    leverage: int = Field(30, ge=1, le=125)
    dedup_ttl_ms: int = Field(86_400_000, ge=0)
    pending_ttl_ms: int = Field(120_000, ge=0)

    @field_validator("correlation_min_periods")
    @classmethod
    def _min_periods_fit(cls, v: int, info) -> int:  # type: ignore[no-untyped-def]
        window = info.data.get("correlation_window", 60)
        if v > window:
            raise ValueError(f"correlation_min_periods {v} > correlation_window {window}")
        return v
