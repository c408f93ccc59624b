"""The selector, declared once (see agents/spec.py)."""

from agents.selector.config import SelectorConfig
from agents.spec import AgentSpec
from topologies.declaration import (
    AI_SIGNALS,
    MARKET_BARS,
    POSITIONS,
    TRADE_INTENTS,
    TRADE_REJECTIONS,
)

SPEC = AgentSpec(
    name="selector",
    reads=(AI_SIGNALS, MARKET_BARS, POSITIONS),
    writes=(TRADE_INTENTS, TRADE_REJECTIONS),
    doc="Confidence floor, top-N per event-time window, correlation, allowlist, flat-sell, dedup.",
    core="agents.selector.core",
    shell="agents.selector.agent:register",
    config={"selector": SelectorConfig},
)
