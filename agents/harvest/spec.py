"""The harvest, declared once (see agents/spec.py)."""

from agents.harvest.config import HarvestConfig
from agents.spec import AgentSpec
from topologies.declaration import EXIT_INTENTS, MARKET_TICKS, POSITIONS, RISK_WARNINGS

SPEC = AgentSpec(
    name="harvest",
    reads=(POSITIONS, MARKET_TICKS),
    writes=(EXIT_INTENTS, RISK_WARNINGS),
    doc="R-multiple ladder, break-even move, trailing stop, stop exit: reduce-only exits.",
    core="agents.harvest.core",
    shell="agents.harvest.agent:register",
    config={"harvest": HarvestConfig},
)
