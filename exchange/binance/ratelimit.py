"""A pure rate-limit governor: may this request go now, or how long must it wait?

Binance USD-M counts, per account, ORDERS (300 per 10 s, 1,200 per minute) and, per IP,
REQUEST_WEIGHT (2,400 per minute; the live figure is in exchangeInfo `rateLimits`), and
reports its counts in every answer's headers: `X-MBX-USED-WEIGHT-1M`,
`X-MBX-ORDER-COUNT-10S`, `X-MBX-ORDER-COUNT-1M`. Going over answers 429; ignoring 429s
gets the IP banned (418).

The governor keeps a log of what this process sent, per limit, and treats each limit as a
*sliding* window: a request may go only if the units sent in the last `window` plus its own
cost stay within the limit. A sliding window is stricter than Binance's fixed windows (any
fixed window is one of the sliding ones), so obeying it obeys Binance. The headers correct
the log for what the process cannot see (other processes on the key or IP, requests before
a restart): when the exchange reports more than the log holds, the difference is booked at
the answer's time, so the governor only ever becomes more cautious. A 429 or 418 blocks
everything until its `Retry-After`.

Time comes in as epoch milliseconds (`now_ms`); the governor never reads a clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class LimitKind(StrEnum):
    REQUEST_WEIGHT = "REQUEST_WEIGHT"
    ORDERS = "ORDERS"


_UNIT_MS = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
_UNIT_LETTER = {"SECOND": "S", "MINUTE": "M", "HOUR": "H", "DAY": "D"}
_HEADER_PREFIX = {
    LimitKind.REQUEST_WEIGHT: "x-mbx-used-weight-",
    LimitKind.ORDERS: "x-mbx-order-count-",
}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One counter: kind, window length, limit, and the response header that reports it."""

    kind: LimitKind
    window_ms: int
    limit: int
    header: str  # lower case, e.g. "x-mbx-order-count-10s"

    def __post_init__(self) -> None:
        if self.window_ms <= 0 or self.limit <= 0:
            raise ValueError(f"rate limit needs a positive window and limit: {self}")


def rate_limit(kind: LimitKind, interval: str, interval_num: int, limit: int) -> RateLimit:
    """A limit as exchangeInfo writes it (`interval` SECOND/MINUTE/HOUR/DAY)."""
    if interval not in _UNIT_MS:
        raise ValueError(f"unknown rate-limit interval {interval!r}")
    header = f"{_HEADER_PREFIX[kind]}{interval_num}{_UNIT_LETTER[interval]}".lower()
    return RateLimit(kind, _UNIT_MS[interval] * interval_num, limit, header)


# FACTS.md (late 2026): orders 300 / 10 s and 1,200 / min per account; weight 2,400 / min.
DEFAULT_LIMITS: tuple[RateLimit, ...] = (
    rate_limit(LimitKind.REQUEST_WEIGHT, "MINUTE", 1, 2_400),
    rate_limit(LimitKind.ORDERS, "SECOND", 10, 300),
    rate_limit(LimitKind.ORDERS, "MINUTE", 1, 1_200),
)


def limits_from_exchange_info(exchange_info: Mapping[str, Any]) -> tuple[RateLimit, ...]:
    """The REQUEST_WEIGHT and ORDERS limits of exchangeInfo's `rateLimits` (others ignored)."""
    out = []
    for raw in exchange_info.get("rateLimits", []):
        kind = raw.get("rateLimitType")
        if kind not in (LimitKind.REQUEST_WEIGHT, LimitKind.ORDERS):
            continue  # RAW_REQUESTS and future kinds are not reported per answer
        out.append(
            rate_limit(
                LimitKind(kind), str(raw["interval"]), int(raw["intervalNum"]), int(raw["limit"])
            )
        )
    if not out:
        raise ValueError("exchangeInfo has no REQUEST_WEIGHT / ORDERS rateLimits")
    return tuple(out)


class _Window:
    """Units sent in one limit's sliding window: a log of (time, units), oldest first."""

    __slots__ = ("_log", "_total", "limit")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._log: deque[tuple[int, int]] = deque()
        self._total = 0

    def _prune(self, now_ms: int) -> None:
        horizon = now_ms - self.limit.window_ms
        while self._log and self._log[0][0] <= horizon:
            self._total -= self._log.popleft()[1]

    def used(self, now_ms: int) -> int:
        self._prune(now_ms)
        return self._total

    def add(self, now_ms: int, units: int) -> None:
        if units > 0:
            if self._log and self._log[-1][0] > now_ms:
                raise ValueError(f"time went backwards: {now_ms} < {self._log[-1][0]}")
            self._log.append((now_ms, units))
            self._total += units

    def wait_ms(self, now_ms: int, units: int) -> int:
        """0 if `units` fit now, else the time until enough of the log has expired."""
        if units <= 0:
            return 0
        if units > self.limit.limit:
            raise ValueError(f"{units} units can never fit {self.limit}")
        self._prune(now_ms)
        excess = self._total + units - self.limit.limit
        if excess <= 0:
            return 0
        freed = 0
        for sent_at, n in self._log:
            freed += n
            if freed >= excess:
                return sent_at + self.limit.window_ms - now_ms
        raise AssertionError("unreachable: the log holds more than the excess")


class RateGovernor:
    """Decides when a request may go, from what was sent and what the exchange reported."""

    def __init__(self, limits: Sequence[RateLimit] = DEFAULT_LIMITS) -> None:
        self._windows = [_Window(limit) for limit in limits]
        self._blocked_until = 0
        self._last_ms = 0

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return tuple(w.limit for w in self._windows)

    def _units(self, window: _Window, weight: int, orders: int) -> int:
        return weight if window.limit.kind is LimitKind.REQUEST_WEIGHT else orders

    def _tick(self, now_ms: int) -> None:
        if now_ms < self._last_ms:
            raise ValueError(f"time went backwards: {now_ms} < {self._last_ms}")
        self._last_ms = now_ms

    def wait_ms(self, now_ms: int, *, weight: int, orders: int = 0) -> int:
        """Milliseconds until a request of this weight and order count may go (0 = now)."""
        self._tick(now_ms)
        wait = max(0, self._blocked_until - now_ms)
        for window in self._windows:
            wait = max(wait, window.wait_ms(now_ms, self._units(window, weight, orders)))
        return wait

    def may_send(self, now_ms: int, *, weight: int, orders: int = 0) -> bool:
        return self.wait_ms(now_ms, weight=weight, orders=orders) == 0

    def record(self, now_ms: int, *, weight: int, orders: int = 0) -> None:
        """Book a request that is being sent now (call only after `may_send` said yes)."""
        self._tick(now_ms)
        for window in self._windows:
            window.add(now_ms, self._units(window, weight, orders))

    def observe(self, now_ms: int, headers: Mapping[str, str]) -> None:
        """Correct the log with the counts an answer's headers report."""
        self._tick(now_ms)
        lowered = {k.lower(): v for k, v in headers.items()}
        for window in self._windows:
            raw = lowered.get(window.limit.header)
            if raw is None:
                continue
            try:
                reported = int(raw)
            except ValueError:
                continue  # a malformed header cannot make us less careful; ignore it
            gap = reported - window.used(now_ms)
            window.add(now_ms, gap)

    def block_until(self, until_ms: int) -> None:
        """Nothing may go before `until_ms` (a 429's or 418's Retry-After)."""
        self._blocked_until = max(self._blocked_until, until_ms)

    def used(self, now_ms: int) -> dict[str, int]:
        """Units in each window now, by header name (for logs and metrics)."""
        return {w.limit.header: w.used(now_ms) for w in self._windows}


def headers_of(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as a plain dict with lower-case names."""
    return {k.lower(): v for k, v in pairs}
