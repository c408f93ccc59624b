"""The live Binance venue agent, declared once (see agents/spec.py)."""

from agents.binance_exchange.config import BinanceVenueConfig, VenueConfig
from agents.spec import AgentSpec
from topologies.declaration import (
    BINANCE_USER_EVENTS,
    EXECUTION_RESULTS,
    ORDERS,
    PORTFOLIO,
    RISK_WARNINGS,
)

SPEC = AgentSpec(
    name="binance_exchange",
    reads=(ORDERS, BINANCE_USER_EVENTS),
    writes=(EXECUTION_RESULTS, PORTFOLIO, RISK_WARNINGS),
    doc="Sends orders to Binance USD-M (testnet by default); user-stream events -> reports.",
    core="agents.binance_exchange.core",
    shell="agents.binance_exchange.agent:register",
    config={"binance_exchange": BinanceVenueConfig, "venue": VenueConfig},
    commands="agents.binance_exchange.cli",
)
