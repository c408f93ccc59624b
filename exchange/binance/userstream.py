"""The USD-M user-data stream, pure: event parsers, fill dedup, the listen-key lifecycle.

Events (Binance "User Data Streams", USD-M futures):

- `ORDER_TRADE_UPDATE` -> `OrderUpdate`: every state change of a plain order (NEW,
  CANCELED, EXPIRED, TRADE = a fill, CALCULATED = a liquidation fill, AMENDMENT). The fill
  fields are `l`/`L` (last quantity/price), `z` (cumulative), `ap` (average), `n`/`N`
  (commission/asset, absent when there is none), `rp` (realized PnL), `t` (trade id).
- `ALGO_UPDATE` -> `AlgoUpdate`: a conditional (Algo Order API) order: NEW, CANCELED,
  TRIGGERING, TRIGGERED, FINISHED, REJECTED, EXPIRED; `ai` is the plain order it became
  when triggered (whose fills then come as ORDER_TRADE_UPDATE).
- `ACCOUNT_UPDATE` -> `AccountUpdate`: balances `B` and changed positions `P`.
- `listenKeyExpired` -> `ListenKeyExpired`: the stream is dead; make a new key and reconnect.
- anything else (MARGIN_CALL, ACCOUNT_CONFIG_UPDATE, TRADE_LITE, ...) -> `OtherEvent`.

Every number is an exact `Decimal` parsed from Binance's decimal strings. A payload that
cannot be an event of its type raises `InvalidRecord` (the shell dead-letters it).

`FillDeduplicator` makes the stream idempotent: a reconnect, a REST resync and a replay
all deliver the same fill again; each (symbol, trade id, order id) passes once. Trade ids
are per symbol; the order id is in the key because a self-trade gives one trade id to two
of the account's own orders (two real fills), while a replay repeats the order id.

`ListenKey` is the key's lifecycle as a value: keep-alive every 30 minutes (the key dies
60 minutes after the last one), a new connection before the 24-hour cut, and reconnect on
`listenKeyExpired` -- all decided from event time passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from quantum.errors import InvalidRecord

ZERO = Decimal(0)
T = TypeVar("T")


# --- field readers ---------------------------------------------------------------------------


def _get(raw: Mapping[str, Any], key: str, what: str) -> Any:
    try:
        return raw[key]
    except (KeyError, TypeError):
        raise InvalidRecord("INVALID_VALUE", f"{what}: no field {key!r}") from None


def _dec(raw: Mapping[str, Any], key: str, what: str, default: str | None = None) -> Decimal:
    value = raw.get(key, default) if isinstance(raw, Mapping) else None
    if value is None:
        raise InvalidRecord("INVALID_VALUE", f"{what}: no decimal field {key!r}")
    if isinstance(value, bool) or not isinstance(value, str | int):
        # Binance writes decimals as strings; a float here would already have lost digits
        raise InvalidRecord("INVALID_VALUE", f"{what}.{key}: {value!r} is not a decimal string")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise InvalidRecord("INVALID_VALUE", f"{what}.{key}: {value!r} is not a number") from None
    if not result.is_finite():
        raise InvalidRecord("INVALID_VALUE", f"{what}.{key}: {value!r} is not finite")
    return result


def _int(raw: Mapping[str, Any], key: str, what: str, default: int | None = None) -> int:
    value = raw.get(key, default) if isinstance(raw, Mapping) else None
    if isinstance(value, bool) or value is None:
        raise InvalidRecord("INVALID_VALUE", f"{what}: no integer field {key!r}")
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)  # some events (listenKeyExpired) write times as strings
    if not isinstance(value, int):
        raise InvalidRecord("INVALID_VALUE", f"{what}.{key}: {value!r} is not an integer")
    return value


def _str(raw: Mapping[str, Any], key: str, what: str, default: str | None = None) -> str:
    value = raw.get(key, default) if isinstance(raw, Mapping) else None
    if not isinstance(value, str):
        raise InvalidRecord("INVALID_VALUE", f"{what}: no string field {key!r}")
    return value


def _bool(raw: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = raw.get(key, default)
    return value is True or (isinstance(value, str) and value.lower() == "true")


# --- events ------------------------------------------------------------------------------------


class ExecutionType(StrEnum):
    NEW = "NEW"
    CANCELED = "CANCELED"
    CALCULATED = "CALCULATED"  # liquidation / ADL execution
    EXPIRED = "EXPIRED"
    TRADE = "TRADE"
    AMENDMENT = "AMENDMENT"


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """ORDER_TRADE_UPDATE: one plain order's new state, and the fill if it is one."""

    event_time_ms: int
    transaction_time_ms: int
    symbol: str
    client_order_id: str
    side: str
    order_type: str
    original_type: str
    time_in_force: str
    quantity: Decimal
    price: Decimal
    average_price: Decimal
    stop_price: Decimal
    execution_type: ExecutionType
    status: str
    order_id: int
    last_filled_quantity: Decimal
    cumulative_filled_quantity: Decimal
    last_filled_price: Decimal
    commission: Decimal
    commission_asset: str | None
    trade_time_ms: int
    trade_id: int
    is_maker: bool
    reduce_only: bool
    close_position: bool
    position_side: str
    realized_pnl: Decimal

    @property
    def is_fill(self) -> bool:
        return (
            self.execution_type in (ExecutionType.TRADE, ExecutionType.CALCULATED)
            and self.last_filled_quantity > ZERO
        )

    @property
    def is_liquidation(self) -> bool:
        """Binance's own close: liquidation (`autoclose-...`), ADL, or delivery settlement."""
        cid = self.client_order_id
        return (
            self.execution_type is ExecutionType.CALCULATED
            or cid.startswith("autoclose-")
            or cid == "adl_autoclose"
            or cid.startswith("settlement_autoclose-")
        )


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one of our orders, exact."""

    symbol: str
    trade_id: int
    order_id: int
    client_order_id: str
    side: str
    quantity: Decimal
    price: Decimal
    commission: Decimal
    commission_asset: str | None
    realized_pnl: Decimal
    is_maker: bool
    reduce_only: bool
    liquidation: bool
    cumulative_quantity: Decimal
    order_status: str
    trade_time_ms: int
    event_time_ms: int

    @property
    def key(self) -> tuple[str, int, int]:
        return self.symbol, self.trade_id, self.order_id

    @classmethod
    def of(cls, u: OrderUpdate) -> Fill:
        if not u.is_fill:
            raise ValueError(f"{u.client_order_id}: {u.execution_type} is not a fill")
        return cls(
            symbol=u.symbol,
            trade_id=u.trade_id,
            order_id=u.order_id,
            client_order_id=u.client_order_id,
            side=u.side,
            quantity=u.last_filled_quantity,
            price=u.last_filled_price,
            commission=u.commission,
            commission_asset=u.commission_asset,
            realized_pnl=u.realized_pnl,
            is_maker=u.is_maker,
            reduce_only=u.reduce_only,
            liquidation=u.is_liquidation,
            cumulative_quantity=u.cumulative_filled_quantity,
            order_status=u.status,
            trade_time_ms=u.trade_time_ms,
            event_time_ms=u.event_time_ms,
        )


def fill_from_user_trade(raw: Mapping[str, Any], client_order_id: str = "") -> Fill:
    """A fill from REST `GET /fapi/v1/userTrades` (the resync after a reconnect).

    That answer has no client order id (pass it when the order is known) and no cumulative
    quantity or order status; its key (symbol, id, orderId) is the stream's (s, t, i), so the
    `FillDeduplicator` drops whichever of the two copies comes second. Binance's documented
    example shows a negative `commission` where the stream's `n` is positive; a commission is
    a cost here, stored positive.
    """
    w = f"userTrades {raw.get('id', '?') if isinstance(raw, Mapping) else '?'}"
    quantity = _dec(raw, "qty", w)
    if quantity <= ZERO:
        raise InvalidRecord("INVALID_VALUE", f"{w}: qty {quantity} <= 0")
    return Fill(
        symbol=_str(raw, "symbol", w),
        trade_id=_int(raw, "id", w),
        order_id=_int(raw, "orderId", w),
        client_order_id=client_order_id,
        side=_str(raw, "side", w),
        quantity=quantity,
        price=_dec(raw, "price", w),
        commission=abs(_dec(raw, "commission", w, "0")),
        commission_asset=raw.get("commissionAsset")
        if isinstance(raw.get("commissionAsset"), str)
        else None,
        realized_pnl=_dec(raw, "realizedPnl", w, "0"),
        is_maker=_bool(raw, "maker"),
        reduce_only=False,
        liquidation=False,
        cumulative_quantity=ZERO,
        order_status="",
        trade_time_ms=_int(raw, "time", w),
        event_time_ms=_int(raw, "time", w),
    )


class AlgoStatus(StrEnum):
    NEW = "NEW"
    CANCELED = "CANCELED"
    TRIGGERING = "TRIGGERING"
    TRIGGERED = "TRIGGERED"
    FINISHED = "FINISHED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class AlgoUpdate:
    """ALGO_UPDATE: a conditional order's new state (fills come as ORDER_TRADE_UPDATE)."""

    event_time_ms: int
    transaction_time_ms: int
    client_algo_id: str
    algo_id: int
    algo_type: str
    order_type: str
    symbol: str
    side: str
    position_side: str
    time_in_force: str
    quantity: Decimal
    status: AlgoStatus
    actual_order_id: str  # "" until triggered into the matching engine
    actual_average_price: Decimal
    actual_filled_quantity: Decimal
    trigger_price: Decimal
    price: Decimal
    working_type: str
    close_position: bool
    price_protect: bool
    reduce_only: bool
    trigger_time_ms: int
    reject_reason: str  # `rm`, empty unless REJECTED

    @property
    def is_open(self) -> bool:
        return self.status in (AlgoStatus.NEW, AlgoStatus.TRIGGERING)


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    wallet_balance: Decimal
    cross_wallet_balance: Decimal
    balance_change: Decimal


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    symbol: str
    position_amount: Decimal  # signed: > 0 long, < 0 short (one-way mode)
    entry_price: Decimal
    breakeven_price: Decimal
    accumulated_realized: Decimal
    unrealized_pnl: Decimal
    margin_type: str
    isolated_wallet: Decimal
    position_side: str


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """ACCOUNT_UPDATE: changed balances and positions, and why (`m`: ORDER, FUNDING_FEE...)."""

    event_time_ms: int
    transaction_time_ms: int
    reason: str
    balances: tuple[Balance, ...]
    positions: tuple[PositionUpdate, ...]


@dataclass(frozen=True, slots=True)
class ListenKeyExpired:
    event_time_ms: int
    listen_key: str


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """An event type this module does not interpret (kept, not dropped, for the audit)."""

    event_type: str
    event_time_ms: int


UserStreamEvent = OrderUpdate | AlgoUpdate | AccountUpdate | ListenKeyExpired | OtherEvent


def _order_update(raw: Mapping[str, Any]) -> OrderUpdate:
    o = _get(raw, "o", "ORDER_TRADE_UPDATE")
    w = f"ORDER_TRADE_UPDATE {o.get('c', '?') if isinstance(o, Mapping) else '?'}"
    try:
        execution = ExecutionType(_str(o, "x", w))
    except ValueError:
        raise InvalidRecord(
            "INVALID_VALUE", f"{w}: unknown execution type {o.get('x')!r}"
        ) from None
    # a fill must say what filled: no defaults for its quantity, price and trade id
    fill = execution in (ExecutionType.TRADE, ExecutionType.CALCULATED)
    zero = None if fill else "0"
    return OrderUpdate(
        event_time_ms=_int(raw, "E", w),
        transaction_time_ms=_int(raw, "T", w, _int(raw, "E", w)),
        symbol=_str(o, "s", w),
        client_order_id=_str(o, "c", w),
        side=_str(o, "S", w),
        order_type=_str(o, "o", w),
        original_type=_str(o, "ot", w, _str(o, "o", w)),
        time_in_force=_str(o, "f", w, ""),
        quantity=_dec(o, "q", w),
        price=_dec(o, "p", w, "0"),
        average_price=_dec(o, "ap", w, "0"),
        stop_price=_dec(o, "sp", w, "0"),
        execution_type=execution,
        status=_str(o, "X", w),
        order_id=_int(o, "i", w),
        last_filled_quantity=_dec(o, "l", w, zero),
        cumulative_filled_quantity=_dec(o, "z", w, "0"),
        last_filled_price=_dec(o, "L", w, zero),
        commission=_dec(o, "n", w, "0"),
        commission_asset=o.get("N") if isinstance(o.get("N"), str) else None,
        trade_time_ms=_int(o, "T", w, _int(raw, "E", w)),
        trade_id=_int(o, "t", w, None if fill else 0),
        is_maker=_bool(o, "m"),
        reduce_only=_bool(o, "R"),
        close_position=_bool(o, "cp"),
        position_side=_str(o, "ps", w, "BOTH"),
        realized_pnl=_dec(o, "rp", w, "0"),
    )


def _algo_update(raw: Mapping[str, Any]) -> AlgoUpdate:
    o = _get(raw, "o", "ALGO_UPDATE")
    w = f"ALGO_UPDATE {o.get('caid', '?') if isinstance(o, Mapping) else '?'}"
    try:
        status = AlgoStatus(_str(o, "X", w))
    except ValueError:
        raise InvalidRecord("INVALID_VALUE", f"{w}: unknown algo status {o.get('X')!r}") from None
    actual = o.get("ai", "")
    return AlgoUpdate(
        event_time_ms=_int(raw, "E", w),
        transaction_time_ms=_int(raw, "T", w, _int(raw, "E", w)),
        client_algo_id=_str(o, "caid", w),
        algo_id=_int(o, "aid", w),
        algo_type=_str(o, "at", w, "CONDITIONAL"),
        order_type=_str(o, "o", w),
        symbol=_str(o, "s", w),
        side=_str(o, "S", w),
        position_side=_str(o, "ps", w, "BOTH"),
        time_in_force=_str(o, "f", w, ""),
        quantity=_dec(o, "q", w, "0"),
        status=status,
        actual_order_id="" if actual is None else str(actual),
        actual_average_price=_dec(o, "ap", w, "0"),
        actual_filled_quantity=_dec(o, "aq", w, "0"),
        trigger_price=_dec(o, "tp", w),
        price=_dec(o, "p", w, "0"),
        working_type=_str(o, "wt", w, "CONTRACT_PRICE"),
        close_position=_bool(o, "cp"),
        price_protect=_bool(o, "pP"),
        reduce_only=_bool(o, "R"),
        trigger_time_ms=_int(o, "tt", w, 0),
        reject_reason=_str(o, "rm", w, ""),
    )


def _account_update(raw: Mapping[str, Any]) -> AccountUpdate:
    w = "ACCOUNT_UPDATE"
    a = _get(raw, "a", w)
    balances = tuple(
        Balance(
            asset=_str(b, "a", w),
            wallet_balance=_dec(b, "wb", w),
            cross_wallet_balance=_dec(b, "cw", w),
            balance_change=_dec(b, "bc", w, "0"),
        )
        for b in _list(a, "B", w)
    )
    positions = tuple(
        PositionUpdate(
            symbol=_str(p, "s", w),
            position_amount=_dec(p, "pa", w),
            entry_price=_dec(p, "ep", w),
            breakeven_price=_dec(p, "bep", w, "0"),
            accumulated_realized=_dec(p, "cr", w, "0"),
            unrealized_pnl=_dec(p, "up", w),
            margin_type=_str(p, "mt", w),
            isolated_wallet=_dec(p, "iw", w, "0"),
            position_side=_str(p, "ps", w, "BOTH"),
        )
        for p in _list(a, "P", w)
    )
    return AccountUpdate(
        event_time_ms=_int(raw, "E", w),
        transaction_time_ms=_int(raw, "T", w, _int(raw, "E", w)),
        reason=_str(a, "m", w),
        balances=balances,
        positions=positions,
    )


def _list(raw: Mapping[str, Any], key: str, what: str) -> list[Mapping[str, Any]]:
    value = raw.get(key, []) if isinstance(raw, Mapping) else None
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise InvalidRecord("INVALID_VALUE", f"{what}.{key}: not a list of objects")
    return value


_PARSERS: dict[str, Callable[[Mapping[str, Any]], UserStreamEvent]] = {
    "ORDER_TRADE_UPDATE": _order_update,
    "ALGO_UPDATE": _algo_update,
    "ACCOUNT_UPDATE": _account_update,
    "listenKeyExpired": lambda raw: ListenKeyExpired(
        _int(raw, "E", "listenKeyExpired"), _str(raw, "listenKey", "listenKeyExpired", "")
    ),
}


def parse_event(payload: Mapping[str, Any]) -> UserStreamEvent:
    """One decoded websocket message (bare, or wrapped as {"stream": ..., "data": {...}})."""
    if not isinstance(payload, Mapping):
        raise InvalidRecord("INVALID_VALUE", f"user-stream message is not an object: {payload!r}")
    raw = payload["data"] if "data" in payload and "e" not in payload else payload
    if not isinstance(raw, Mapping):
        raise InvalidRecord("INVALID_VALUE", "user-stream message: `data` is not an object")
    event_type = _str(raw, "e", "user-stream message")
    parser = _PARSERS.get(event_type)
    if parser is None:
        return OtherEvent(event_type, _int(raw, "E", event_type, 0))
    return parser(raw)


# --- fill dedup --------------------------------------------------------------------------------


class FillDeduplicator:
    """Passes each fill once, whatever order, replay or duplication it arrives in.

    `accept` returns the `Fill` of a first-seen fill and None for a non-fill or a repeat.
    Memory: keys older than `horizon_ms` (by trade time) are forgotten by `prune(now_ms)`;
    make the horizon longer than any replay or REST resync reaches back (default 7 days).
    """

    def __init__(self, horizon_ms: int = 7 * 86_400_000) -> None:
        self._seen: dict[tuple[str, int, int], int] = {}
        self._horizon = horizon_ms

    def accept(self, update: OrderUpdate) -> Fill | None:
        if not update.is_fill:
            return None
        return self.accept_fill(Fill.of(update))

    def accept_fill(self, fill: Fill) -> Fill | None:
        """The fill if first seen (from the stream or a REST resync), else None."""
        if fill.key in self._seen:
            return None
        self._seen[fill.key] = fill.trade_time_ms
        return fill

    def seen(self, symbol: str, trade_id: int, order_id: int) -> bool:
        return (symbol, trade_id, order_id) in self._seen

    def prune(self, now_ms: int) -> int:
        """Forget fills traded before now - horizon; returns how many were forgotten."""
        return len(self.prune_keys(now_ms))

    def prune_keys(self, now_ms: int) -> list[tuple[str, int, int]]:
        """Forget fills traded before now - horizon; returns their keys (for a store that
        keeps one entry per fill)."""
        cutoff = now_ms - self._horizon
        old = [k for k, t in self._seen.items() if t < cutoff]
        for k in old:
            del self._seen[k]
        return old

    def items(self) -> list[tuple[tuple[str, int, int], int]]:
        """(key, trade time) of every remembered fill: what `restore` takes back."""
        return list(self._seen.items())

    @classmethod
    def restore(
        cls, items: Iterable[tuple[tuple[str, int, int], int]], horizon_ms: int = 7 * 86_400_000
    ) -> FillDeduplicator:
        """A deduplicator that remembers `items` (from `items()` of an earlier one)."""
        dedup = cls(horizon_ms)
        for (symbol, trade_id, order_id), traded in items:
            dedup._seen[(str(symbol), int(trade_id), int(order_id))] = int(traded)
        return dedup

    def __len__(self) -> int:
        return len(self._seen)


# --- listen key lifecycle ----------------------------------------------------------------------


class KeyState(StrEnum):
    NONE = "NONE"  # no key yet (start, or after expiry)
    ACTIVE = "ACTIVE"  # key valid, stream connected
    EXPIRED = "EXPIRED"  # the key died (listenKeyExpired, -1125, or keep-alive overdue)


class KeyAction(StrEnum):
    CREATE = "CREATE"  # POST /fapi/v1/listenKey, connect, then resync orders/positions by REST
    KEEPALIVE = "KEEPALIVE"  # PUT /fapi/v1/listenKey
    RECONNECT = "RECONNECT"  # new connection (same key if still valid) + REST resync
    WAIT = "WAIT"  # nothing due


KEEPALIVE_EVERY_MS = 30 * 60_000  # Binance recommends every 30 min; the key lives 60
KEY_LIFETIME_MS = 60 * 60_000
CONNECTION_LIFETIME_MS = 24 * 3_600_000
RECONNECT_MARGIN_MS = 5 * 60_000  # reconnect this long before Binance's 24 h cut


@dataclass(frozen=True, slots=True)
class ListenKey:
    """The listen key and connection as a value; `due(now)` says what to do next."""

    state: KeyState = KeyState.NONE
    key: str | None = None
    last_keepalive_ms: int = 0
    connected_ms: int = 0

    def created(self, key: str, now_ms: int) -> ListenKey:
        """A new key was made and the stream connected with it."""
        return ListenKey(KeyState.ACTIVE, key, now_ms, now_ms)

    def kept_alive(self, now_ms: int) -> ListenKey:
        if self.state is not KeyState.ACTIVE:
            raise ValueError(f"keep-alive of a {self.state} key")
        return replace(self, last_keepalive_ms=now_ms)

    def reconnected(self, now_ms: int) -> ListenKey:
        """Same key, new connection (the 24 h cut or a dropped socket)."""
        if self.state is not KeyState.ACTIVE:
            raise ValueError(f"reconnect of a {self.state} key")
        return replace(self, connected_ms=now_ms)

    def expired(self) -> ListenKey:
        """listenKeyExpired arrived, or the keep-alive answered -1125 (key does not exist)."""
        return replace(self, state=KeyState.EXPIRED)

    def on_event(self, event: UserStreamEvent) -> ListenKey:
        if isinstance(event, ListenKeyExpired) and (
            self.key is None or not event.listen_key or event.listen_key == self.key
        ):
            return self.expired()
        return self

    def due(self, now_ms: int) -> KeyAction:
        if self.state is not KeyState.ACTIVE:
            return KeyAction.CREATE
        if now_ms - self.last_keepalive_ms >= KEY_LIFETIME_MS:
            return KeyAction.CREATE  # it has lapsed on Binance's side: treat as expired
        if now_ms - self.connected_ms >= CONNECTION_LIFETIME_MS - RECONNECT_MARGIN_MS:
            return KeyAction.RECONNECT
        if now_ms - self.last_keepalive_ms >= KEEPALIVE_EVERY_MS:
            return KeyAction.KEEPALIVE
        return KeyAction.WAIT

    def __repr__(self) -> str:  # the key authenticates the stream: never print it whole
        shown = f"{self.key[:4]}…" if self.key else None
        return (
            f"ListenKey(state={self.state}, key={shown}, "
            f"last_keepalive_ms={self.last_keepalive_ms}, connected_ms={self.connected_ms})"
        )
