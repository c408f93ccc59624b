"""The clock agent, declared once (see agents/spec.py)."""

from agents.clock.config import ClockConfig
from agents.spec import AgentSpec
from topologies.declaration import MARKET_TICKS, PORTFOLIO

SPEC = AgentSpec(
    name="clock",
    reads=(MARKET_TICKS,),
    writes=(PORTFOLIO,),
    doc="Event-time heartbeats for the governor, one per clock.every_ms of tick time.",
    core="agents.clock.core",
    shell="agents.clock.agent:register",
    config={"clock": ClockConfig},
)
