"""The paper exchange agent, declared once (see agents/spec.py)."""

from agents.paper_exchange.config import PaperVenueConfig
from agents.spec import AgentSpec
from topologies.declaration import EXECUTION_RESULTS, MARKET_TICKS, ORDERS

SPEC = AgentSpec(
    name="paper_exchange",
    reads=(ORDERS, MARKET_TICKS),
    writes=(EXECUTION_RESULTS,),
    doc="Fills orders on closed bars (paper Binance USD-M); answers a resent order's status.",
    core="agents.paper_exchange.core",
    shell="agents.paper_exchange.agent:register",
    config={"paper_exchange": PaperVenueConfig},
)
