"""The REST adapter: python-binance's `Client` behind typed calls and typed failures.

`BinanceFutures` is the shell around the pure parts of this package: before each request
it asks the `RateGovernor` (a request that must wait is not sent: `VenueError(RetryAfter)`),
after each answer it feeds the governor the `X-MBX-*` headers, and every failure becomes a
`VenueError` whose `outcome` is the `errors` classification (Rejected / RetryAfter / Halt /
Unknown). After a `Halt` (HTTP 418, a refused key) the adapter refuses every further call
until `clear_halt()`: a banned IP must not keep knocking.

Orders:

- `place_market(...)`: `POST /fapi/v1/order` with our `newClientOrderId` (validated:
  `^[.A-Z:/a-z0-9_-]{1,36}$`) and `newOrderRespType=RESULT`, so a market order's answer
  carries its fill.
- `place_protective(...)`: STOP_MARKET / TAKE_PROFIT_MARKET through the Algo Order API
  (`POST /fapi/v1/algoOrder`, `algoType=CONDITIONAL`, `triggerPrice`, our `clientAlgoId`):
  the plain endpoint has answered -4120 since 2025-12-09. python-binance 1.0.37's
  `futures_create_algo_order` keeps a `clientAlgoId` it is given (it invents one only when
  none is passed; its `futures_create_order` drops `newClientOrderId` on this path), so the
  adapter calls `futures_create_algo_order` and always passes `clientAlgoId`.
- `replace_protective(...)`: algo orders cannot be modified, so a moved stop is a new
  order (new client id) placed first, then the old one canceled: the position is never
  without a stop; two reduce-only stops for a moment cannot open anything.
- `query_order` / `query_algo`: by client id; None when Binance does not know the id
  (-2013; it forgets canceled unfilled orders after 3 days, all after 90). This is how an
  `Unknown` outcome is resolved before any retry.

Keys come from `Credentials` and go only into python-binance; the adapter's repr, its
exceptions and its log lines never contain them (exceptions are raised outside the
`except` block so python-binance's exception, whose request holds the key header, is not
even chained). The testnet is the default; mainnet needs `mainnet=True`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException

from exchange.binance.credentials import Credentials
from exchange.binance.errors import (
    ALREADY_DONE_CODES,
    Halt,
    Outcome,
    Rejected,
    RetryAfter,
    TransportFailure,
    Unknown,
    classify_response,
    classify_transport,
)
from exchange.binance.ratelimit import RateGovernor
from exchange.binance.userstream import Fill, fill_from_user_trade
from exchange.rules import ExchangeRules

log = logging.getLogger(__name__)

CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
NOT_FOUND_CODES = frozenset({-2013, -2011})  # "Order does not exist" / "Unknown order sent"


class VenueError(Exception):
    """A call that did not succeed; `outcome` says what the caller must do."""

    def __init__(self, operation: str, outcome: Outcome) -> None:
        super().__init__(f"{operation}: {outcome}")
        self.operation = operation
        self.outcome = outcome


class MarginType(StrEnum):
    ISOLATED = "ISOLATED"
    CROSSED = "CROSSED"


class ProtectiveKind(StrEnum):
    STOP_MARKET = "STOP_MARKET"
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"


def check_client_id(client_id: str) -> str:
    """The id if Binance accepts it as newClientOrderId / clientAlgoId, else ValueError."""
    if not CLIENT_ID_RE.fullmatch(client_id):
        raise ValueError(f"client id {client_id!r} is not ^[.A-Z:/a-z0-9_-]{{1,36}}$")
    return client_id


def _d(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


@dataclass(frozen=True, slots=True)
class OrderState:
    """A plain order as New Order / Query Order / Current Open Orders answer it."""

    symbol: str
    order_id: int
    client_order_id: str
    side: str
    order_type: str
    status: str
    quantity: Decimal
    executed_quantity: Decimal
    average_price: Decimal
    cumulative_quote: Decimal
    reduce_only: bool
    update_time_ms: int

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> OrderState:
        return cls(
            symbol=str(raw["symbol"]),
            order_id=int(raw["orderId"]),
            client_order_id=str(raw["clientOrderId"]),
            side=str(raw["side"]),
            order_type=str(raw.get("origType", raw["type"])),
            status=str(raw["status"]),
            quantity=_d(raw["origQty"]),
            executed_quantity=_d(raw.get("executedQty")),
            average_price=_d(raw.get("avgPrice")),
            cumulative_quote=_d(raw.get("cumQuote")),
            reduce_only=bool(raw.get("reduceOnly", False)),
            update_time_ms=int(raw.get("updateTime", raw.get("time", 0))),
        )


@dataclass(frozen=True, slots=True)
class AlgoOrderState:
    """A conditional order as New / Query / Open Algo Orders answer it."""

    symbol: str
    algo_id: int
    client_algo_id: str
    order_type: str
    side: str
    status: str
    quantity: Decimal
    trigger_price: Decimal
    reduce_only: bool
    actual_order_id: str
    update_time_ms: int

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> AlgoOrderState:
        return cls(
            symbol=str(raw["symbol"]),
            algo_id=int(raw["algoId"]),
            client_algo_id=str(raw["clientAlgoId"]),
            order_type=str(raw["orderType"]),
            side=str(raw["side"]),
            status=str(raw["algoStatus"]),
            quantity=_d(raw.get("quantity")),
            trigger_price=_d(raw.get("triggerPrice")),
            reduce_only=bool(raw.get("reduceOnly", False)),
            actual_order_id=str(raw.get("actualOrderId") or ""),
            update_time_ms=int(raw.get("updateTime", raw.get("createTime", 0))),
        )


@dataclass(frozen=True, slots=True)
class PositionState:
    """One position from Position Information V3 (one-way mode: side BOTH, signed amount)."""

    symbol: str
    position_side: str
    amount: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    liquidation_price: Decimal
    isolated_margin: Decimal
    notional: Decimal
    update_time_ms: int

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> PositionState:
        return cls(
            symbol=str(raw["symbol"]),
            position_side=str(raw.get("positionSide", "BOTH")),
            amount=_d(raw["positionAmt"]),
            entry_price=_d(raw["entryPrice"]),
            mark_price=_d(raw.get("markPrice")),
            unrealized_pnl=_d(raw.get("unRealizedProfit")),
            liquidation_price=_d(raw.get("liquidationPrice")),
            isolated_margin=_d(raw.get("isolatedMargin")),
            notional=_d(raw.get("notional")),
            update_time_ms=int(raw.get("updateTime", 0)),
        )


# Request weight and order count per call (Binance's documented weights, USD-M).
_COST: dict[str, tuple[int, int]] = {
    "exchange_info": (1, 0),
    "leverage_bracket": (1, 0),
    "set_leverage": (1, 0),
    "set_margin_type": (1, 0),
    "place_market": (0, 1),
    "place_protective": (0, 1),
    "cancel_algo": (1, 0),
    "query_order": (1, 0),
    "query_algo": (1, 0),
    "open_orders": (1, 0),
    "open_orders_all": (40, 0),
    "open_algo_orders": (1, 0),
    "positions": (5, 0),
    "user_trades": (5, 0),
    "listen_key": (1, 0),
}


def _monotonic_ms() -> int:
    """The governor's clock: monotonic, so a wall-clock step can never move time back."""
    return time.monotonic_ns() // 1_000_000


class BinanceFutures:
    """Binance USD-M futures over REST; testnet unless `mainnet=True`."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        mainnet: bool = False,
        governor: RateGovernor | None = None,
        clock_ms: Callable[[], int] = _monotonic_ms,
        timeout_s: float = 10.0,
        client: Client | None = None,
        rest_url: str | None = None,
    ) -> None:
        self.mainnet = mainnet
        self._credentials = credentials
        self._governor = governor or RateGovernor()
        self._clock = clock_ms
        self.halted: Halt | None = None
        self._client = client or Client(
            credentials.api_key.reveal(),
            credentials.api_secret.reveal(),
            testnet=not mainnet,
            ping=False,  # no request at construction; the first call is the first request
            requests_params={"timeout": timeout_s},
        )
        if rest_url is not None:  # a local replay of Binance (tests); never a remote host
            self._client.FUTURES_URL = self._client.FUTURES_TESTNET_URL = rest_url

    def __repr__(self) -> str:
        venue = "mainnet" if self.mainnet else "testnet"
        return f"BinanceFutures({venue}, keys from {self._credentials.source})"

    @property
    def governor(self) -> RateGovernor:
        return self._governor

    def clear_halt(self) -> None:
        """A human decided trading may resume."""
        self.halted = None

    # --- the one way every call goes -------------------------------------------------------

    def _call(self, operation: str, fn: Callable[..., Any], **params: Any) -> Any:
        if self.halted is not None:
            raise VenueError(operation, self.halted)
        weight, orders = _COST[operation]
        now = self._clock()
        wait = self._governor.wait_ms(now, weight=weight, orders=orders)
        if wait > 0:
            raise VenueError(operation, RetryAfter(wait, None, "held back by the rate governor"))
        self._governor.record(now, weight=weight, orders=orders)
        outcome: Outcome | None = None
        response: requests.Response | None = None
        try:
            result = fn(**params)
            response = self._client.response
        except BinanceAPIException as exc:
            response = exc.response
            outcome = classify_response(exc.status_code, exc.response.text, exc.response.headers)
        except BinanceRequestException as exc:  # a 2xx whose body is not JSON
            response = self._client.response
            outcome = Unknown("UNPARSEABLE_2XX", self._safe(str(exc.message))[:200])
        except requests.exceptions.ConnectTimeout:
            outcome = classify_transport(TransportFailure.CONNECT_FAILED, "connect timeout")
        except requests.exceptions.Timeout:
            outcome = classify_transport(TransportFailure.TIMEOUT, "read timeout")
        except requests.exceptions.ConnectionError:
            outcome = classify_transport(TransportFailure.CONNECTION_RESET, "connection error")
        if response is not None:
            self._governor.observe(self._clock(), response.headers)
        if outcome is None:
            return result
        # raised here, outside `except`: python-binance's exception (its request carries the
        # key header) is neither the cause nor the context of ours
        return self._fail(operation, outcome)

    def _fail(self, operation: str, outcome: Outcome) -> Any:
        if isinstance(outcome, Halt):
            self.halted = outcome
            if outcome.retry_after_ms:
                self._governor.block_until(self._clock() + outcome.retry_after_ms)
            log.error("binance %s: HALT %s", operation, outcome)
        elif isinstance(outcome, RetryAfter):
            self._governor.block_until(self._clock() + outcome.ms)
            log.warning("binance %s: retry after %d ms (%s)", operation, outcome.ms, outcome)
        else:
            log.warning("binance %s: %s", operation, outcome)
        raise VenueError(operation, outcome)

    def _safe(self, text: str) -> str:
        return self._credentials.redact(text)

    # --- rules ----------------------------------------------------------------------------

    def exchange_rules(self, symbols: list[str] | None = None) -> tuple[ExchangeRules, dict]:
        """(rules, raw exchangeInfo): filters from exchangeInfo, brackets from leverageBracket."""
        info = self._call("exchange_info", self._client.futures_exchange_info)
        brackets = self._call("leverage_bracket", self._client.futures_leverage_bracket)
        return ExchangeRules.from_exchange_info(info, brackets, symbols=symbols), info

    # --- account settings -----------------------------------------------------------------

    def set_leverage(self, symbol: str, leverage: int) -> tuple[int, Decimal]:
        """(leverage, max notional at it) as Binance confirms them."""
        raw = self._call(
            "set_leverage", self._client.futures_change_leverage, symbol=symbol, leverage=leverage
        )
        return int(raw["leverage"]), _d(raw.get("maxNotionalValue"))

    def set_margin_type(self, symbol: str, margin_type: MarginType) -> bool:
        """True if changed, False if it already was that type (-4046, not an error)."""
        try:
            self._call(
                "set_margin_type",
                self._client.futures_change_margin_type,
                symbol=symbol,
                marginType=str(margin_type),
            )
        except VenueError as exc:
            if isinstance(exc.outcome, Rejected) and exc.outcome.code in ALREADY_DONE_CODES:
                return False
            raise
        return True

    # --- orders ---------------------------------------------------------------------------

    def place_market(
        self,
        symbol: str,
        side: str,
        quantity: Decimal,
        client_order_id: str,
        *,
        reduce_only: bool = False,
    ) -> OrderState:
        check_client_id(client_order_id)
        params: dict[str, Any] = {
            "symbol": symbol,
            "side": side,
            "type": "MARKET",
            "quantity": format(quantity, "f"),
            "newClientOrderId": client_order_id,
            "newOrderRespType": "RESULT",
        }
        if reduce_only:
            params["reduceOnly"] = "true"
        raw = self._call("place_market", self._client.futures_create_order, **params)
        return OrderState.of(raw)

    def place_protective(
        self,
        symbol: str,
        side: str,
        kind: ProtectiveKind,
        trigger_price: Decimal,
        quantity: Decimal,
        client_algo_id: str,
        *,
        working_type: str = "MARK_PRICE",
    ) -> AlgoOrderState:
        """A reduce-only conditional market order through the Algo Order API."""
        check_client_id(client_algo_id)
        raw = self._call(
            "place_protective",
            self._client.futures_create_algo_order,
            algoType="CONDITIONAL",
            symbol=symbol,
            side=side,
            type=str(kind),
            quantity=format(quantity, "f"),
            triggerPrice=format(trigger_price, "f"),
            workingType=working_type,
            reduceOnly="true",
            clientAlgoId=client_algo_id,
        )
        placed = AlgoOrderState.of(raw)
        if placed.client_algo_id != client_algo_id:  # the id is our idempotency key
            raise VenueError(
                "place_protective",
                Rejected(0, "CLIENT_ID_NOT_KEPT", f"asked {client_algo_id}, got {placed}"),
            )
        return placed

    def cancel_algo(self, client_algo_id: str) -> None:
        self._call(
            "cancel_algo", self._client.futures_cancel_algo_order, clientAlgoId=client_algo_id
        )

    def replace_protective(
        self,
        old_client_algo_id: str,
        symbol: str,
        side: str,
        kind: ProtectiveKind,
        trigger_price: Decimal,
        quantity: Decimal,
        new_client_algo_id: str,
    ) -> tuple[AlgoOrderState, bool]:
        """New stop first, then cancel the old: (new order, True if the old was canceled).

        False means the old one was no longer open (it triggered or was canceled already);
        the caller reconciles with the user stream.
        """
        if new_client_algo_id == old_client_algo_id:
            raise ValueError("a replacement needs a new client id (ids are unique while open)")
        placed = self.place_protective(
            symbol, side, kind, trigger_price, quantity, new_client_algo_id
        )
        try:
            self.cancel_algo(old_client_algo_id)
        except VenueError as exc:
            if isinstance(exc.outcome, Rejected) and exc.outcome.code in NOT_FOUND_CODES:
                return placed, False
            raise
        return placed, True

    # --- lookups --------------------------------------------------------------------------

    def query_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        try:
            raw = self._call(
                "query_order",
                self._client.futures_get_order,
                symbol=symbol,
                origClientOrderId=client_order_id,
            )
        except VenueError as exc:
            if isinstance(exc.outcome, Rejected) and exc.outcome.code in NOT_FOUND_CODES:
                return None
            raise
        return OrderState.of(raw)

    def query_algo(self, client_algo_id: str) -> AlgoOrderState | None:
        try:
            raw = self._call(
                "query_algo", self._client.futures_get_algo_order, clientAlgoId=client_algo_id
            )
        except VenueError as exc:
            if isinstance(exc.outcome, Rejected) and exc.outcome.code in NOT_FOUND_CODES:
                return None
            raise
        return AlgoOrderState.of(raw)

    def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        params = {"symbol": symbol} if symbol else {}
        operation = "open_orders" if symbol else "open_orders_all"
        raw = self._call(operation, self._client.futures_get_open_orders, **params)
        return [OrderState.of(r) for r in raw]

    def open_algo_orders(self, symbol: str | None = None) -> list[AlgoOrderState]:
        params = {"symbol": symbol} if symbol else {}
        raw = self._call("open_algo_orders", self._client.futures_get_open_algo_orders, **params)
        return [AlgoOrderState.of(r) for r in raw]

    def positions(self, symbol: str | None = None) -> list[PositionState]:
        """Open positions (Position Information V3 lists only non-zero ones)."""
        params = {"symbol": symbol} if symbol else {}
        raw = self._call("positions", self._client.futures_position_information, **params)
        return [PositionState.of(r) for r in raw]

    def user_trades(
        self, symbol: str, start_ms: int, *, client_ids: Mapping[int, str] | None = None
    ) -> list[Fill]:
        """Our fills on `symbol` since `start_ms` (up to 1,000; a 7-day window at most):
        the resync after a user-stream reconnect. `client_ids` maps order id -> client id."""
        raw = self.user_trade_rows(symbol, start_ms)
        ids = client_ids or {}
        return [fill_from_user_trade(r, ids.get(int(r["orderId"]), "")) for r in raw]

    def user_trade_rows(self, symbol: str, start_ms: int) -> list[dict[str, Any]]:
        """The raw userTrades rows since `start_ms` (up to 1,000), as Binance sent them: the
        user-stream client forwards them untouched for the agent to parse."""
        raw = self._call(
            "user_trades",
            self._client.futures_account_trades,
            symbol=symbol,
            startTime=start_ms,
            limit=1000,
        )
        return [dict(r) for r in raw]

    # --- user-data stream key -------------------------------------------------------------

    def create_listen_key(self) -> str:
        """`POST /fapi/v1/listenKey` (returns the open key if one exists)."""
        return str(self._call("listen_key", self._client.futures_stream_get_listen_key))

    def keepalive_listen_key(self, listen_key: str) -> bool:
        """`PUT /fapi/v1/listenKey`; False when the key has expired (-1125): make a new one."""
        try:
            self._call("listen_key", self._client.futures_stream_keepalive, listenKey=listen_key)
        except VenueError as exc:
            if isinstance(exc.outcome, Rejected) and exc.outcome.code == -1125:
                return False
            raise
        return True
