"""Binance USD-M symbol rules: filters from exchangeInfo, brackets from leverageBracket.

The exchange never rounds: an order that breaks a filter is rejected (-1111, -4014, -4023,
-4164, ...). So the project rounds *before* sending, with the helpers here, and checks with
`SymbolRules.check_order` exactly what the exchange would check. Rounding rules:

- quantities are floored to the step (never rounded up: a size is never bumped to a
  minimum); MARKET-type orders use MARKET_LOT_SIZE, LIMIT orders LOT_SIZE;
- prices go to the tick; trigger prices of protective orders round *toward the entry*
  (`round_trigger`), so a stop is never looser and a take-profit never greedier than asked;
- MIN_NOTIONAL is checked at the mark price for market orders, at the order's price or
  trigger otherwise; reduce-only orders are exempt (Binance's own rule).

`ExchangeRules.from_exchange_info(exchange_info, leverage_brackets)` parses the raw JSON of
`GET /fapi/v1/exchangeInfo` and `GET /fapi/v1/leverageBracket` (numbers or strings, as
Binance and its mirrors write them); `ExchangeRules.bundled()` loads the recorded rules of the
sample symbols from `data/exchange/binance-usdm-rules.json` (sources cited in its `_source`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any

from exchange.margin import Bracket, BracketError, BracketTable
from exchange.model import OrderSide, OrderType, PositionSide
from quantum.paths import data_path

BUNDLED_RULES = data_path("data", "exchange", "binance-usdm-rules.json")

ZERO = Decimal(0)


class RejectReason(StrEnum):
    """Why an order (or a sized intent) is refused. Binance's code where one applies."""

    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"  # no rules for the symbol (-1121)
    SYMBOL_NOT_TRADING = "SYMBOL_NOT_TRADING"  # exchangeInfo status is not TRADING
    NON_POSITIVE_QUANTITY = "NON_POSITIVE_QUANTITY"  # quantity <= 0 (-4003)
    QTY_PRECISION_EXCEEDED = "QTY_PRECISION_EXCEEDED"  # > quantityPrecision decimals (-1111)
    QTY_NOT_STEP_MULTIPLE = "QTY_NOT_STEP_MULTIPLE"  # not a multiple of stepSize (-4023)
    BELOW_MIN_QTY = "BELOW_MIN_QTY"  # under LOT_SIZE / MARKET_LOT_SIZE minQty
    ABOVE_MAX_QTY = "ABOVE_MAX_QTY"  # over LOT_SIZE / MARKET_LOT_SIZE maxQty
    NON_POSITIVE_PRICE = "NON_POSITIVE_PRICE"  # price or trigger <= 0
    PRICE_PRECISION_EXCEEDED = "PRICE_PRECISION_EXCEEDED"  # > pricePrecision decimals (-1111)
    PRICE_NOT_TICK_MULTIPLE = "PRICE_NOT_TICK_MULTIPLE"  # not a multiple of tickSize (-4014)
    PRICE_BELOW_MIN = "PRICE_BELOW_MIN"  # under PRICE_FILTER minPrice
    PRICE_ABOVE_MAX = "PRICE_ABOVE_MAX"  # over PRICE_FILTER maxPrice
    PRICE_OUT_OF_BAND = "PRICE_OUT_OF_BAND"  # LIMIT price outside PERCENT_PRICE of the mark
    BELOW_MIN_NOTIONAL = "BELOW_MIN_NOTIONAL"  # notional under MIN_NOTIONAL.notional (-4164)
    TOO_MANY_ORDERS = "TOO_MANY_ORDERS"  # MAX_NUM_ORDERS open orders on the symbol
    TOO_MANY_ALGO_ORDERS = "TOO_MANY_ALGO_ORDERS"  # MAX_NUM_ALGO_ORDERS conditional orders
    MISSING_PRICE = "MISSING_PRICE"  # LIMIT without price / conditional without trigger
    UNEXPECTED_PRICE = "UNEXPECTED_PRICE"  # price or trigger on an order type without one
    # account and order-state checks of the paper exchange (the live adapter maps Binance's)
    NO_MARK_PRICE = "NO_MARK_PRICE"  # no bar seen yet for the symbol
    INVALID_CLIENT_ORDER_ID = "INVALID_CLIENT_ORDER_ID"  # not ^[.A-Z:/a-z0-9_-]{1,36}$
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"  # same id as an open order (-4116)
    UNKNOWN_ORDER = "UNKNOWN_ORDER"  # cancel of an order that is not open (-2011)
    WOULD_IMMEDIATELY_TRIGGER = "WOULD_IMMEDIATELY_TRIGGER"  # trigger already crossed (-2021)
    REDUCE_ONLY_REJECTED = "REDUCE_ONLY_REJECTED"  # nothing to reduce, or wrong side (-2022)
    POSITION_OPEN = "POSITION_OPEN"  # entry on a symbol already held or being entered
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"  # initial margin + fee > available (-2019)
    LEVERAGE_NOT_ALLOWED = "LEVERAGE_NOT_ALLOWED"  # leverage outside 1..max bracket leverage
    ABOVE_MAX_NOTIONAL_AT_LEVERAGE = "ABOVE_MAX_NOTIONAL_AT_LEVERAGE"  # bracket cap (-2027)


@dataclass(frozen=True, slots=True)
class Violation:
    """A rule an order breaks: the reason code and a human sentence with the numbers."""

    reason: RejectReason
    detail: str


class ExchangeRulesError(ValueError):
    """exchangeInfo / leverageBracket JSON that cannot be turned into rules."""


@dataclass(frozen=True, slots=True)
class LotSize:
    """LOT_SIZE or MARKET_LOT_SIZE: step, minimum and maximum quantity."""

    step: Decimal
    min_qty: Decimal
    max_qty: Decimal

    def floor(self, quantity: Decimal) -> Decimal:
        """Largest multiple of the step <= quantity (0 for quantity < step)."""
        if quantity <= ZERO:
            return ZERO
        steps = (quantity / self.step).to_integral_value(rounding=ROUND_FLOOR)
        return (steps * self.step).quantize(self.step)


@dataclass(frozen=True, slots=True)
class PriceFilter:
    """PRICE_FILTER; a 0 min or max price disables that bound (Binance's convention)."""

    tick: Decimal
    min_price: Decimal
    max_price: Decimal


@dataclass(frozen=True, slots=True)
class PercentPrice:
    """PERCENT_PRICE: a LIMIT BUY must be <= mark * up, a SELL >= mark * down."""

    multiplier_up: Decimal
    multiplier_down: Decimal
    multiplier_decimal: int


def _decimals(value: Decimal) -> int:
    """Digits after the point of a normalised decimal (0.0100 -> 2)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _to_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    steps = (price / tick).to_integral_value(rounding=rounding)
    return (steps * tick).quantize(tick)


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """Everything the exchange checks for one symbol, plus its maintenance-margin brackets."""

    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    margin_asset: str
    price_precision: int
    quantity_precision: int
    price_filter: PriceFilter
    lot_size: LotSize
    market_lot_size: LotSize
    min_notional: Decimal
    percent_price: PercentPrice | None
    max_num_orders: int | None
    max_num_algo_orders: int | None
    liquidation_fee: Decimal | None
    brackets: BracketTable

    # --- rounding -------------------------------------------------------------------------

    def lot(self, order_type: OrderType = OrderType.MARKET) -> LotSize:
        """MARKET_LOT_SIZE for market-type orders, LOT_SIZE for LIMIT."""
        return self.market_lot_size if order_type.is_market else self.lot_size

    def floor_quantity(
        self, quantity: Decimal, order_type: OrderType = OrderType.MARKET
    ) -> Decimal:
        """Floor to the step of the lot filter that applies to `order_type`."""
        return self.lot(order_type).floor(quantity)

    def round_price(self, price: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
        """Price to the tick with a `decimal` rounding mode (nearest by default)."""
        return _to_tick(price, self.price_filter.tick, rounding)

    def round_trigger(
        self, trigger: Decimal, position_side: PositionSide, order_type: OrderType
    ) -> Decimal:
        """Trigger price of a protective order to the tick, rounded toward the entry.

        A long's stop (below) and a short's take-profit (below) round up; a short's stop
        (above) and a long's take-profit (above) round down. So the stop distance the size
        was computed for never grows, and a target is never moved further away.
        """
        if order_type not in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET):
            raise ValueError(f"round_trigger is for conditional orders, got {order_type}")
        is_stop = order_type is OrderType.STOP_MARKET
        below = is_stop == (position_side is PositionSide.LONG)
        return _to_tick(trigger, self.price_filter.tick, ROUND_CEILING if below else ROUND_FLOOR)

    def max_notional(self, leverage: int) -> Decimal:
        return self.brackets.max_notional(leverage)

    # --- checks ---------------------------------------------------------------------------

    def check_quantity(self, quantity: Decimal, order_type: OrderType) -> Violation | None:
        lot = self.lot(order_type)
        name = "MARKET_LOT_SIZE" if order_type.is_market else "LOT_SIZE"
        if quantity <= ZERO:
            return Violation(RejectReason.NON_POSITIVE_QUANTITY, f"quantity {quantity} <= 0")
        if _decimals(quantity) > self.quantity_precision:
            return Violation(
                RejectReason.QTY_PRECISION_EXCEEDED,
                f"quantity {quantity} has more than {self.quantity_precision} decimals",
            )
        if quantity % lot.step != ZERO:
            return Violation(
                RejectReason.QTY_NOT_STEP_MULTIPLE,
                f"quantity {quantity} is not a multiple of {name} step {lot.step}",
            )
        if quantity < lot.min_qty:
            return Violation(
                RejectReason.BELOW_MIN_QTY, f"quantity {quantity} < {name} minQty {lot.min_qty}"
            )
        if quantity > lot.max_qty:
            return Violation(
                RejectReason.ABOVE_MAX_QTY, f"quantity {quantity} > {name} maxQty {lot.max_qty}"
            )
        return None

    def check_price(self, price: Decimal, what: str = "price") -> Violation | None:
        """PRICE_FILTER: positive, within min/max (0 = no bound), multiple of the tick."""
        pf = self.price_filter
        if price <= ZERO:
            return Violation(RejectReason.NON_POSITIVE_PRICE, f"{what} {price} <= 0")
        if _decimals(price) > self.price_precision:
            return Violation(
                RejectReason.PRICE_PRECISION_EXCEEDED,
                f"{what} {price} has more than {self.price_precision} decimals",
            )
        if price % pf.tick != ZERO:
            return Violation(
                RejectReason.PRICE_NOT_TICK_MULTIPLE,
                f"{what} {price} is not a multiple of tickSize {pf.tick}",
            )
        if pf.min_price > ZERO and price < pf.min_price:
            return Violation(
                RejectReason.PRICE_BELOW_MIN, f"{what} {price} < minPrice {pf.min_price}"
            )
        if pf.max_price > ZERO and price > pf.max_price:
            return Violation(
                RejectReason.PRICE_ABOVE_MAX, f"{what} {price} > maxPrice {pf.max_price}"
            )
        return None

    def percent_price_band(self, mark_price: Decimal) -> tuple[Decimal, Decimal] | None:
        """(lowest SELL, highest BUY) LIMIT price PERCENT_PRICE allows at this mark."""
        pp = self.percent_price
        if pp is None:
            return None
        return mark_price * pp.multiplier_down, mark_price * pp.multiplier_up

    def check_min_notional(
        self, quantity: Decimal, price: Decimal, *, reduce_only: bool
    ) -> Violation | None:
        """MIN_NOTIONAL at `price` (the mark for market orders); reduce-only is exempt."""
        if reduce_only:
            return None
        notional = quantity * price
        if notional < self.min_notional:
            return Violation(
                RejectReason.BELOW_MIN_NOTIONAL,
                f"notional {quantity} x {price} = {notional} < MIN_NOTIONAL {self.min_notional}",
            )
        return None

    def check_order(
        self,
        *,
        side: OrderSide,
        order_type: OrderType,
        quantity: Decimal,
        mark_price: Decimal,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
        reduce_only: bool = False,
        open_orders: int = 0,
        open_algo_orders: int = 0,
    ) -> Violation | None:
        """The first filter the order breaks, in Binance's order of checks, or None.

        `mark_price` prices the MIN_NOTIONAL check of MARKET orders and the PERCENT_PRICE
        band of LIMIT orders; `open_orders` / `open_algo_orders` are the symbol's open
        orders before this one.
        """
        if self.status != "TRADING":
            return Violation(RejectReason.SYMBOL_NOT_TRADING, f"{self.symbol} is {self.status}")
        if order_type is OrderType.LIMIT:
            if price is None:
                return Violation(RejectReason.MISSING_PRICE, "LIMIT order without price")
            if trigger_price is not None:
                return Violation(RejectReason.UNEXPECTED_PRICE, "LIMIT order with a trigger")
        elif order_type.is_conditional:
            if trigger_price is None:
                return Violation(RejectReason.MISSING_PRICE, f"{order_type} without trigger")
            if price is not None:
                return Violation(RejectReason.UNEXPECTED_PRICE, f"{order_type} with a price")
        elif price is not None or trigger_price is not None:
            return Violation(RejectReason.UNEXPECTED_PRICE, "MARKET order with a price")
        violation = self.check_quantity(quantity, order_type)
        if violation:
            return violation
        if price is not None:
            violation = self.check_price(price)
            if violation:
                return violation
            band = self.percent_price_band(mark_price)
            if band is not None:
                low, high = band
                if side is OrderSide.BUY and price > high:
                    return Violation(
                        RejectReason.PRICE_OUT_OF_BAND,
                        f"BUY price {price} > mark {mark_price} x multiplierUp = {high}",
                    )
                if side is OrderSide.SELL and price < low:
                    return Violation(
                        RejectReason.PRICE_OUT_OF_BAND,
                        f"SELL price {price} < mark {mark_price} x multiplierDown = {low}",
                    )
        if trigger_price is not None:
            violation = self.check_price(trigger_price, "trigger price")
            if violation:
                return violation
        notional_price = price if price is not None else trigger_price or mark_price
        violation = self.check_min_notional(quantity, notional_price, reduce_only=reduce_only)
        if violation:
            return violation
        if self.max_num_orders is not None and open_orders >= self.max_num_orders:
            return Violation(
                RejectReason.TOO_MANY_ORDERS,
                f"{open_orders} open orders, MAX_NUM_ORDERS {self.max_num_orders}",
            )
        if (
            order_type.is_conditional
            and self.max_num_algo_orders is not None
            and open_algo_orders >= self.max_num_algo_orders
        ):
            return Violation(
                RejectReason.TOO_MANY_ALGO_ORDERS,
                f"{open_algo_orders} conditional orders, MAX_NUM_ALGO_ORDERS "
                f"{self.max_num_algo_orders}",
            )
        return None


# --- parsing ------------------------------------------------------------------------------


def _dec(value: Any, what: str) -> Decimal:
    """Binance writes decimals as strings (filters) or JSON numbers (brackets)."""
    if isinstance(value, bool):
        raise ExchangeRulesError(f"{what}: {value!r} is not a number")
    if isinstance(value, float):
        value = repr(value)  # shortest repr round-trips the JSON literal exactly
    try:
        result = Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ExchangeRulesError(f"{what}: {value!r} is not a number") from exc
    if not result.is_finite():
        raise ExchangeRulesError(f"{what}: {value!r} is not finite")
    return result


def _whole(value: Any, what: str) -> int:
    number = _dec(value, what)
    if number != number.to_integral_value():
        raise ExchangeRulesError(f"{what}: {value!r} is not a whole number")
    return int(number)


def _canonical(value: Decimal) -> Decimal:
    """Strip insignificant trailing zeros but keep integers as integers (50.0 -> 50)."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal


def _parse_brackets(entry: Mapping[str, Any]) -> BracketTable:
    symbol = str(entry["symbol"])
    rows = []
    for raw in entry["brackets"]:
        where = f"{symbol} bracket {raw.get('bracket')}"
        rows.append(
            Bracket(
                bracket=_whole(raw["bracket"], where),
                initial_leverage=_whole(raw["initialLeverage"], f"{where} initialLeverage"),
                notional_floor=_canonical(_dec(raw["notionalFloor"], f"{where} notionalFloor")),
                notional_cap=_canonical(_dec(raw["notionalCap"], f"{where} notionalCap")),
                maint_margin_ratio=_dec(raw["maintMarginRatio"], f"{where} maintMarginRatio"),
                cum=_canonical(_dec(raw["cum"], f"{where} cum")),
            )
        )
    try:
        return BracketTable.from_rows(symbol, rows)
    except BracketError as exc:
        raise ExchangeRulesError(str(exc)) from exc


def parse_leverage_brackets(
    leverage_brackets: Sequence[Mapping[str, Any]] | Mapping[str, Any],
) -> dict[str, BracketTable]:
    """Maintenance-margin tiers per symbol from `GET /fapi/v1/leverageBracket`.

    The tables are what `exchange.margin` (maintenance margin, liquidation price) takes;
    each is checked at construction (contiguous, rates rising, cum derived).
    """
    if isinstance(leverage_brackets, Mapping):
        leverage_brackets = [leverage_brackets]
    tables: dict[str, BracketTable] = {}
    for entry in leverage_brackets:
        try:
            table = _parse_brackets(entry)
        except (KeyError, TypeError) as exc:
            raise ExchangeRulesError(f"malformed leverageBracket entry ({exc!r})") from exc
        tables[table.symbol] = table
    return tables


def _filters(symbol: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(f["filterType"]): f for f in symbol.get("filters", [])}


def _parse_symbol(raw: Mapping[str, Any], brackets: BracketTable) -> SymbolRules:
    name = str(raw["symbol"])
    filters = _filters(raw)
    for required in ("PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE", "MIN_NOTIONAL"):
        if required not in filters:
            raise ExchangeRulesError(f"{name}: no {required} filter")
    pf, lot, mlot = filters["PRICE_FILTER"], filters["LOT_SIZE"], filters["MARKET_LOT_SIZE"]
    percent = filters.get("PERCENT_PRICE")
    max_orders = filters.get("MAX_NUM_ORDERS")
    max_algo = filters.get("MAX_NUM_ALGO_ORDERS")

    def lot_size(f: Mapping[str, Any], kind: str) -> LotSize:
        step = _dec(f["stepSize"], f"{name} {kind} stepSize")
        if step <= ZERO:
            raise ExchangeRulesError(f"{name}: {kind} stepSize {step} <= 0")
        return LotSize(
            step=step,
            min_qty=_dec(f["minQty"], f"{name} {kind} minQty"),
            max_qty=_dec(f["maxQty"], f"{name} {kind} maxQty"),
        )

    tick = _dec(pf["tickSize"], f"{name} tickSize")
    if tick <= ZERO:
        raise ExchangeRulesError(f"{name}: tickSize {tick} <= 0")
    liquidation_fee = raw.get("liquidationFee")
    return SymbolRules(
        symbol=name,
        status=str(raw.get("status", raw.get("contractStatus", "TRADING"))),
        base_asset=str(raw.get("baseAsset", "")),
        quote_asset=str(raw.get("quoteAsset", "")),
        margin_asset=str(raw.get("marginAsset", raw.get("quoteAsset", ""))),
        price_precision=_whole(raw.get("pricePrecision", _decimals(tick)), f"{name} precision"),
        quantity_precision=_whole(
            raw.get("quantityPrecision", _decimals(_dec(lot["stepSize"], name))),
            f"{name} quantityPrecision",
        ),
        price_filter=PriceFilter(
            tick=tick,
            min_price=_dec(pf.get("minPrice", "0"), f"{name} minPrice"),
            max_price=_dec(pf.get("maxPrice", "0"), f"{name} maxPrice"),
        ),
        lot_size=lot_size(lot, "LOT_SIZE"),
        market_lot_size=lot_size(mlot, "MARKET_LOT_SIZE"),
        min_notional=_dec(filters["MIN_NOTIONAL"]["notional"], f"{name} MIN_NOTIONAL"),
        percent_price=(
            PercentPrice(
                multiplier_up=_dec(percent["multiplierUp"], f"{name} multiplierUp"),
                multiplier_down=_dec(percent["multiplierDown"], f"{name} multiplierDown"),
                multiplier_decimal=_whole(percent.get("multiplierDecimal", 4), name),
            )
            if percent is not None
            else None
        ),
        max_num_orders=_whole(max_orders["limit"], name) if max_orders else None,
        max_num_algo_orders=_whole(max_algo["limit"], name) if max_algo else None,
        liquidation_fee=(
            _dec(liquidation_fee, f"{name} liquidationFee") if liquidation_fee is not None else None
        ),
        brackets=brackets,
    )


@dataclass(frozen=True, slots=True)
class ExchangeRules:
    """Rules of every known symbol; a mapping from symbol to `SymbolRules`."""

    symbols: Mapping[str, SymbolRules]

    def __getitem__(self, symbol: str) -> SymbolRules:
        return self.symbols[symbol]

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.symbols

    def __iter__(self) -> Iterator[str]:
        return iter(self.symbols)

    def __len__(self) -> int:
        return len(self.symbols)

    def get(self, symbol: str) -> SymbolRules | None:
        return self.symbols.get(symbol)

    @classmethod
    def from_exchange_info(
        cls,
        exchange_info: Mapping[str, Any],
        leverage_brackets: Sequence[Mapping[str, Any]] | Mapping[str, Any],
        *,
        symbols: Sequence[str] | None = None,
    ) -> ExchangeRules:
        """Rules for every symbol present in both payloads (or exactly `symbols`).

        A symbol asked for but missing from either payload is an error, never a silent gap.
        A single-symbol leverageBracket answer (an object, not a list) is accepted too.
        """
        if isinstance(leverage_brackets, Mapping):
            leverage_brackets = [leverage_brackets]
        tables = {str(e["symbol"]): e for e in leverage_brackets}
        raws = {str(s["symbol"]): s for s in exchange_info.get("symbols", [])}
        wanted = list(symbols) if symbols is not None else sorted(set(raws) & set(tables))
        parsed: dict[str, SymbolRules] = {}
        for name in wanted:
            if name not in raws:
                raise ExchangeRulesError(f"{name}: not in exchangeInfo")
            if name not in tables:
                raise ExchangeRulesError(f"{name}: not in leverageBracket")
            try:
                parsed[name] = _parse_symbol(raws[name], _parse_brackets(tables[name]))
            except (KeyError, TypeError) as exc:
                raise ExchangeRulesError(f"{name}: malformed rules ({exc!r})") from exc
        return cls(parsed)

    @classmethod
    def load(cls, path: Path, *, symbols: Sequence[str] | None = None) -> ExchangeRules:
        """From a file holding {"exchangeInfo": ..., "leverageBracket": [...]}."""
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls.from_exchange_info(
            document["exchangeInfo"], document["leverageBracket"], symbols=symbols
        )

    @classmethod
    def bundled(cls) -> ExchangeRules:
        """The recorded Binance rules of the ten sample symbols."""
        return cls.load(BUNDLED_RULES)
