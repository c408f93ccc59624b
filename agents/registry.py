"""Every agent of the platform, collected from the one `AgentSpec` each package declares.

Adding an agent: write `agents/<name>/` with a `spec.py` exporting `SPEC` (see
docs/agents.md), and add `<name>` to `AGENT_PACKAGES` below. Nothing else names it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydantic import BaseModel

from agents.spec import AgentSpec
from topologies.declaration import TOPOLOGY, Topology

# In the order `quantum topology show` and `quantum worker --help` list them.
AGENT_PACKAGES = (
    "passthrough",
    "clock",
    "ai_engine",
    "selector",
    "sizing",
    "governor",
    "execution",
    "paper_exchange",
    "binance_exchange",
    "positions",
    "harvest",
    "exit_guard",
)


class UnknownAgent(ValueError):
    """A name that no agent package declares."""


@dataclass(frozen=True)
class Registry:
    agents: tuple[AgentSpec, ...]

    def __iter__(self) -> Iterator[AgentSpec]:
        return iter(self.agents)

    def __len__(self) -> int:
        return len(self.agents)

    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.agents)

    def get(self, name: str) -> AgentSpec:
        for spec in self.agents:
            if spec.name == name:
                return spec
        raise UnknownAgent(f"unknown agent {name!r}; known: {', '.join(self.names())}")

    def select(self, csv: str) -> list[AgentSpec]:
        """The specs named in a comma-separated list, in its order, each once."""
        names = list(dict.fromkeys(n.strip() for n in csv.split(",") if n.strip()))
        unknown = [n for n in names if n not in self.names()]
        if unknown or not names:
            raise UnknownAgent(
                f"unknown agent(s) {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(self.names())}"
            )
        return [self.get(n) for n in names]

    def config_sections(self) -> dict[str, type[BaseModel]]:
        """Every agent's settings sections, section name -> model."""
        return {name: model for spec in self.agents for name, model in spec.config.items()}

    def gapless(self, topic: str, topology: Topology = TOPOLOGY) -> bool:
        """Are `topic`'s offsets contiguous? Yes unless it is compacted or an agent writes
        it in transactions (commit markers take offsets no consumer sees). A reader of a
        gapless topic that meets a hole in what it applied has been skipped records."""
        if topology.topic(topic).cleanup_policy != "delete":
            return False
        return not self._has_transactional_writer(topic)

    def written_in_transactions(self, topic: str, topology: Topology = TOPOLOGY) -> bool:
        """Not compacted, and written by a transactional agent: a gap in its offsets is a
        commit marker or aborted records, or skipped records (`CommittedProbe` tells)."""
        if topology.topic(topic).cleanup_policy != "delete":
            return False
        return self._has_transactional_writer(topic)

    def _has_transactional_writer(self, topic: str) -> bool:
        return any(s.kind == "transactional" and topic in s.writes for s in self.agents)

    def check(self, topology: Topology) -> None:
        """Refuse duplicate names or sections, and topics the topology does not declare."""
        problems = []
        seen: set[str] = set()
        sections: dict[str, str] = {}
        declared = {t.name for t in topology.topics}
        for spec in self.agents:
            if spec.name in seen:
                problems.append(f"agent {spec.name!r} is declared twice")
            seen.add(spec.name)
            for section in spec.config:
                if section in sections:
                    problems.append(
                        f"config section {section!r} of {spec.name} is {sections[section]}'s"
                    )
                sections[section] = spec.name
            for topic in (*spec.reads, *spec.writes):
                if topic not in declared:
                    problems.append(f"{spec.name} names topic {topic!r}, not in the topology")
        if problems:
            raise ValueError("agent registry: " + "; ".join(problems))


def load(packages: Iterable[str] = AGENT_PACKAGES, topology: Topology = TOPOLOGY) -> Registry:
    """Import `agents.<name>.spec` for each package and check the specs against the topology."""
    specs = []
    for package in packages:
        spec = importlib.import_module(f"agents.{package}.spec").SPEC
        if not isinstance(spec, AgentSpec) or spec.name != package:
            raise ValueError(f"agents/{package}/spec.py must export SPEC = AgentSpec({package!r})")
        specs.append(spec)
    registry = Registry(tuple(specs))
    registry.check(topology)
    return registry


REGISTRY = load()
