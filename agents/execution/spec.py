"""Execution, declared once (see agents/spec.py)."""

from agents.execution.config import ExecutionConfig
from agents.spec import AgentSpec
from topologies.declaration import (
    EXECUTION_LEDGER,
    EXECUTION_RESULTS,
    EXIT_INTENTS,
    ORDERS,
    PORTFOLIO,
    PORTFOLIO_DECISIONS,
    SIZED_INTENTS,
)

SPEC = AgentSpec(
    name="execution",
    reads=(PORTFOLIO_DECISIONS, SIZED_INTENTS, EXIT_INTENTS, EXECUTION_RESULTS),
    writes=(EXECUTION_LEDGER, ORDERS, PORTFOLIO),
    doc="One entry order per grant (write-ahead ledger), stops and closes; fills to the governor.",
    core="agents.execution.core",
    shell="agents.execution.agent:register",
    config={"execution": ExecutionConfig},
)
