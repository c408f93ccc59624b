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


def test_docs_show_the_graph_as_declared() -> None:
    """docs/topology.md is generated; regenerate it with `quantum topology show [--mermaid]`."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "topology.md").read_text()
    agents = tuple(REGISTRY)
    for block, rendered in (("mermaid", render_mermaid(agents)), ("text", render_graph(agents))):
        start = doc.index(f"```{block}\n") + len(f"```{block}\n")
        assert doc[start : doc.index("```", start)].strip() == rendered.strip(), (
            f"docs/topology.md's {block} block is stale: paste `quantum topology show"
            f"{' --mermaid' if block == 'mermaid' else ''}`"
        )
