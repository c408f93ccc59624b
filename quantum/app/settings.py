"""The composed settings: the kit's sections plus every registered agent's.

Agents declare their sections in their `AgentSpec.config` (agents/<name>/spec.py); this
module builds one pydantic-settings class from them, so env (`QT_<SECTION>__<FIELD>`),
the TOML file and keyword overrides reach every agent the same way. Only the app and
tests import it; kit, topology and agent code type against `quantum.config.RuntimeSettings`
(or an agent's Protocol extending it, e.g. `GovernorSettings`).
"""

from __future__ import annotations

from typing import Any

from pydantic import create_model

from agents.registry import REGISTRY
from quantum.config import KitSettings


def _agent_fields() -> dict[str, Any]:
    sections = REGISTRY.config_sections()
    clash = set(sections) & set(KitSettings.model_fields)
    if clash:
        raise ValueError(f"agent config sections shadow kit sections: {sorted(clash)}")
    return {name: (model, model()) for name, model in sections.items()}


Settings = create_model(
    "Settings",
    __base__=KitSettings,
    __doc__="The whole configuration: kit sections and every agent's. `Settings()` reads env "
    "and file; tests pass overrides.",
    __module__=__name__,
    **_agent_fields(),
)
