"""Sizing core on the recorded Binance rules: risk sizing, caps, filters, never bumped up."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.governor.model import Side, SlotRequest
from agents.sizing.config import SizingConfig, SizingMode
from agents.sizing.core import size_intent, slot_request
from agents.sizing.model import (
    SizedIntent,
    SizingRejected,
    SizingRejectReason,
    SizingState,
    TradeIntent,
)
from exchange.model import PositionSide
from exchange.rules import ExchangeRules
from quantum.errors import InvalidRecord

D = Decimal
RULES = ExchangeRules.bundled()
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT


def intent(symbol="BTCUSDT", side=LONG, entry="60000", stop="59100", tp="61500", leverage=30):
    return TradeIntent(
        intent_id="i-1",
        symbol=symbol,
        side=side,
        entry_price=D(entry),
        stop_loss=D(stop),
        take_profit=None if tp is None else D(tp),
        leverage=leverage,
        score=0.8,
        event_time_ms=1_700_000_000_000,
    )


def sized(decision) -> SizedIntent:
    assert isinstance(decision, SizedIntent), decision
    return decision


def rejected(decision) -> SizingRejectReason:
    assert isinstance(decision, SizingRejected), decision
    return decision.reason


def test_risk_sizing_on_btcusdt_step_and_min_notional():
    """1 % of 10,000 over a 900 USDT stop distance + 59.55 of fees per BTC: 0.10422 BTC,
    floored to BTCUSDT's 0.001 step (never rounded up)."""
    decision, state = size_intent(intent(), SizingState(D(10000)), RULES, SizingConfig())
    result = sized(decision)
    per_unit = D(900) + D("0.0005") * (D(60000) + D(59100))
    assert per_unit == D("959.55")
    assert D("0.104") < D(100) / per_unit < D("0.105")
    assert result.quantity == D("0.104")
    assert result.notional == D("6240.000") and result.margin == D(208)
    assert result.risk_amount == D("0.104") * per_unit <= D(100)
    assert result.binding_limit == "RISK"
    assert state.margin_by_symbol == {"BTCUSDT": D(208)}


def test_a_size_below_the_minimum_is_rejected_never_bumped_up():
    """Audit §3: a small account must not be silently sized up to the exchange minimum."""
    # 1 % of 1,000 = 10 USDT risk -> 0.0104 BTC -> 0.010 = 600 USDT: fine.
    ok, _ = size_intent(intent(), SizingState(D(1000)), RULES, SizingConfig())
    assert sized(ok).quantity == D("0.010")
    # 1 % of 100 = 1 USDT -> 0.00104 BTC -> 0.001 BTC = 60 USDT < MIN_NOTIONAL 100.
    small, state = size_intent(intent(), SizingState(D(100)), RULES, SizingConfig())
    assert rejected(small) is SizingRejectReason.BELOW_MIN_NOTIONAL
    assert "60.000 < MIN_NOTIONAL 100" in small.detail
    assert state == SizingState(D(100))  # nothing reserved


def test_the_audits_1000_dollar_account_hits_the_per_symbol_cap():
    """Audit §3.2: $1,000 account, 15 % per symbol = $150 margin, 85 % total = $850."""
    config = SizingConfig(risk_per_trade=D("0.2"))
    decision, _ = size_intent(intent(leverage=10), SizingState(D(1000)), RULES, config)
    result = sized(decision)
    assert result.binding_limit == "SYMBOL_MARGIN_CAP"
    assert result.margin <= D(150) and result.quantity == D("0.025")  # 150 x 10 / 60,000
    crowded = SizingState(D(1000), {"ETHUSDT": D(140), "SOLUSDT": D(150), "XRPUSDT": D(150),
                                    "ADAUSDT": D(150), "BNBUSDT": D(150)})  # fmt: skip
    decision, _ = size_intent(intent(leverage=10), crowded, RULES, config)
    assert sized(decision).binding_limit == "TOTAL_MARGIN_CAP"
    assert sized(decision).margin <= D(850) - crowded.total_margin
    full = SizingState(D(1000), {"BTCUSDT": D(150)})
    assert rejected(size_intent(intent(), full, RULES, config)[0]) is (
        SizingRejectReason.EXPOSURE_CAP_REACHED
    )


def test_fixed_notional_and_fixed_quantity_modes():
    notional = SizingConfig(mode=SizingMode.FIXED_NOTIONAL, fixed_notional=D(1000))
    result = sized(size_intent(intent(), SizingState(D(10000)), RULES, notional)[0])
    assert (result.quantity, result.binding_limit) == (D("0.016"), "FIXED_NOTIONAL")
    quantity = SizingConfig(mode=SizingMode.FIXED_QUANTITY, fixed_quantity=D("0.0123"))
    result = sized(size_intent(intent(), SizingState(D(10000)), RULES, quantity)[0])
    assert result.quantity == D("0.012")
    tiny = SizingConfig(mode=SizingMode.FIXED_NOTIONAL, fixed_notional=D(50))
    assert rejected(size_intent(intent(), SizingState(D(10000)), RULES, tiny)[0]) is (
        SizingRejectReason.BELOW_MIN_NOTIONAL
    )
    with pytest.raises(ValueError):
        SizingConfig(mode=SizingMode.FIXED_QUANTITY)


def test_intents_that_cannot_be_sized():
    state = SizingState(D(10000))
    config = SizingConfig()
    cases = {
        SizingRejectReason.INVALID_STOP: intent(stop="60100"),
        SizingRejectReason.INVALID_TAKE_PROFIT: intent(side=SHORT, stop="60900", tp="61000"),
        SizingRejectReason.LEVERAGE_NOT_ALLOWED: intent(leverage=50),
        # 30x on BTCUSDT liquidates about 2.9 % below the entry: a 4 % stop is never reached
        SizingRejectReason.STOP_BEYOND_LIQUIDATION: intent(stop="57600"),
    }
    for reason, case in cases.items():
        assert rejected(size_intent(case, state, RULES, config)[0]) is reason, reason
    assert rejected(size_intent(intent(), SizingState(D(0)), RULES, config)[0]) is (
        SizingRejectReason.NO_EQUITY
    )
    with pytest.raises(InvalidRecord):
        size_intent(intent(symbol="FOOUSDT"), state, RULES, config)


def test_short_sizing_and_the_governor_command():
    decision, _ = size_intent(
        intent(symbol="ETHUSDT", side=SHORT, entry="3000", stop="3045", tp="2925", leverage=20),
        SizingState(D(5000)),
        RULES,
        SizingConfig(),
    )
    result = sized(decision)
    assert result.quantity % D("0.001") == 0 and result.liquidation_price > D(3045)
    request = slot_request(result)
    assert request == SlotRequest(
        intent_id="i-1",
        symbol="ETHUSDT",
        side=Side.SHORT,
        notional=result.notional,
        score=0.8,
        event_time_ms=1_700_000_000_000,
    )


def test_intent_from_a_trade_intents_record():
    record = {
        "intent_id": "sig-7:BTCUSDT",
        "signal_id": "sig-7",
        "symbol": "BTCUSDT",
        "side": "LONG",
        "entry_price": "60000.5",
        "stop_loss": "59100",
        "take_profit": None,
        "leverage": 30,
        "score": 0.61,
        "quantity": None,
        "notional": None,
        "event_time": 123,
    }
    parsed = TradeIntent.from_record(record)
    assert parsed.entry_price == D("60000.5") and parsed.take_profit is None
    with pytest.raises(InvalidRecord):
        TradeIntent.from_record({**record, "stop_loss": "NaN"})
    with pytest.raises(InvalidRecord):
        TradeIntent.from_record({**record, "entry_price": "-1"})


symbols = st.sampled_from(sorted(RULES))
sides = st.sampled_from([LONG, SHORT])
PRICES = {
    "BTCUSDT": D(60000), "ETHUSDT": D(3000), "SOLUSDT": D(150), "BNBUSDT": D(600),
    "XRPUSDT": D("0.6"), "DOGEUSDT": D("0.15"), "ADAUSDT": D("0.45"), "AVAXUSDT": D(30),
    "LINKUSDT": D(15), "LTCUSDT": D(80),
}  # fmt: skip


@given(
    symbols,
    sides,
    st.decimals(min_value=D("0.001"), max_value=D("0.08"), places=4),  # stop distance fraction
    st.integers(min_value=1, max_value=30),
    st.decimals(min_value=D(10), max_value=D(1_000_000), places=2),  # equity
    st.dictionaries(symbols, st.decimals(min_value=D(0), max_value=D("0.2"), places=3)),
    st.sampled_from(
        [
            SizingConfig(),
            SizingConfig(risk_per_trade=D("0.5")),
            SizingConfig(mode=SizingMode.FIXED_NOTIONAL, fixed_notional=D(2000)),
            SizingConfig(mode=SizingMode.FIXED_QUANTITY, fixed_quantity=D(3)),
        ]
    ),
)
def test_sizes_respect_caps_steps_and_minimums(
    symbol, side, distance, leverage, equity, used, config
):
    entry = PRICES[symbol]
    stop = entry * (1 - side.sign * distance)
    state = SizingState(equity, {s: equity * share for s, share in used.items()})
    case = intent(symbol, side, str(entry), str(stop), None, leverage)
    decision, after = size_intent(case, state, RULES, config)
    assert size_intent(case, state, RULES, config) == (decision, after)  # deterministic
    if isinstance(decision, SizingRejected):
        assert after == state
        return
    rules = RULES[symbol]
    lot = rules.market_lot_size
    assert decision.quantity % lot.step == 0 and lot.min_qty <= decision.quantity <= lot.max_qty
    assert decision.notional == decision.quantity * entry >= rules.min_notional
    assert decision.margin <= equity * config.max_symbol_margin_fraction - state.symbol_margin(
        symbol
    )
    assert decision.margin <= equity * config.max_total_margin_fraction - state.total_margin
    assert decision.notional <= rules.max_notional(leverage)
    if config.mode is SizingMode.RISK:
        assert decision.risk_amount <= equity * config.risk_per_trade
    assert decision.liquidation_price is None or (
        (stop - decision.liquidation_price) * side.sign > 0
    )
    assert after.total_margin == state.total_margin + decision.margin
