"""The AI engine (signals and the market regime), declared once (see agents/spec.py)."""

from agents.ai_engine.config import AIEngineConfig
from agents.regime.config import RegimeConfig
from agents.spec import AgentSpec
from topologies.declaration import AI_SIGNALS, MARKET_BARS, PORTFOLIO

SPEC = AgentSpec(
    name="ai_engine",
    reads=(MARKET_BARS,),
    writes=(AI_SIGNALS, PORTFOLIO),
    doc="Per-symbol features, the 5-model ensemble (calibrated), and regime changes.",
    core="agents.ai_engine.core",
    shell="agents.ai_engine.agent:register",
    config={"ai_engine": AIEngineConfig, "regime": RegimeConfig},
    commands="agents.ai_engine.train_cli",
)
