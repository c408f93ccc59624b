"""The selector's rules, one by one, on hand-made signals, bars and positions."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from agents.selector.codec import (
    INTENT_SCHEMA,
    REJECTION_SCHEMA,
    bar_from_avro,
    intent_to_avro,
    position_from_avro,
    rejected_to_avro,
    signal_from_avro,
)
from agents.selector.config import SelectorConfig
from agents.selector.core import InvalidInput, SelectorCore, correlation
from agents.selector.model import (
    Bar,
    Direction,
    PositionUpdate,
    Rejected,
    RejectReason,
    Side,
    Signal,
    Stage,
    TradeIntent,
    intent_id_for,
)
from quantum.serde import AvroSerde
from quantum.validation import CLIENT_ORDER_ID_RE, validate
from tests.unit.test_serde import sample_records

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01, a whole minute: windows of 10 s line up with it
UNIVERSE = frozenset({"BTCUSDT", "ETHUSDT", "SOLUSDT"})


def sig(
    symbol: str,
    confidence: float,
    minute: int = 0,
    direction: Direction = Direction.LONG,
    price: str = "100",
    sid: str | None = None,
) -> Signal:
    t = T0 + minute * MIN + 59_999  # a bar's close time
    return Signal(sid or f"{symbol}:{t}", symbol, direction, confidence, t, Decimal(price))


def reasons(outputs: list) -> list[tuple[str, str]]:
    return [
        (o.symbol, o.reason if isinstance(o, Rejected) else "INTENT")
        for o in outputs
        if isinstance(o, Rejected | TradeIntent)
    ]


def core(**kw) -> SelectorCore:  # type: ignore[no-untyped-def]
    return SelectorCore(SelectorConfig(**kw))


def test_audit_defaults() -> None:
    cfg = SelectorConfig()
    assert cfg.min_confidence == 0.55 and cfg.top_n == 10 and cfg.max_correlation == 0.80
    assert cfg.window_ms == 10_000 and cfg.skip_flat_sell
    assert (cfg.stop_loss_pct, cfg.take_profit_pct) == (Decimal("0.015"), Decimal("0.025"))
    assert cfg.dedup_ttl_ms == 86_400_000


def test_window_waits_for_event_time_then_ranks_by_confidence() -> None:
    c = core()
    assert c.on_signal(sig("ETHUSDT", 0.70)) == []
    assert c.on_signal(sig("BTCUSDT", 0.90)) == []
    assert c.on_signal(sig("SOLUSDT", 0.60)) == []  # same close time: the window is open
    out = c.on_signal(sig("BTCUSDT", 0.5, minute=1))  # next bar: the first window closes
    assert reasons(out) == [
        ("BTCUSDT", "BELOW_CONFIDENCE_FLOOR"),  # the new signal, rejected on arrival
        ("BTCUSDT", "INTENT"),
        ("ETHUSDT", "INTENT"),
        ("SOLUSDT", "INTENT"),
    ]
    assert c.on_end_of_stream() == []


def test_intent_fields_long_and_short() -> None:
    c = core(skip_flat_sell=False, leverage=20)
    c.on_signal(sig("BTCUSDT", 0.8, price="95000.0"))
    c.on_signal(sig("ETHUSDT", 0.7, direction=Direction.SHORT, price="3300.00"))
    long_, short = c.on_end_of_stream()
    assert isinstance(long_, TradeIntent) and isinstance(short, TradeIntent)
    assert long_.side == Side.LONG and long_.entry_price == Decimal("95000.0")
    assert long_.stop_loss == Decimal("93575.0") and long_.take_profit == Decimal("97375.0")
    assert short.side == Side.SHORT
    assert short.stop_loss == Decimal("3349.5") and short.take_profit == Decimal("3217.5")
    assert long_.leverage == 20 and long_.score == 0.8
    assert long_.intent_id == intent_id_for(long_.signal_id)
    assert long_.event_time == T0 + 59_999
    assert CLIENT_ORDER_ID_RE.fullmatch(long_.intent_id) and len(long_.intent_id) <= 30


def test_top_n_per_window() -> None:
    c = core(top_n=2)
    for i, s in enumerate(["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]):
        c.on_signal(sig(s, 0.6 + i / 100))
    assert reasons(c.on_end_of_stream()) == [
        ("XRPUSDT", "INTENT"),
        ("SOLUSDT", "INTENT"),
        ("ETHUSDT", "TOP_N_EXCEEDED"),
        ("BTCUSDT", "TOP_N_EXCEEDED"),
    ]


def test_ties_rank_by_symbol_then_signal_id() -> None:
    c = core(top_n=1)
    c.on_signal(sig("SOLUSDT", 0.7))
    c.on_signal(sig("ADAUSDT", 0.7))
    c.on_signal(sig("BTCUSDT", 0.7))
    assert reasons(c.on_end_of_stream())[0] == ("ADAUSDT", "INTENT")


def test_floor_is_inclusive_and_hold_is_no_candidate() -> None:
    c = core()
    assert c.on_signal(sig("BTCUSDT", 0.55)) == []
    assert c.on_signal(sig("ETHUSDT", 0.95, direction=Direction.HOLD)) == []
    out = c.on_signal(sig("SOLUSDT", 0.5499))
    assert reasons(out) == [("SOLUSDT", "BELOW_CONFIDENCE_FLOOR")]
    assert "0.5499 < 0.55" in out[0].detail
    assert reasons(c.on_end_of_stream()) == [("BTCUSDT", "INTENT")]


def test_universe_allowlist() -> None:
    c = core(universe=UNIVERSE, close_when_complete=False)
    out = c.on_signal(sig("DOGEUSDT", 0.9))
    assert reasons(out) == [("DOGEUSDT", "NOT_IN_UNIVERSE")]


def test_flat_sell_is_skipped_unless_shorts_are_allowed() -> None:
    c = core()
    c.on_signal(sig("BTCUSDT", 0.8, direction=Direction.SHORT))
    [rej] = c.on_end_of_stream()
    assert isinstance(rej, Rejected) and rej.reason == RejectReason.FLAT_SELL
    c = core(skip_flat_sell=False)
    c.on_signal(sig("BTCUSDT", 0.8, direction=Direction.SHORT))
    assert reasons(c.on_end_of_stream()) == [("BTCUSDT", "INTENT")]


def test_open_position_and_pending_intent_block_the_symbol() -> None:
    c = core()
    c.on_position(PositionUpdate("ETHUSDT", Side.LONG, T0))
    c.on_signal(sig("ETHUSDT", 0.9))
    c.on_signal(sig("BTCUSDT", 0.8))
    assert reasons(c.on_signal(sig("BTCUSDT", 0.8, minute=1))) == [
        ("ETHUSDT", "POSITION_OPEN"),
        ("BTCUSDT", "INTENT"),
    ]
    # one minute later BTC's intent is still in flight (pending_ttl 120 s)
    assert reasons(c.on_signal(sig("BTCUSDT", 0.8, minute=2))) == [("BTCUSDT", "PENDING_INTENT")]
    # the position shows up: now it is open, not pending
    c.on_position(PositionUpdate("BTCUSDT", Side.LONG, T0 + 3 * MIN))
    c.on_position(PositionUpdate("ETHUSDT", None, T0 + 3 * MIN))  # ETH closed
    # (closes minute 2's window: BTC's second signal finds the position open)
    assert reasons(c.on_signal(sig("ETHUSDT", 0.9, minute=3))) == [("BTCUSDT", "POSITION_OPEN")]
    assert reasons(c.on_signal(sig("BTCUSDT", 0.8, minute=3))) == []
    assert reasons(c.on_end_of_stream()) == [
        ("ETHUSDT", "INTENT"),
        ("BTCUSDT", "POSITION_OPEN"),
    ]


def test_a_pending_intent_expires() -> None:
    c = core(pending_ttl_ms=120_000)
    c.on_signal(sig("BTCUSDT", 0.8))
    c.on_end_of_stream()
    c = core(pending_ttl_ms=120_000)
    c.on_signal(sig("BTCUSDT", 0.8))
    c.on_signal(sig("BTCUSDT", 0.8, minute=2))  # closes minute 0: intent
    out = c.on_signal(sig("BTCUSDT", 0.8, minute=3))  # closes minute 2: 120 s later, free
    assert reasons(out) == [("BTCUSDT", "INTENT")]


def _feed_bars(c: SelectorCore, moves: dict[str, list[float]]) -> None:
    price = {s: 100.0 for s in moves}
    for i in range(len(next(iter(moves.values())))):
        for s, m in moves.items():
            price[s] *= 1 + m[i]
            c.on_bar(Bar(s, T0 - (100 - i) * MIN, Decimal(str(round(price[s], 6)))))


def test_correlated_with_an_open_position_is_rejected() -> None:
    market = [0.002 * math.sin(i * 1.7) + 0.001 * math.cos(i * 0.3) for i in range(61)]
    noise = [0.002 * math.sin(i * 2.9 + 1) for i in range(61)]
    c = core()
    _feed_bars(
        c,
        {
            "BTCUSDT": market,
            "ETHUSDT": [m * 1.2 + 0.0001 * n for m, n in zip(market, noise, strict=True)],
            "SOLUSDT": noise,
        },
    )
    assert c.correlation_between("ETHUSDT", "BTCUSDT") > 0.95
    assert abs(c.correlation_between("SOLUSDT", "BTCUSDT")) < 0.5
    c.on_position(PositionUpdate("BTCUSDT", Side.SHORT, T0))
    c.on_signal(sig("ETHUSDT", 0.9))
    c.on_signal(sig("SOLUSDT", 0.6))
    out = c.on_end_of_stream()
    assert reasons(out) == [("ETHUSDT", "CORRELATED"), ("SOLUSDT", "INTENT")]
    assert "with BTCUSDT" in out[0].detail


def test_within_a_window_a_selected_symbol_counts_for_correlation() -> None:
    market = [0.002 * math.sin(i * 1.7) for i in range(61)]
    c = core()
    _feed_bars(c, {"BTCUSDT": market, "ETHUSDT": [m * 0.8 for m in market]})
    c.on_signal(sig("BTCUSDT", 0.9))
    c.on_signal(sig("ETHUSDT", 0.8))
    assert reasons(c.on_end_of_stream()) == [("BTCUSDT", "INTENT"), ("ETHUSDT", "CORRELATED")]


def test_too_few_returns_is_no_correlation() -> None:
    c = core(correlation_min_periods=30)
    _feed_bars(
        c, {"BTCUSDT": [0.001 * i for i in range(20)], "ETHUSDT": [0.001 * i for i in range(20)]}
    )
    assert c.correlation_between("BTCUSDT", "ETHUSDT") is None
    assert correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None  # constant: undefined


def test_bars_are_idempotent() -> None:
    c = core()
    assert c.on_bar(Bar("BTCUSDT", T0, Decimal(100)))
    assert c.on_bar(Bar("BTCUSDT", T0 + MIN, Decimal(101)))
    before = c.snapshot()
    assert not c.on_bar(Bar("BTCUSDT", T0 + MIN, Decimal(101)))  # redelivered
    assert not c.on_bar(Bar("BTCUSDT", T0, Decimal(100)))  # older
    assert c.snapshot() == before


def test_duplicate_signal_gives_one_intent() -> None:
    c = core()
    s = sig("BTCUSDT", 0.8)
    assert c.on_signal(s) == []
    dup = c.on_signal(s)
    assert reasons(dup) == [("BTCUSDT", "DUPLICATE_SIGNAL")]
    out = c.on_end_of_stream()
    assert [o.intent_id for o in out if isinstance(o, TradeIntent)] == [intent_id_for(s.signal_id)]
    # after the window closed, the same id is still a duplicate, not a late signal
    assert reasons(c.on_signal(s)) == [("BTCUSDT", "DUPLICATE_SIGNAL")]


def test_dedup_memory_is_bounded_by_its_ttl() -> None:
    c = core(dedup_ttl_ms=5 * MIN)
    s = sig("BTCUSDT", 0.8)
    c.on_signal(s)
    c.on_signal(sig("ETHUSDT", 0.8, minute=10))
    assert s.signal_id not in c.snapshot()["seen"][0]


def test_late_signal_and_same_symbol_in_window() -> None:
    c = core()
    c.on_signal(sig("BTCUSDT", 0.8, sid="a"))
    c.on_signal(sig("BTCUSDT", 0.9, sid="b"))
    out = c.on_signal(sig("ETHUSDT", 0.7, minute=1))
    assert reasons(out) == [("BTCUSDT", "INTENT"), ("BTCUSDT", "SAME_SYMBOL_IN_WINDOW")]
    assert out[0].signal_id == "b"
    late = c.on_signal(sig("SOLUSDT", 0.9, minute=0))
    assert reasons(late) == [("SOLUSDT", "LATE_SIGNAL")]


def test_explicit_watermark_holds_the_window_open() -> None:
    """With several input partitions the shell passes the slowest partition's time: a
    faster partition's later signal does not close a window a slower one still feeds."""
    c = core()
    c.on_signal(sig("BTCUSDT", 0.8), watermark=T0)
    assert c.on_signal(sig("ETHUSDT", 0.7, minute=1), watermark=T0 + 30_000) == []
    assert c.on_signal(sig("SOLUSDT", 0.6), watermark=T0 + 30_000) == []  # not late
    out = c.on_watermark(T0 + MIN)
    assert reasons(out) == [("BTCUSDT", "INTENT"), ("SOLUSDT", "INTENT")]
    assert c.open_windows() == [(T0 + MIN + 59_999) // 10_000]


def test_window_closes_when_every_universe_symbol_reported() -> None:
    c = core(universe=UNIVERSE)
    assert c.on_signal(sig("BTCUSDT", 0.8)) == []
    assert c.on_signal(sig("ETHUSDT", 0.9, direction=Direction.HOLD)) == []
    out = c.on_signal(sig("SOLUSDT", 0.7))  # the third of three: no need to wait
    assert reasons(out) == [("BTCUSDT", "INTENT"), ("SOLUSDT", "INTENT")]
    assert c.open_windows() == []


def test_invalid_inputs_raise() -> None:
    c = core()
    for bad in (
        sig("BTCUSDT", float("nan")),
        sig("BTCUSDT", 1.5),
        sig("BTCUSDT", 0.7, price="0"),
    ):
        with pytest.raises(InvalidInput) as err:
            c.on_signal(bad)
        assert err.value.reason == "INVALID_VALUE"
    with pytest.raises(InvalidInput):
        c.on_bar(Bar("BTCUSDT", T0, Decimal(-1)))


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        SelectorConfig(correlation_window=20, correlation_min_periods=30)
    with pytest.raises(ValueError):
        SelectorConfig(min_confidence=1.5)


def test_snapshot_restore_mid_window_gives_the_same_outputs() -> None:
    cfg = SelectorConfig(top_n=2)

    def run(c: SelectorCore, signals: list[Signal]) -> list:
        return [o for s in signals for o in c.on_signal(s)]

    first = [sig(s, 0.6 + i / 50) for i, s in enumerate(["BTCUSDT", "ETHUSDT", "SOLUSDT"])]
    second = [sig("XRPUSDT", 0.9, minute=1), sig("BTCUSDT", 0.9, minute=2)]
    a = SelectorCore(cfg)
    _feed_bars(a, {"BTCUSDT": [0.001] * 40, "ETHUSDT": [0.002] * 40})
    a.on_position(PositionUpdate("LTCUSDT", Side.LONG, T0))
    out_a = run(a, first)
    b = SelectorCore.restore(cfg, json.loads(json.dumps(a.snapshot())))
    assert b.snapshot() == a.snapshot()
    assert run(a, second) + a.on_end_of_stream() == run(b, second) + b.on_end_of_stream()
    assert out_a == []


# ---- codec --------------------------------------------------------------------------------


@pytest.fixture
def serde() -> AvroSerde:
    return AvroSerde(SchemaRegistryClient.new_client({"url": "mock://selector"}))


def test_outputs_encode_validate_and_decode(serde: AvroSerde) -> None:
    c = core(top_n=1)
    c.on_signal(sig("BTCUSDT", 0.8, price="95000.0"))
    c.on_signal(sig("ETHUSDT", 0.7, price="3300.00"))
    intent, rejected = c.on_end_of_stream()
    assert isinstance(intent, TradeIntent) and isinstance(rejected, Rejected)
    for schema, value in (
        (INTENT_SCHEMA, intent_to_avro(intent)),
        (REJECTION_SCHEMA, rejected_to_avro(rejected)),
    ):
        validate(schema, value)
        assert (
            serde.decode("t", serde.encode("t", value, schema_file=schema), schema_file=schema)
            == value
        )
    assert rejected.stage == Stage.SELECTION and rejected.intent_id is None
    assert (
        rejected_to_avro(rejected)["rejection_id"]
        == f"{rejected.signal_id}:SELECTION:TOP_N_EXCEEDED"
    )


def test_inputs_decode_from_their_topics() -> None:
    records = sample_records()
    s = signal_from_avro(records["ai.signals.avsc"])
    assert (s.symbol, s.direction, s.price) == ("ETHUSDT", Direction.LONG, Decimal("3120.5"))
    b = bar_from_avro(records["market.ticks.avsc"])
    assert (
        b.close == Decimal("64150.25")
        and b.event_time == records["market.ticks.avsc"]["close_time"]
    )
    p = position_from_avro(records["positions.avsc"])
    assert p.side == Side.LONG
    closed = dict(records["positions.avsc"], status="CLOSED")
    assert position_from_avro(closed).side is None
