"""The pass-through agent, declared once (see agents/spec.py)."""

from agents.spec import AgentSpec
from topologies.declaration import MARKET_TICKS, PASSTHROUGH_OUT

SPEC = AgentSpec(
    name="passthrough",
    reads=(MARKET_TICKS,),
    writes=(PASSTHROUGH_OUT,),
    doc="Relays ticks unchanged; proves decoding, validation and the DLQ path.",
    core="agents.passthrough.core",
    shell="agents.passthrough.agent:register",
)
