"""Every topic of the platform.

This is the one list of topic names: code refers to topics through the constants
below, `quantum topology apply` creates them, `quantum topology show` draws them with
the agents that read and write them (each agent names its topics in its own
`agents/<name>/spec.py`; the app joins the two). Names are logical;
`settings.topic(name)` adds the run's prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from quantum.dlq import dlq_topic

DAY_MS = 24 * 60 * 60 * 1000

MARKET_TICKS = "market.ticks"
MARKET_BARS = "market.bars"
AI_SIGNALS = "ai.signals"
TRADE_INTENTS = "trade.intents"
TRADE_REJECTIONS = "trade.rejections"
SIZED_INTENTS = "trade.sized"
PORTFOLIO = "portfolio"
PORTFOLIO_DECISIONS = "portfolio.decisions"
GOVERNOR_SNAPSHOTS = "portfolio.governor-snapshots"
ORDERS = "orders"
EXECUTION_RESULTS = "execution.results"
EXECUTION_LEDGER = "execution.ledger"
TRADES = "trades"
POSITIONS = "positions"
EXIT_INTENTS = "exit.intents"
RISK_WARNINGS = "risk.warnings"
BINANCE_USER_EVENTS = "binance.user-events"
PASSTHROUGH_OUT = "smoke.passthrough"

SNAPSHOT_MAX_BYTES = 16 * 1024 * 1024  # max.message.bytes of the governor's snapshots topic


@dataclass(frozen=True)
class TopicSpec:
    """A topic as it must exist on the broker.

    schema: the Avro file under `schemas/` for the record values (None: internal bytes).
    exact_partitions: drift in partition count is an error, never tolerated (the
        portfolio topic's single partition is what totally orders slot decisions).
    max_message_bytes: the topic's `max.message.bytes`, where the broker default (1 MB)
        is too small; None keeps the broker's.
    """

    name: str
    partitions: int
    schema: str | None
    doc: str
    cleanup_policy: Literal["delete", "compact"] = "delete"
    retention_ms: int = 7 * DAY_MS
    replication: int = 1
    exact_partitions: bool = False
    has_dlq: bool = True
    max_message_bytes: int | None = None

    def configs(self) -> dict[str, str]:
        configs = {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}
        if self.max_message_bytes is not None:
            configs["max.message.bytes"] = str(self.max_message_bytes)
        return configs


class Processor(Protocol):
    """What the topology needs to know of an agent to draw it: the agents themselves are
    declared in `agents/<name>/spec.py` (agents import the topology, never the reverse)."""

    @property
    def name(self) -> str: ...
    @property
    def reads(self) -> tuple[str, ...]: ...
    @property
    def writes(self) -> tuple[str, ...]: ...
    @property
    def guarantee_text(self) -> str: ...


@dataclass(frozen=True)
class Topology:
    topics: tuple[TopicSpec, ...]

    def topic(self, name: str) -> TopicSpec:
        for spec in self.topics:
            if spec.name == name:
                return spec
        raise KeyError(f"no topic {name!r} in the topology")

    def all_topics(self) -> tuple[TopicSpec, ...]:
        """Declared topics plus one dead-letter topic for each that has one."""
        dlqs = tuple(
            TopicSpec(
                name=dlq_topic(t.name),
                partitions=1,
                schema="dead_letter.avsc",
                doc=f"Dead letters of {t.name}: original bytes, error, source offset.",
                retention_ms=30 * DAY_MS,
                has_dlq=False,
            )
            for t in self.topics
            if t.has_dlq
        )
        return self.topics + dlqs


TOPOLOGY = Topology(
    topics=(
        TopicSpec(MARKET_TICKS, 6, "market.ticks.avsc", "Closed klines per symbol."),
        TopicSpec(AI_SIGNALS, 6, "ai.signals.avsc", "Model signals: direction and confidence."),
        TopicSpec(
            MARKET_BARS,
            6,
            "market.ticks.avsc",
            "Closed bars for the signal path. Live, the feed writes each kline here and to "
            "market.ticks; a replay writes it here only once the venue side (paper exchange, "
            "positions, exits) has settled on market.ticks for that bar, so fills, releases and "
            "new requests meet the governor in the same order on every run.",
        ),
        TopicSpec(
            TRADE_INTENTS,
            1,
            "trade.intents.avsc",
            "Selected candidates in the selector's order; one partition, so sizing (a global "
            "exposure decision) reads them in that order.",
            exact_partitions=True,
        ),
        TopicSpec(
            SIZED_INTENTS,
            6,
            "trade.intents.avsc",
            "Sized intents (quantity, notional): the entry plan execution sends on GRANTED.",
        ),
        TopicSpec(
            TRADE_REJECTIONS,
            6,
            "trade.rejections.avsc",
            "Candidates turned down by selection or sizing, each with its reason.",
        ),
        TopicSpec(
            PORTFOLIO,
            1,
            "portfolio.avsc",
            "Every slot command in one total order: request, fill, release, regime, halt, clock.",
            retention_ms=-1,
            exact_partitions=True,
        ),
        TopicSpec(
            PORTFOLIO_DECISIONS,
            1,
            "portfolio.decisions.avsc",
            "The governor's decisions, written exactly once in its transactions.",
            retention_ms=-1,
            exact_partitions=True,
        ),
        TopicSpec(
            GOVERNOR_SNAPSHOTS,
            1,
            None,
            "Governor state snapshots (internal JSON), written in the same transactions.",
            cleanup_policy="compact",
            retention_ms=-1,
            exact_partitions=True,
            has_dlq=False,
            # A snapshot holds one memory horizon (24 h) of command ids, zlib-compressed:
            # ~8 bytes per command (docs/governor.md), so 16 MiB (the governor producer's
            # message.max.bytes) is ~2M commands a day; the broker's 1 MB would be ~120k.
            max_message_bytes=SNAPSHOT_MAX_BYTES,
        ),
        TopicSpec(ORDERS, 6, "orders.avsc", "Orders sent (client order id = intent id)."),
        TopicSpec(EXECUTION_RESULTS, 6, "execution.results.avsc", "Fills, rejections, expiries."),
        TopicSpec(
            EXECUTION_LEDGER,
            1,
            "execution.ledger.avsc",
            "The execution agent's write-ahead ledger by intent id: written before an order "
            "is sent, so a restart never sends an entry twice.",
            cleanup_policy="compact",
            retention_ms=-1,
            exact_partitions=True,
            has_dlq=False,
        ),
        TopicSpec(
            TRADES,
            6,
            "trades.avsc",
            "Closed trades (entry, exit, PnL, fees, exit reason); readers dedupe by trade id.",
            retention_ms=-1,
        ),
        TopicSpec(
            POSITIONS,
            6,
            "positions.avsc",
            "Latest position per symbol.",
            cleanup_policy="compact",
            retention_ms=-1,
        ),
        TopicSpec(
            EXIT_INTENTS,
            6,
            "exit.intents.avsc",
            "Reduce-only exits; they need no slot. Two writers (harvest, exit_guard), so it "
            "carries no end-of-stream marker: readers treat it as a topic that never ends.",
        ),
        TopicSpec(
            RISK_WARNINGS,
            1,
            "risk.warnings.avsc",
            "Risk conditions handled by a default, never silently (a position without a "
            "stop-loss got the default stop); for operators and reports.",
            retention_ms=-1,
        ),
        TopicSpec(
            BINANCE_USER_EVENTS,
            1,
            "binance.user-events.avsc",
            "Binance user-data stream messages and the userTrades rows of each resync, as "
            "Binance sent them (live venue only); one partition, in arrival order.",
        ),
        TopicSpec(
            PASSTHROUGH_OUT,
            3,
            "market.ticks.avsc",
            "Smoke flow: ticks relayed unchanged by the pass-through agent.",
            retention_ms=DAY_MS,
        ),
    ),
)
