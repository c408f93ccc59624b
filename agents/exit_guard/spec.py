"""The exit guard and the drawdown breaker, declared once (see agents/spec.py)."""

from agents.exit_guard.config import BreakerConfig, ExitGuardConfig
from agents.spec import AgentSpec
from topologies.declaration import (
    EXIT_INTENTS,
    MARKET_TICKS,
    PORTFOLIO,
    POSITIONS,
    RISK_WARNINGS,
)

SPEC = AgentSpec(
    name="exit_guard",
    reads=(POSITIONS, MARKET_TICKS, PORTFOLIO),
    writes=(EXIT_INTENTS, RISK_WARNINGS, PORTFOLIO),
    doc="Price TP/SL, margin-PnL%, liquidation-proximity and time exits; drawdown breaker Halt.",
    core="agents.exit_guard.core",
    shell="agents.exit_guard.agent:register",
    config={"exit_guard": ExitGuardConfig, "breaker": BreakerConfig},
)
