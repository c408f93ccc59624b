"""Reconciliation: the pure diff, the confirmation that halts once, and the loop's records."""

from __future__ import annotations

from decimal import Decimal

import fastavro
from hypothesis import given
from hypothesis import strategies as st

from agents.binance_exchange.reconcile import (
    Confirmation,
    Diff,
    ExchangeOrder,
    ExchangePosition,
    MismatchKind,
    OurPosition,
    compare,
)
from agents.binance_exchange.reconcile_shell import halt_records, position_of, reconcile_loop
from agents.governor.codec import COMMAND_SCHEMA, command_from_avro
from agents.governor.model import Halt
from quantum.schemas import load_schema
from quantum.validation import validate
from tests.integration.ws_fakes import MemorySink
from topologies.declaration import PORTFOLIO, RISK_WARNINGS

D = Decimal
LONG = OurPosition("BTCUSDT", D("0.010"), stop_loss=D("93100"), take_profit=D("98000"))
STOP = ExchangeOrder("BTCUSDT", "S-i1", "STOP_MARKET", "SELL", D("93100"), algo=True)
TP = ExchangeOrder("BTCUSDT", "T-i1", "TAKE_PROFIT_MARKET", "SELL", D("98000"), algo=True)


def kinds(diff: Diff) -> list[tuple[str, str]]:
    return [(m.kind.value, m.symbol) for m in diff.mismatches]


def test_matching_books_are_clean() -> None:
    diff = compare([LONG], [ExchangePosition("BTCUSDT", D("0.010"))], [STOP, TP])
    assert diff.clean and "clean" in diff.render()


def test_each_kind_of_difference_is_named() -> None:
    short_eth = OurPosition("ETHUSDT", D("-0.3"))
    diff = compare(
        [LONG, short_eth, OurPosition("SOLUSDT", D("2"))],
        [
            ExchangePosition("BTCUSDT", D("0.004")),  # we think 0.010
            ExchangePosition("ETHUSDT", D("-0.3")),
            ExchangePosition("XRPUSDT", D("100")),  # not ours
        ],
        [TP, ExchangeOrder("ETHUSDT", "S-old", "STOP_MARKET", "BUY", D("3400"), algo=True)],
    )
    assert kinds(diff) == [
        ("POSITION_DIFFERS", "BTCUSDT"),
        ("PROTECTION_MISSING", "BTCUSDT"),
        ("ORDER_UNKNOWN", "ETHUSDT"),
        ("POSITION_MISSING", "SOLUSDT"),
        ("POSITION_UNKNOWN", "XRPUSDT"),
    ]
    assert "S-old" in diff.render()


def test_a_stop_on_the_wrong_side_or_trigger_does_not_protect() -> None:
    wrong = ExchangeOrder("BTCUSDT", "S-i1", "STOP_MARKET", "BUY", D("93100"), algo=True)
    moved = ExchangeOrder("BTCUSDT", "S-i1", "STOP_MARKET", "SELL", D("93000"), algo=True)
    for stop in (wrong, moved):
        diff = compare([LONG], [ExchangePosition("BTCUSDT", D("0.010"))], [stop, TP])
        assert kinds(diff) == [("ORDER_UNKNOWN", "BTCUSDT"), ("PROTECTION_MISSING", "BTCUSDT")]


amounts = st.decimals(min_value=-5, max_value=5, places=3).filter(lambda d: d != 0)


@given(st.dictionaries(st.sampled_from(["BTCUSDT", "ETHUSDT", "SOLUSDT"]), amounts), st.data())
def test_a_book_equals_itself_and_any_change_of_one_amount_is_found(book, data) -> None:
    ours = [OurPosition(s, a) for s, a in book.items()]
    theirs = [ExchangePosition(s, a) for s, a in book.items()]
    assert compare(ours, theirs, []).clean
    if book:
        symbol = data.draw(st.sampled_from(sorted(book)))
        other = data.draw(amounts.filter(lambda d: d != book[symbol]))
        changed = [ExchangePosition(s, other if s == symbol else a) for s, a in book.items()]
        diff = compare(ours, changed, [])
        assert [m.symbol for m in diff.mismatches] == [symbol]
        assert diff.mismatches[0].kind is MismatchKind.POSITION_DIFFERS


def test_confirmation_halts_once_per_lasting_difference_and_resets_when_clean() -> None:
    bad = compare([LONG], [], [])
    other = compare([], [ExchangePosition("ETHUSDT", D("1"))], [])
    clean = Diff(())
    state = Confirmation(confirm_after=2)
    seen = []
    for diff in (bad, clean, bad, bad, bad, other, other, clean, other, other):
        state, halt = state.check(diff)
        seen.append(halt)
    assert seen == [False, False, False, True, False, False, True, False, False, True]


def test_the_loop_sends_a_valid_halt_and_alert_on_a_confirmed_mismatch() -> None:
    bad = compare([LONG], [], [STOP])
    reads = iter([bad, bad, bad])
    sink = MemorySink()
    stopped = []
    halts = reconcile_loop(
        lambda: next(reads),
        sink,
        every_ms=60_000,
        stop=lambda: len(stopped) >= 3,
        clock_ms=lambda: 1_767_225_600_000,
        sleep=lambda s: stopped.append(s),
    )
    assert halts == 1 and stopped == [60.0, 60.0, 60.0]
    (command,) = sink.values(PORTFOLIO)
    (alert,) = sink.values(RISK_WARNINGS)
    assert fastavro.validate(command, fastavro.parse_schema(load_schema(COMMAND_SCHEMA)))
    schema = "risk.warnings.avsc"
    assert fastavro.validate(alert, fastavro.parse_schema(load_schema(schema)), raise_errors=True)
    validate(schema, alert)
    halt = command_from_avro(command)
    assert isinstance(halt, Halt) and "POSITION_MISSING BTCUSDT" in halt.reason
    assert alert["kind"] == "RECONCILE_MISMATCH" and "PROTECTION_MISSING" in alert["detail"]


def test_positions_records_become_signed_amounts_with_their_triggers() -> None:
    record = {
        "symbol": "ETHUSDT", "side": "SHORT", "quantity": "0.3", "status": "OPEN",
        "stop_loss": "3400", "take_profit": None,
    }  # fmt: skip
    assert position_of(record) == OurPosition("ETHUSDT", D("-0.3"), D("3400"), None)
    assert position_of({**record, "status": "CLOSED"}) is None
    halt, alert = halt_records(compare([position_of(record)], [], []), 5)
    assert halt.event_time_ms == alert.event_time_ms == 5
