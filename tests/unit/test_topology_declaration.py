"""The declaration itself: the rules `topology apply` relies on hold for every topic."""

from __future__ import annotations

from agents.registry import REGISTRY
from topologies.apply import render_graph, render_mermaid
from topologies.declaration import (
    PORTFOLIO,
    PORTFOLIO_DECISIONS,
    TOPOLOGY,
    dlq_topic,
)


def test_the_portfolio_and_its_decisions_have_exactly_one_partition() -> None:
    for name in (PORTFOLIO, PORTFOLIO_DECISIONS):
        spec = TOPOLOGY.topic(name)
        assert spec.partitions == 1 and spec.exact_partitions


def test_every_topic_an_agent_reads_has_a_dead_letter_topic() -> None:
    names = {t.name for t in TOPOLOGY.all_topics()}
    for agent in REGISTRY:
        for topic in agent.reads:
            assert dlq_topic(topic) in names, f"{agent.name} reads {topic} without a DLQ"


def test_agents_only_name_declared_topics_and_schemas_exist() -> None:
    from quantum.schemas import SCHEMA_DIR

    names = {t.name for t in TOPOLOGY.topics}
    for agent in REGISTRY:
        assert set(agent.reads) | set(agent.writes) <= names
    for spec in TOPOLOGY.all_topics():
        if spec.schema:
            assert (SCHEMA_DIR / spec.schema).is_file(), spec.schema


def test_renderings_name_every_agent() -> None:
    agents = tuple(REGISTRY)
    text, mermaid = render_graph(agents), render_mermaid(agents)
    assert mermaid.startswith("flowchart LR")
    for agent in REGISTRY:
        assert agent.name in text and f"a_{agent.name}" in mermaid
