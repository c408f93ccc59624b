"""Sizing, declared once (see agents/spec.py)."""

from agents.sizing.config import SizingConfig
from agents.spec import AgentSpec
from topologies.declaration import (
    PORTFOLIO,
    PORTFOLIO_DECISIONS,
    POSITIONS,
    SIZED_INTENTS,
    TRADE_INTENTS,
    TRADE_REJECTIONS,
    TRADES,
)

SPEC = AgentSpec(
    name="sizing",
    reads=(TRADE_INTENTS, POSITIONS, TRADES, PORTFOLIO_DECISIONS),
    writes=(SIZED_INTENTS, PORTFOLIO, TRADE_REJECTIONS),
    doc="Risk-per-trade sizes on the exchange's filters under the margin caps; asks for a slot.",
    core="agents.sizing.core",
    shell="agents.sizing.agent:register",
    config={"sizing": SizingConfig},
)
