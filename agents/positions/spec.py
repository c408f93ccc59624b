"""Positions, declared once (see agents/spec.py)."""

from agents.positions.config import PositionsConfig
from agents.spec import AgentSpec
from topologies.declaration import EXECUTION_RESULTS, MARKET_TICKS, PORTFOLIO, POSITIONS, TRADES

SPEC = AgentSpec(
    name="positions",
    reads=(EXECUTION_RESULTS, MARKET_TICKS),
    writes=(POSITIONS, TRADES, PORTFOLIO),
    doc="Nets fills into one position per symbol; closed trades; releases a closed slot.",
    core="agents.positions.core",
    shell="agents.positions.agent:register",
    config={"positions": PositionsConfig},
)
