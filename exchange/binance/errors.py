"""What a Binance answer means for the order that caused it: a pure, typed classification.

Every REST call ends in exactly one `Outcome`:

- `Accepted`: 2xx, the body is the answer.
- `Rejected(code, reason, message)`: the exchange refused the request and did nothing; the
  slot (the intent's order, the rate-limit budget it reserved) is released and the caller
  must not retry the same request unchanged. Filter failures (-1111, -4014, -4023, -4164),
  margin (-2019), reduce-only (-2022), duplicate client id (-4116), a conditional order on
  the plain order endpoint (-4120), unknown order on cancel (-2011 / -2013), ... .
- `RetryAfter(ms)`: nothing happened, try again after `ms`: HTTP 429 (weight or order
  limit; Binance's `Retry-After` header is in seconds), -1003 / -1015 in a 4xx body, -1021
  (timestamp outside recvWindow: resync the clock first).
- `Halt(reason)`: stop trading now: HTTP 418 (the IP is banned for ignoring 429s), HTTP 403
  (Binance's web application firewall blocked the request), or -2015 (key invalid, IP not
  allowed or permissions missing). A human has to look.
- `Unknown(reason)`: the request may or may not have reached the matching engine:
  timeouts, connection resets after sending, HTTP 5xx (Binance: "the execution status is
  UNKNOWN and could have been a success"), -1006 / -1007 / -1008. The caller must resolve it by
  querying the order by its client id before any retry; a blind retry can double an order.

The mapping is data (`REJECT_CODES`, `RETRY_CODES`, ...), so a code Binance adds later is
one line. An unlisted 4xx code is `Rejected` with reason `BINANCE_<code>`: 4xx means Binance
refused the request (its docs: "4XX return codes are used for malformed requests; the
issue is on the sender's side"), so it did not execute.

Messages are Binance's `msg`, which never carries the API key; nothing here sees a key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from exchange.rules import RejectReason


class TransportFailure(StrEnum):
    """A request that ended without an HTTP answer."""

    TIMEOUT = "TIMEOUT"  # read timed out after the request was sent
    CONNECTION_RESET = "CONNECTION_RESET"  # connection dropped after the request was sent
    CONNECT_FAILED = "CONNECT_FAILED"  # never connected: the request was not sent


@dataclass(frozen=True, slots=True)
class Accepted:
    """2xx: the request took effect; `body` is the decoded JSON answer."""

    body: object


@dataclass(frozen=True, slots=True)
class Rejected:
    """Refused and not executed: release the slot, do not resend unchanged."""

    code: int
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Not executed because of a limit (or clock skew); the same request may go after `ms`."""

    ms: int
    code: int | None
    message: str


@dataclass(frozen=True, slots=True)
class Halt:
    """Stop trading: banned (418) or the key is not allowed to trade (-2015)."""

    status: int
    code: int | None
    message: str
    retry_after_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Unknown:
    """The request may have executed: look the order up by client id before any retry."""

    reason: str
    message: str


Outcome = Accepted | Rejected | RetryAfter | Halt | Unknown

# Binance code -> reason. RejectReason values where the paper exchange has the same rule,
# so the live and paper adapters report the same reason for the same mistake.
REJECT_CODES: Mapping[int, str] = {
    -1102: "MANDATORY_PARAM_MISSING",
    -1111: "PRECISION_EXCEEDED",  # price or quantity: more decimals than allowed
    -1116: "INVALID_ORDER_TYPE",
    -1121: RejectReason.UNKNOWN_SYMBOL,
    -1122: RejectReason.SYMBOL_NOT_TRADING,
    -1125: "INVALID_LISTEN_KEY",  # keep-alive of a key that expired: make a new one
    -2010: "NEW_ORDER_REJECTED",
    -2011: RejectReason.UNKNOWN_ORDER,  # cancel rejected: no such open order
    -2013: "ORDER_DOES_NOT_EXIST",  # query of an order Binance does not know (or forgot)
    -2018: RejectReason.INSUFFICIENT_MARGIN,  # balance insufficient
    -2019: RejectReason.INSUFFICIENT_MARGIN,  # margin insufficient
    -2021: RejectReason.WOULD_IMMEDIATELY_TRIGGER,
    -2022: RejectReason.REDUCE_ONLY_REJECTED,
    -2027: RejectReason.ABOVE_MAX_NOTIONAL_AT_LEVERAGE,
    -2028: RejectReason.LEVERAGE_NOT_ALLOWED,  # leverage too high for the current position
    -4003: RejectReason.NON_POSITIVE_QUANTITY,
    -4014: RejectReason.PRICE_NOT_TICK_MULTIPLE,
    -4023: RejectReason.QTY_NOT_STEP_MULTIPLE,
    -4028: RejectReason.LEVERAGE_NOT_ALLOWED,  # leverage not valid
    -4046: "NO_NEED_TO_CHANGE_MARGIN_TYPE",  # already that margin type: harmless
    -4116: RejectReason.DUPLICATE_CLIENT_ORDER_ID,
    -4120: "STOP_ORDER_SWITCH_ALGO",  # conditional type on /fapi/v1/order since 2025-12-09
    -4164: RejectReason.BELOW_MIN_NOTIONAL,
}
# Limits and clock skew: nothing executed; wait, then the same request may go.
RETRY_CODES: Mapping[int, int] = {
    -1003: 60_000,  # too many requests (weight): the minute window
    -1015: 10_000,  # too many new orders: the 10 s window
    -1021: 1_000,  # timestamp outside recvWindow: resync the server time offset first
}
# Binance says the execution status is unknown.
UNKNOWN_CODES: Mapping[int, str] = {
    -1000: "UNKNOWN_ERROR",
    -1001: "DISCONNECTED",
    -1006: "UNEXPECTED_RESPONSE",
    -1007: "BACKEND_TIMEOUT",
    -1008: "SERVER_BUSY",
}
HALT_CODES: Mapping[int, str] = {
    -2014: "API_KEY_FORMAT_INVALID",
    -2015: "REJECTED_MBX_KEY",  # invalid key, IP or permissions
    -1022: "INVALID_SIGNATURE",
    -1002: "UNAUTHORIZED",
}
# Codes that mean "already so": the request changed nothing because nothing had to change.
ALREADY_DONE_CODES = frozenset({-4046})

DEFAULT_429_MS = 60_000  # no Retry-After header: wait out the minute window
DEFAULT_418_MS = 120_000  # Binance bans for 2 minutes at first, longer when repeated


def parse_error_body(text: str) -> tuple[int | None, str]:
    """(code, msg) of Binance's error payload `{"code": -2019, "msg": "..."}`; (None, text)."""
    try:
        body = json.loads(text)
    except (ValueError, TypeError):
        return None, text[:200]
    if isinstance(body, Mapping) and isinstance(body.get("code"), int):
        return int(body["code"]), str(body.get("msg", ""))
    return None, text[:200]


def _retry_after_ms(headers: Mapping[str, str], default: int) -> int:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0, int(float(value) * 1000))
            except ValueError:
                return default
    return default


def classify_response(status: int, text: str, headers: Mapping[str, str]) -> Outcome:
    """The outcome of an HTTP answer: status, body text and headers."""
    if 200 <= status < 300:
        try:
            return Accepted(json.loads(text) if text else {})
        except ValueError:
            return Unknown("UNPARSEABLE_2XX", text[:200])
    code, message = parse_error_body(text)
    if status == 418:
        return Halt(status, code, message, _retry_after_ms(headers, DEFAULT_418_MS))
    if status == 403:  # WAF limit violated: the request was blocked before the API
        return Halt(status, code, message)
    if status == 429:
        return RetryAfter(_retry_after_ms(headers, DEFAULT_429_MS), code, message)
    if status >= 500 or status == 408:
        return Unknown(f"HTTP_{status}", message)
    return classify_code(code, message) if code is not None else Unknown(f"HTTP_{status}", message)


def classify_code(code: int, message: str) -> Outcome:
    """The outcome of a Binance error code in a 4xx body (or an error frame)."""
    if code in HALT_CODES:
        return Halt(400, code, f"{HALT_CODES[code]}: {message}")
    if code in RETRY_CODES:
        return RetryAfter(RETRY_CODES[code], code, message)
    if code in UNKNOWN_CODES:
        return Unknown(UNKNOWN_CODES[code], message)
    return Rejected(code, str(REJECT_CODES.get(code, f"BINANCE_{-code}")), message)


def classify_transport(failure: TransportFailure, detail: str = "") -> Outcome:
    """A request without an answer: unknown unless it provably never left."""
    if failure is TransportFailure.CONNECT_FAILED:
        return RetryAfter(1_000, None, f"connect failed: {detail}"[:200])
    return Unknown(str(failure), detail[:200])
