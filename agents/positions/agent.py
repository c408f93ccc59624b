"""Faust shell of positions: execution.results + market.ticks -> positions, trades and
SlotRelease(POSITION_CLOSED | ROTATED_OUT).

One instance over every partition (agents/stateful.py). Each symbol's book
(`SymbolBook`: the position, the fills applied, the trades closed within the dedup
horizon) is a table part of its own (`b:<symbol>`), rewritten only when a report changed
it; a bar only marks the open position, so the marks are one small part (`marks`) laid
over the books again on a restart. For each report the outputs go out in this order: the
position (compacted topic, key symbol), the closed trade if it closed one, then its
release on the portfolio topic (command id `<intent>:release:<reason>`, which the
governor deduplicates). The position record carries the isolated liquidation price from
the bundled exchange rules (agents/positions/liquidation.py), for the exit guard.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agents.governor.codec import COMMAND_SCHEMA, command_to_avro
from agents.positions.codec import (
    book_from_json,
    book_to_json,
    position_to_avro,
    report_from_avro,
    trade_to_avro,
)
from agents.positions.config import PositionsConfig
from agents.positions.core import PositionsCore
from agents.positions.liquidation import liquidation_from_rules
from agents.positions.model import PositionStatus, PositionStep, SymbolBook
from agents.runtime import AgentContext
from agents.stateful import Out, Record, StatefulAgent, register_stateful
from exchange.rules import ExchangeRules
from quantum.end_of_stream import EndOfStream
from quantum.schemas import parse_decimal
from topologies.declaration import EXECUTION_RESULTS, MARKET_TICKS, PORTFOLIO, POSITIONS, TRADES

PORTFOLIO_KEY = b"portfolio"
BOOK_PART = "b:"
MARKS_PART = "marks"


class PositionsProcessor:
    """The positions core over one book per symbol; books are the table's parts."""

    def __init__(
        self,
        core: PositionsCore,
        books: dict[str, SymbolBook],
        marks: dict[str, Any] | None,
    ) -> None:
        self.core = core
        self.books = books
        self.marks: dict[str, tuple[Decimal, int]] = {}
        self._changes: dict[str, Any | None] = {}
        for symbol, (price, at) in (marks or {}).items():
            book = books.get(symbol)
            if book is not None:
                self._mark(symbol, Decimal(price), int(at), book)
        self._marks_written = dict(self.marks)

    def on_record(self, record: Record) -> list[Out]:
        v = record.value
        if record.topic == EXECUTION_RESULTS:
            report = report_from_avro(v)
            book = self.books.get(report.symbol)
            step = self.core.on_report(report, book)
            if step.book is not book:
                self.books[report.symbol] = step.book
                self._changes[report.symbol] = book_to_json(step.book)
            self._keep_mark(step.book)
            return _outs(step)
        symbol = v["symbol"]
        book = self.books.get(symbol)
        if book is None:
            return []  # no position was ever held on it: nothing to mark
        step = self._mark(symbol, parse_decimal(v["close"]), int(v["close_time"]), book)
        return _outs(step)

    def _mark(self, symbol: str, price: Decimal, at: int, book: SymbolBook) -> PositionStep:
        step = self.core.on_mark(symbol, price, at, book)
        self.books[symbol] = step.book
        self._keep_mark(step.book)
        return step

    def _keep_mark(self, book: SymbolBook) -> None:
        pos = book.position
        if pos is not None and pos.status == PositionStatus.OPEN:
            self.marks[book.symbol] = (pos.mark_price, pos.marked_at)
        else:
            self.marks.pop(book.symbol, None)

    def on_end_of_stream(self, marker: EndOfStream) -> list[Out]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return {s: [str(p), t] for s, (p, t) in sorted(self.marks.items())}

    def dirty_parts(self) -> dict[str, Any]:
        """The books a report changed, then the marks when they moved."""
        parts: dict[str, Any] = {BOOK_PART + k: v for k, v in self._changes.items()}
        self._changes = {}
        if self.marks != self._marks_written:
            parts[MARKS_PART] = self.snapshot()
            self._marks_written = dict(self.marks)
        return parts


def _outs(step: PositionStep) -> list[Out]:
    outs = []
    if step.position is not None:
        key = step.position.symbol.encode()
        outs.append(Out(POSITIONS, position_to_avro(step.position), key))
    if step.trade is not None:
        outs.append(Out(TRADES, trade_to_avro(step.trade), step.trade.symbol.encode()))
    outs += [Out(PORTFOLIO, command_to_avro(c), PORTFOLIO_KEY) for c in step.commands]
    return outs


def processor_from_parts(core: PositionsCore, parts: dict[str, Any]) -> PositionsProcessor:
    """The processor a table's parts describe: its books and the last marks."""
    books = {
        k[len(BOOK_PART) :]: book_from_json(v) for k, v in parts.items() if k.startswith(BOOK_PART)
    }
    return PositionsProcessor(core, books, parts.get(MARKS_PART))


def binding(ctx: AgentContext) -> StatefulAgent:
    """How the agent is bound to its topics; the Faust shell (`register`) and the
    in-process replay engine (quantum/app/backtest/inprocess.py) both use it."""
    config: PositionsConfig = ctx.config or PositionsConfig()
    core = PositionsCore(config, liquidation_from_rules(ExchangeRules.bundled()))

    def make(parts: dict[str, Any] | None) -> PositionsProcessor:
        return processor_from_parts(core, parts or {})

    return StatefulAgent(
        # positions and trades have no end-of-stream field: the marker stops here
        inputs={EXECUTION_RESULTS: False, MARKET_TICKS: True},
        outputs=(),
        make=make,
        schemas={PORTFOLIO: COMMAND_SCHEMA},
    )


def register(ctx: AgentContext) -> None:
    register_stateful(ctx, binding(ctx))
