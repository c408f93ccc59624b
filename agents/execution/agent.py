"""Faust shell of execution: decisions, sized plans, exit intents and results -> the
ledger, orders and governor commands.

One instance (portfolio.decisions has one partition, and anti-pyramiding needs every
symbol's entries in one ledger), bound by agents/stateful.py. For each input the core's
`Step` becomes, in this order (each record delivered before the next is sent):

1. its ledger updates on the compacted `execution.ledger` (key intent id; a `Forget` is a
   tombstone): the write-ahead record of every order, durable before the order exists;
2. its orders (placements and cancels) on `orders`, key symbol;
3. its governor commands (`SlotFilled`, `SlotRelease`, deterministic ids) on `portfolio`.

The ledger is the processor's state, in table parts: one per entry (`e:<intent id>`,
only the entries a step changed are rewritten; a pruned entry's part is deleted) and
`meta` (when the ledger was last pruned). Restart:

- with a table (the usual case) the ledger is the table's; the input whose outputs a
  crash interrupted comes again and meets the ledger as it was before it (or, if the
  crash fell between the part writes, already holding its update), and the core gives
  the same orders and commands again, same ids;
- with an empty table (a new consumer group, a lost changelog) the ledger is read from
  `execution.ledger` to its end (`Ledger.restore`) before anything is consumed;
- either way, every order the ledger has as SENT (written, never acknowledged) is sent
  again, same client order id, and every cancel decided for an order still open. The
  paper exchange answers an order it has already received with that order's current
  status instead of placing it again (agents/paper_exchange), which is the lookup by
  client order id docs/execution.md asks for before a resend.

Bad input (a record that does not decode or validate, a report for an order the ledger
never wrote, a decision kind the table does not list, ...) goes to the input topic's DLQ
with its typed reason, and the agent goes on.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from agents.execution.codec import (
    entry_from_avro,
    entry_to_avro,
    exit_intent_from_avro,
    ledger_record,
    ledger_update_from_record,
    order_to_avro,
    plan_from_avro,
    result_from_avro,
)
from agents.execution.config import ExecutionConfig
from agents.execution.core import ExecutionCore
from agents.execution.ledger import Ledger
from agents.execution.model import CancelOrder, ExchangeCommand, LedgerUpdate, Step, invalid
from agents.governor.codec import COMMAND_SCHEMA, command_to_avro, decision_from_avro
from agents.governor.model import Decision, DecisionKind
from agents.runtime import AgentContext
from agents.stateful import Out, Record, StatefulAgent, register_stateful
from exchange.rules import ExchangeRules
from quantum.config import RuntimeSettings
from quantum.end_of_stream import EndOfStream
from quantum.errors import PoisonRecord
from quantum.kafka_util import read_range
from quantum.serde import AvroSerde
from topologies.declaration import (
    EXECUTION_LEDGER,
    EXECUTION_RESULTS,
    EXIT_INTENTS,
    ORDERS,
    PORTFOLIO,
    PORTFOLIO_DECISIONS,
    SIZED_INTENTS,
    TOPOLOGY,
)

log = logging.getLogger(__name__)

LEDGER_SCHEMA = TOPOLOGY.topic(EXECUTION_LEDGER).schema or ""
PORTFOLIO_KEY = b"portfolio"
ENTRY_PART = "e:"
META_PART = "meta"
# How often (in decision event time) the ledger is pruned of entries older than
# ExecutionConfig.ledger_retention_ms: often enough to keep it small, rarely enough that
# the scan over the ledger costs nothing per record.
PRUNE_EVERY_MS = 15 * 60 * 1000
_KINDS = frozenset(k.value for k in DecisionKind)


def decision_from_record(value: dict[str, Any]) -> Decision:
    """The Decision in a portfolio.decisions record. A kind the governor's model does not
    have yet travels as its string: the core's DECISION_TABLE is keyed by string and
    dead-letters a kind it does not list (UnknownDecisionKind)."""
    kind = value.get("kind")
    try:
        if kind in _KINDS:
            return decision_from_avro(value)[0]
        decision, _ = decision_from_avro({**value, "kind": DecisionKind.GRANTED.value})
        return replace(decision, kind=kind)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as exc:
        raise invalid(f"malformed decision ({type(exc).__name__}: {exc})") from exc


def read_ledger(settings: RuntimeSettings, serde: AvroSerde) -> list[LedgerUpdate]:
    """Every record of the compacted ledger topic, in log order (tombstones included)."""
    topic = settings.topic(EXECUTION_LEDGER)
    updates: list[LedgerUpdate] = []
    for msg in read_range(settings.kafka.bootstrap, topic, isolation="read_uncommitted"):
        key = msg.key() or b""
        raw = msg.value()
        value = None if raw is None else serde.decode(topic, raw, schema_file=LEDGER_SCHEMA)
        updates.append(ledger_update_from_record(key, value))
    return updates


class ExecutionProcessor:
    """The execution core over a ledger; its entries are the table's parts."""

    def __init__(
        self,
        core: ExecutionCore,
        ledger: Ledger,
        meta: dict[str, Any] | None,
        *,
        all_dirty: bool = False,
    ) -> None:
        self.core = core
        self.ledger = ledger
        self.last_prune = ledger.decision_clock if meta is None else int(meta["last_prune"])
        self._changes: dict[str, Any | None] = (
            {e.intent_id: entry_to_avro(e) for e in ledger} if all_dirty else {}
        )
        self._meta_written = meta
        # Restart: SENT orders and decided cancels go out again before anything else.
        resend: list[ExchangeCommand] = [*core.pending_orders(ledger)]
        resend += core.pending_cancels(ledger)
        self._recovery = [self._order_out(c) for c in resend]
        if resend:
            log.info("execution: resending %d order(s) and cancel(s) after a restart", len(resend))

    # ---- Processor -------------------------------------------------------------------------

    def on_record(self, record: Record) -> list[Out]:
        step = self._decide(record)
        outs = self._apply(step)
        if record.topic == PORTFOLIO_DECISIONS:
            outs += self._maybe_prune()
        return self._take_recovery() + outs

    def on_end_of_stream(self, marker: EndOfStream) -> list[Out]:
        return self._take_recovery()

    def snapshot(self) -> dict[str, Any]:
        return {"last_prune": self.last_prune}

    def dirty_parts(self) -> dict[str, Any]:
        """The ledger entries changed since the last call (None: pruned), and `meta` when
        it changed."""
        parts: dict[str, Any] = {ENTRY_PART + k: v for k, v in self._changes.items()}
        self._changes = {}
        meta = self.snapshot()
        if meta != self._meta_written:
            parts[META_PART] = self._meta_written = meta
        return parts

    # ---- steps -------------------------------------------------------------------------------

    def _decide(self, record: Record) -> Step:
        v = record.value
        if record.topic == PORTFOLIO_DECISIONS:
            return self.core.on_decision(decision_from_record(v), self.ledger)
        if record.topic == SIZED_INTENTS:
            return self.core.on_intent(plan_from_avro(v), self.ledger)
        if record.topic == EXIT_INTENTS:
            return self.core.on_exit_intent(exit_intent_from_avro(v), self.ledger)
        if record.topic == EXECUTION_RESULTS:
            return self.core.on_execution_result(result_from_avro(v), self.ledger)
        raise PoisonRecord("UNEXPECTED_TOPIC", f"execution does not read {record.topic}")

    def _apply(self, step: Step) -> list[Out]:
        """Ledger records first (write-ahead), then orders, then governor commands."""
        outs = []
        for update in step.ledger_updates:
            key, value = ledger_record(update)
            outs.append(Out(EXECUTION_LEDGER, value, key))
            self._changes[key.decode()] = value
        self.ledger.apply(step.ledger_updates)
        outs += [self._order_out(o) for o in step.orders]
        outs += [Out(PORTFOLIO, command_to_avro(c), PORTFOLIO_KEY) for c in step.commands]
        for note in step.notes:
            log.debug("execution: %s", note)
        return outs

    def _maybe_prune(self) -> list[Out]:
        now = self.ledger.decision_clock
        if now - self.last_prune < PRUNE_EVERY_MS:
            return []
        self.last_prune = now
        return self._apply(self.core.prune(self.ledger, now))

    def _take_recovery(self) -> list[Out]:
        outs, self._recovery = self._recovery, []
        return outs

    @staticmethod
    def _order_out(cmd: ExchangeCommand) -> Out:
        symbol = cmd.order.symbol if isinstance(cmd, CancelOrder) else cmd.symbol
        return Out(ORDERS, order_to_avro(cmd), symbol.encode())


def processor_from_parts(core: ExecutionCore, parts: dict[str, Any]) -> ExecutionProcessor:
    """The processor a table's parts describe: the ledger of its entry parts."""
    entries = sorted(
        (entry_from_avro(v) for k, v in parts.items() if k.startswith(ENTRY_PART)),
        key=lambda e: (e.created_at, e.intent_id),
    )
    return ExecutionProcessor(core, Ledger(entries), parts.get(META_PART))


def binding(ctx: AgentContext) -> StatefulAgent:
    """How the agent is bound to its topics; the Faust shell (`register`) and the
    in-process replay engine (quantum/app/backtest/inprocess.py) both use it."""
    config: ExecutionConfig = ctx.config or ExecutionConfig()
    rules = ExchangeRules.bundled()
    core = ExecutionCore(config, {s: rules[s].price_filter.tick for s in rules})

    def make(parts: dict[str, Any] | None) -> ExecutionProcessor:
        if parts is not None:
            return processor_from_parts(core, parts)
        # A first start with an empty table: the compacted ledger topic is the durable copy.
        ledger = Ledger.restore(read_ledger(ctx.settings, ctx.serde))
        if len(ledger):
            log.info("execution: ledger of %d entries restored from the topic", len(ledger))
        return ExecutionProcessor(core, ledger, None, all_dirty=True)

    return StatefulAgent(
        # trade.sized carries sizing's end-of-stream marker; orders cannot carry one
        inputs={
            PORTFOLIO_DECISIONS: False,
            SIZED_INTENTS: True,
            EXIT_INTENTS: False,
            EXECUTION_RESULTS: False,
        },
        outputs=(),
        make=make,
        schemas={PORTFOLIO: COMMAND_SCHEMA},
    )


def register(ctx: AgentContext) -> None:
    register_stateful(ctx, binding(ctx))
