"""Governor commands and decisions survive Avro exactly, through the real wire format."""

from __future__ import annotations

from decimal import Decimal

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.governor.codec import (
    COMMAND_SCHEMA,
    DECISION_SCHEMA,
    command_from_avro,
    command_to_avro,
    decision_from_avro,
    decision_to_avro,
)
from agents.governor.model import (
    Clock,
    Command,
    Decision,
    DecisionKind,
    DenyReason,
    Halt,
    Regime,
    ReleaseReason,
    Resume,
    SetRegime,
    Side,
    SlotFilled,
    SlotRelease,
    SlotRequest,
)
from quantum.serde import AvroSerde
from quantum.validation import validate

T = 1_764_000_000_000
SERDE = AvroSerde(SchemaRegistryClient.new_client({"url": "mock://governor-codec"}))

COMMANDS: list[Command] = [
    SlotRequest("int-1", "BTCUSDT", Side.LONG, Decimal("250.00"), 0.731, T),
    SlotRequest("int-2", "ETHUSDT", Side.SHORT, Decimal("0.00000001"), -1e-300, T + 1),
    SlotFilled("fill-1", "int-1", "BTCUSDT", T + 2),
    SlotRelease("rel-1", "BTCUSDT", "int-1", ReleaseReason.POSITION_CLOSED, T + 3),
    SlotRelease("rel-2", "ETHUSDT", None, ReleaseReason.ORDER_EXPIRED, T + 4),
    SetRegime("reg-1", Regime.TREND_STRONG, T + 5),
    Halt("halt-1", "drawdown breaker", T + 6),
    Resume("res-1", T + 7),
    Clock("clk-1", T + 8),
]


def _wire(value: dict, schema_file: str) -> dict:
    return SERDE.decode(
        "g", SERDE.encode("g", value, schema_file=schema_file), schema_file=schema_file
    )


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: type(c).__name__)
def test_command_round_trip_through_the_wire(cmd: Command) -> None:
    value = command_to_avro(cmd)
    assert command_from_avro(value) == cmd
    decoded = _wire(value, COMMAND_SCHEMA)
    back = command_from_avro(decoded)
    assert back == cmd and type(back) is type(cmd)


def test_resume_and_clock_keep_their_branch() -> None:
    assert type(command_from_avro(_wire(command_to_avro(Resume("a", T)), COMMAND_SCHEMA))) is Resume
    assert type(command_from_avro(_wire(command_to_avro(Clock("a", T)), COMMAND_SCHEMA))) is Clock


def test_dash_type_notation_is_accepted() -> None:
    d = {"command": {"-type": "io.quantumtrader.Clock", "command_id": "c", "event_time_ms": T}}
    assert command_from_avro(d) == Clock("c", T)


def test_unknown_branch_raises() -> None:
    with pytest.raises(ValueError):
        command_from_avro({"command": ("io.quantumtrader.Nope", {})})
    with pytest.raises(ValueError):
        command_from_avro({"command": {"command_id": "c"}})


def test_valid_commands_pass_validation() -> None:
    for cmd in COMMANDS:
        validate(COMMAND_SCHEMA, _wire(command_to_avro(cmd), COMMAND_SCHEMA))


def _decision(**kw: object) -> Decision:
    base = dict(
        decision_id="int-1#0",
        command_id="int-1",
        kind=DecisionKind.GRANTED,
        event_time_ms=T,
        intent_id="int-1",
        symbol="BTCUSDT",
        side=Side.LONG,
        notional=Decimal("250.10"),
        score=0.5,
        deny_reason=None,
        release_reason=None,
        for_intent_id=None,
        regime=Regime.BASE,
        halted=False,
        open_after=3,
        reserved_after=1,
        active_slots=4,
        max_open_positions=10,
    )
    base.update(kw)
    return Decision(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "decision",
    [
        _decision(),
        _decision(kind=DecisionKind.DENIED, deny_reason=DenyReason.COOLDOWN),
        _decision(
            kind=DecisionKind.RELEASED,
            side=None,
            notional=None,
            score=None,
            release_reason=ReleaseReason.ROTATED_OUT,
        ),
        _decision(kind=DecisionKind.ROTATE_OUT, for_intent_id="int-9", regime=Regime.CHOP),
        _decision(
            kind=DecisionKind.HALTED,
            intent_id=None,
            symbol=None,
            side=None,
            notional=None,
            score=None,
            halted=True,
        ),
    ],
    ids=lambda d: d.kind.value,
)
def test_decision_round_trip_through_the_wire(decision: Decision) -> None:
    value = decision_to_avro(decision, 1234)
    decoded = _wire(value, DECISION_SCHEMA)
    validate(DECISION_SCHEMA, decoded)
    assert decision_from_avro(decoded) == (decision, 1234)


@settings(max_examples=200, deadline=None)
@given(
    notional=st.decimals(allow_nan=False, allow_infinity=False, min_value=0, places=8),
    score=st.floats(allow_nan=False, allow_infinity=False),
    offset=st.integers(min_value=0, max_value=2**63 - 1),
    t=st.integers(min_value=1, max_value=2**62),
)
def test_exact_round_trip_property(notional: Decimal, score: float, offset: int, t: int) -> None:
    cmd = SlotRequest("i", "BTCUSDT", Side.SHORT, notional, score, t)
    back = command_from_avro(_wire(command_to_avro(cmd), COMMAND_SCHEMA))
    assert (back == cmd and str(back.notional) == str(cmd.notional)) or back.notional == notional
    d = _decision(notional=notional, score=score, event_time_ms=t)
    assert decision_from_avro(_wire(decision_to_avro(d, offset), DECISION_SCHEMA)) == (d, offset)
