"""The sizing agent's pure core: (intent, state, exchange rules, config) -> (decision, state).

Steps, in order (docs/sizing.md):

1. validate: symbol trading, equity > 0, stop on the losing side of the entry, take-profit
   (if any) on the winning side, leverage <= config.max_leverage and the bracket maximum;
2. size: RISK mode ``q = equity * risk_per_trade / (|entry - stop| + fee * (entry + stop))``
   (the stop-out loses exactly the risk budget, both fees included); FIXED_NOTIONAL
   ``q = notional / entry``; FIXED_QUANTITY ``q`` as configured;
3. cap: the size only ever shrinks, to the smallest of the total-margin room
   (``max_total_margin_fraction * equity - margin in use``), the symbol-margin room, the
   bracket's maximum notional at the leverage and MARKET_LOT_SIZE.maxQty;
4. round: floor to the MARKET_LOT_SIZE step (the entry is a MARKET order);
5. minimums: rounded notional at the mark price below MIN_NOTIONAL -> BELOW_MIN_NOTIONAL,
   below minQty -> BELOW_MIN_QTY. Never bumped up to the minimum;
6. liquidation: the isolated liquidation price (brackets) must lie beyond the stop, else
   STOP_BEYOND_LIQUIDATION — the stop would never be reached;
7. reserve: the new state holds the size's margin on the symbol.

No I/O, no clock: the event time comes in the intent.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal, localcontext

from agents.governor.model import Side, SlotRequest
from agents.sizing.config import SizingConfig, SizingMode
from agents.sizing.model import (
    SizedIntent,
    SizingDecision,
    SizingRejected,
    SizingRejectReason,
    SizingState,
    TradeIntent,
)
from exchange.margin import initial_margin, isolated_liquidation_price
from exchange.rules import ExchangeRules
from quantum.errors import InvalidRecord

ZERO = Decimal(0)


def _div(a: Decimal, b: Decimal) -> Decimal:
    """a / b rounded down: a size or a cap computed here is never above the exact value."""
    with localcontext() as ctx:
        ctx.prec = 50
        ctx.rounding = ROUND_FLOOR
        return a / b


def size_intent(
    intent: TradeIntent, state: SizingState, rules: ExchangeRules, config: SizingConfig
) -> tuple[SizingDecision, SizingState]:
    """Size one intent; the state comes back unchanged for a rejection."""
    symbol_rules = rules.get(intent.symbol)
    if symbol_rules is None:
        raise InvalidRecord("UNKNOWN_SYMBOL", f"no exchange rules for {intent.symbol}")

    def reject(reason: SizingRejectReason, detail: str) -> tuple[SizingDecision, SizingState]:
        return (
            SizingRejected(intent.intent_id, intent.symbol, reason, detail, intent.event_time_ms),
            state,
        )

    if symbol_rules.status != "TRADING":
        return reject(SizingRejectReason.SYMBOL_NOT_TRADING, f"{intent.symbol} is not trading")
    if state.equity <= ZERO:
        return reject(SizingRejectReason.NO_EQUITY, f"equity {state.equity} <= 0")
    sign = intent.side.sign
    entry, stop = intent.entry_price, intent.stop_loss
    distance = (entry - stop) * sign
    if distance <= ZERO:
        return reject(
            SizingRejectReason.INVALID_STOP,
            f"{intent.side} stop {stop} is not on the losing side of entry {entry}",
        )
    if intent.take_profit is not None and (intent.take_profit - entry) * sign <= ZERO:
        return reject(
            SizingRejectReason.INVALID_TAKE_PROFIT,
            f"{intent.side} take-profit {intent.take_profit} is not beyond entry {entry}",
        )
    leverage = intent.leverage
    top = symbol_rules.brackets.brackets[0].initial_leverage
    if leverage > min(config.max_leverage, top):
        return reject(
            SizingRejectReason.LEVERAGE_NOT_ALLOWED,
            f"leverage {leverage} > max {min(config.max_leverage, top)}",
        )

    # 2. size
    if config.mode is SizingMode.RISK:
        per_unit_loss = distance + config.fee_rate * (entry + stop)
        quantity = _div(state.equity * config.risk_per_trade, per_unit_loss)
        binding = "RISK"
    elif config.mode is SizingMode.FIXED_NOTIONAL:
        assert config.fixed_notional is not None
        quantity = _div(config.fixed_notional, entry)
        binding = "FIXED_NOTIONAL"
    else:
        assert config.fixed_quantity is not None
        quantity = config.fixed_quantity
        binding = "FIXED_QUANTITY"

    # 3. caps (quantities at the entry price)
    total_room = state.equity * config.max_total_margin_fraction - state.total_margin
    symbol_room = state.equity * config.max_symbol_margin_fraction - state.symbol_margin(
        intent.symbol
    )
    if total_room <= ZERO or symbol_room <= ZERO:
        which = "total" if total_room <= ZERO else intent.symbol
        return reject(
            SizingRejectReason.EXPOSURE_CAP_REACHED,
            f"no {which} margin room: total {state.total_margin}, "
            f"{intent.symbol} {state.symbol_margin(intent.symbol)}, equity {state.equity}",
        )
    market_lot = symbol_rules.market_lot_size
    caps = (
        ("TOTAL_MARGIN_CAP", _div(total_room * leverage, entry)),
        ("SYMBOL_MARGIN_CAP", _div(symbol_room * leverage, entry)),
        ("BRACKET_CAP", _div(symbol_rules.max_notional(leverage), entry)),
        ("MAX_QTY", market_lot.max_qty),
    )
    for name, cap in caps:
        if cap < quantity:
            quantity, binding = cap, name

    # 4. round down to the market lot step
    quantity = market_lot.floor(quantity)
    notional = quantity * entry

    # 5. minimums, never bumped
    if notional < symbol_rules.min_notional:
        return reject(
            SizingRejectReason.BELOW_MIN_NOTIONAL,
            f"{quantity} x {entry} = {notional} < MIN_NOTIONAL {symbol_rules.min_notional} "
            f"after {binding} sizing and flooring to step {market_lot.step}",
        )
    if quantity < market_lot.min_qty:
        return reject(
            SizingRejectReason.BELOW_MIN_QTY,
            f"{quantity} < MARKET_LOT_SIZE minQty {market_lot.min_qty} after {binding} sizing",
        )

    # 6. the stop must come before the liquidation price
    margin = initial_margin(notional, leverage)
    liquidation = isolated_liquidation_price(
        intent.side, quantity, entry, margin, symbol_rules.brackets
    )
    if liquidation is not None and (stop - liquidation) * sign <= ZERO:
        return reject(
            SizingRejectReason.STOP_BEYOND_LIQUIDATION,
            f"{intent.side} at {leverage}x liquidates at {liquidation}, before stop {stop}",
        )

    risk_amount = quantity * (distance + config.fee_rate * (entry + stop))
    sized = SizedIntent(
        intent_id=intent.intent_id,
        symbol=intent.symbol,
        side=intent.side,
        quantity=quantity,
        notional=notional,
        margin=margin,
        leverage=leverage,
        entry_price=entry,
        stop_loss=stop,
        take_profit=intent.take_profit,
        liquidation_price=liquidation,
        risk_amount=risk_amount,
        binding_limit=binding,
        score=intent.score,
        event_time_ms=intent.event_time_ms,
    )
    return sized, state.with_margin(intent.symbol, margin)


def slot_request(sized: SizedIntent) -> SlotRequest:
    """The governor command for a sized intent (its intent id is the command id)."""
    return SlotRequest(
        intent_id=sized.intent_id,
        symbol=sized.symbol,
        side=Side(sized.side.value),
        notional=sized.notional,
        score=sized.score,
        event_time_ms=sized.event_time_ms,
    )
