"""Exchange rules with a refresh interval: when to fetch again, and when they are too old.

Binance changes filters and brackets without notice, so the live adapter fetches
`exchangeInfo` and `leverageBracket` again every `refresh_ms` (default 1 hour). A failed
refresh keeps the rules it has, but only up to `max_age_ms` (default 6 hours): older rules
raise `StaleRules`, because sizing an order with filters that may have changed trades on a
guess (the exchange never rounds; it rejects). Pure: time comes in as `now_ms`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exchange.binance.ratelimit import DEFAULT_LIMITS, RateLimit, limits_from_exchange_info
from exchange.margin import BracketTable
from exchange.rules import ExchangeRules, parse_leverage_brackets

HOUR_MS = 3_600_000


class StaleRules(RuntimeError):
    """The cached rules are older than the maximum age (or there are none yet)."""


@dataclass(frozen=True, slots=True)
class RulesSnapshot:
    """Parsed rules, the margin tiers, the rate limits, and when they were fetched."""

    rules: ExchangeRules
    brackets: Mapping[str, BracketTable]
    rate_limits: tuple[RateLimit, ...]
    fetched_ms: int


class RulesCache:
    """Holds the newest `RulesSnapshot` and says when to refresh it."""

    def __init__(self, refresh_ms: int = HOUR_MS, max_age_ms: int = 6 * HOUR_MS) -> None:
        if not 0 < refresh_ms <= max_age_ms:
            raise ValueError("need 0 < refresh_ms <= max_age_ms")
        self.refresh_ms = refresh_ms
        self.max_age_ms = max_age_ms
        self._snapshot: RulesSnapshot | None = None
        self._last_attempt_ms: int | None = None

    def due(self, now_ms: int) -> bool:
        """True when a fetch should be made now (none yet, or `refresh_ms` since the last)."""
        if self._last_attempt_ms is None:
            return True
        return now_ms - self._last_attempt_ms >= self.refresh_ms

    def failed(self, now_ms: int) -> None:
        """A refresh failed: try again after `refresh_ms`, keep the rules held (for now)."""
        self._last_attempt_ms = now_ms

    def update(
        self,
        exchange_info: Mapping[str, Any],
        leverage_brackets: Sequence[Mapping[str, Any]] | Mapping[str, Any],
        now_ms: int,
        *,
        symbols: Sequence[str] | None = None,
    ) -> RulesSnapshot:
        """Parse freshly fetched payloads (ExchangeRulesError leaves the old snapshot)."""
        rules = ExchangeRules.from_exchange_info(exchange_info, leverage_brackets, symbols=symbols)
        brackets = {s: rules[s].brackets for s in rules}
        limits = (
            limits_from_exchange_info(exchange_info)
            if exchange_info.get("rateLimits")
            else DEFAULT_LIMITS
        )
        # every symbol's tiers, also those not traded (the liquidation module may need them)
        all_tables = parse_leverage_brackets(leverage_brackets)
        snapshot = RulesSnapshot(rules, {**all_tables, **brackets}, limits, now_ms)
        self._snapshot = snapshot
        self._last_attempt_ms = now_ms
        return snapshot

    def get(self, now_ms: int) -> RulesSnapshot:
        """The snapshot, if it is not older than `max_age_ms`."""
        snap = self._snapshot
        if snap is None:
            raise StaleRules("no exchange rules fetched yet")
        age = now_ms - snap.fetched_ms
        if age > self.max_age_ms:
            raise StaleRules(f"exchange rules are {age} ms old (max {self.max_age_ms})")
        return snap
