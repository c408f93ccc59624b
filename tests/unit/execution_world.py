"""Builders and a harness shared by the execution unit and property tests (no broker)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agents.execution.config import ExecutionConfig
from agents.execution.core import ExecutionCore
from agents.execution.ledger import Ledger
from agents.execution.model import (
    CancelOrder,
    EntryPlan,
    ExecutionResult,
    ExitIntent,
    ExitReason,
    OrderStatus,
    PlaceOrder,
    Step,
)
from agents.governor.model import (
    Decision,
    DecisionKind,
    DenyReason,
    Regime,
    Side,
    SlotFilled,
    SlotRelease,
)

T0 = 1_764_000_000_000
D = Decimal


def plan(
    intent: str = "i1",
    symbol: str = "BTCUSDT",
    side: Side = Side.LONG,
    qty: str = "0.010",
    price: str = "100",
    t: int = T0,
    sl: str | None = None,
    tp: str | None = None,
    leverage: int = 5,
) -> EntryPlan:
    return EntryPlan(
        intent_id=intent,
        symbol=symbol,
        side=side,
        quantity=D(qty),
        entry_price=D(price),
        stop_loss=None if sl is None else D(sl),
        take_profit=None if tp is None else D(tp),
        leverage=leverage,
        event_time_ms=t,
    )


def decision(
    kind: DecisionKind | str,
    intent: str | None = "i1",
    symbol: str | None = "BTCUSDT",
    t: int = T0,
    *,
    command_id: str | None = None,
    n: int = 0,
    deny: DenyReason | None = None,
    for_intent: str | None = None,
) -> Decision:
    cid = command_id or f"cmd-{kind}-{intent}"
    return Decision(
        decision_id=f"{cid}#{n}",
        command_id=cid,
        kind=kind,  # type: ignore[arg-type]  # a str stands for a kind not in the enum yet
        event_time_ms=t,
        intent_id=intent,
        symbol=symbol,
        side=Side.LONG,
        notional=D("1"),
        score=0.9,
        deny_reason=deny,
        release_reason=None,
        for_intent_id=for_intent,
        regime=Regime.BASE,
        halted=False,
        open_after=0,
        reserved_after=0,
        active_slots=4,
        max_open_positions=10,
    )


def result(
    order: PlaceOrder | str,
    status: OrderStatus,
    filled: str = "0",
    avg: str | None = None,
    t: int = T0,
    *,
    intent: str | None = None,
    symbol: str = "BTCUSDT",
    reason: str | None = None,
    **extra: Any,
) -> ExecutionResult:
    if isinstance(order, PlaceOrder):
        coid, intent_id, symbol = order.client_order_id, order.intent_id, order.symbol
    else:
        coid, intent_id = order, intent or ""
    return ExecutionResult(
        client_order_id=coid,
        intent_id=intent_id if intent is None else intent,
        symbol=symbol,
        status=status,
        filled_quantity=D(filled),
        average_price=None if avg is None else D(avg),
        commission=D("0"),
        commission_asset="USDT",
        realized_pnl=D("0"),
        reason=reason,
        event_time_ms=t,
        **extra,
    )


def exit_intent(
    exit_id: str,
    intent: str = "i1",
    qty: str = "0.005",
    reason: ExitReason = ExitReason.HARVEST,
    symbol: str = "BTCUSDT",
    t: int = T0,
) -> ExitIntent:
    return ExitIntent(exit_id, symbol, intent, D(qty), reason, t)


Input = EntryPlan | Decision | ExecutionResult | ExitIntent


@dataclass
class Harness:
    """A core and its ledger, applying every step as a shell would."""

    core: ExecutionCore = field(default_factory=lambda: ExecutionCore(ExecutionConfig()))
    ledger: Ledger = field(default_factory=Ledger)
    steps: list[Step] = field(default_factory=list)

    def feed(self, x: Input) -> Step:
        if isinstance(x, EntryPlan):
            step = self.core.on_intent(x, self.ledger)
        elif isinstance(x, Decision):
            step = self.core.on_decision(x, self.ledger)
        elif isinstance(x, ExecutionResult):
            step = self.core.on_execution_result(x, self.ledger)
        elif isinstance(x, ExitIntent):
            step = self.core.on_exit_intent(x, self.ledger)
        else:  # pragma: no cover
            raise TypeError(x)
        self.ledger.apply(step.ledger_updates)
        self.steps.append(step)
        return step

    def state(self, intent: str = "i1") -> str:
        e = self.ledger.get(intent)
        assert e is not None, intent
        return e.state.value

    def placed(self) -> list[PlaceOrder]:
        return [o for s in self.steps for o in s.orders if isinstance(o, PlaceOrder)]

    def canceled(self) -> list[str]:
        return [
            o.client_order_id for s in self.steps for o in s.orders if isinstance(o, CancelOrder)
        ]

    def commands(self) -> list[SlotFilled | SlotRelease]:
        return [c for s in self.steps for c in s.commands]


def only_order(step: Step) -> PlaceOrder:
    [o] = step.orders
    assert isinstance(o, PlaceOrder)
    return o
