"""The portfolio governor, declared once (see agents/spec.py)."""

from agents.governor.config import GovernorConfig, GovernorShellSettings
from agents.spec import AgentSpec
from topologies.declaration import GOVERNOR_SNAPSHOTS, PORTFOLIO, PORTFOLIO_DECISIONS

SPEC = AgentSpec(
    name="governor",
    reads=(PORTFOLIO,),
    writes=(PORTFOLIO_DECISIONS, GOVERNOR_SNAPSHOTS),
    doc="Decides every slot; transactional consume-decide-produce loop.",
    core="agents.governor.core",
    shell="agents.governor.shell:run",
    kind="transactional",
    guarantee="exactly_once",
    config={"governor": GovernorConfig, "governor_shell": GovernorShellSettings},
    commands="agents.governor.cli",
)
