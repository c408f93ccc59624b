"""Make the broker match the declaration: create what is missing, report every drift.

Drift is never silently accepted. A partition count that differs from the
declaration is an error for every topic (Kafka cannot shrink partitions, and
more partitions would reshuffle keys), and for the single-partition topics it
is the difference between a total order and none. Config drift (cleanup
policy, retention) is reported, and repaired only when asked (`fix_configs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from quantum.config import RuntimeSettings
from quantum.polling import wait_until
from topologies.declaration import TOPOLOGY, Processor, TopicSpec, Topology

ADMIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Drift:
    topic: str
    what: str
    declared: str
    actual: str
    fatal: bool

    def __str__(self) -> str:
        level = "ERROR" if self.fatal else "drift"
        return f"{level}: {self.topic}: {self.what} is {self.actual}, declared {self.declared}"


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.fatal for d in self.drift)

    def render(self) -> str:
        lines = [f"created {name}" for name in self.created]
        lines += [f"fixed   {name}" for name in self.fixed]
        lines += [str(d) for d in self.drift]
        lines.append(
            f"{len(self.created)} created, {len(self.unchanged)} unchanged, "
            f"{len(self.fixed)} fixed, {sum(d.fatal for d in self.drift)} errors, "
            f"{sum(not d.fatal for d in self.drift)} config drifts"
        )
        return "\n".join(lines)


def admin_client(settings: RuntimeSettings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka.bootstrap})


def apply_topology(
    settings: RuntimeSettings,
    topology: Topology = TOPOLOGY,
    *,
    fix_configs: bool = False,
    admin: AdminClient | None = None,
) -> ApplyReport:
    """Create missing topics (with this run's prefix) and compare the rest to the declaration."""
    admin = admin or admin_client(settings)
    specs = {settings.topic(spec.name): spec for spec in topology.all_topics()}
    existing = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
    report = ApplyReport()

    missing = [name for name in specs if name not in existing]
    raced: list[str] = []
    if missing:
        futures = admin.create_topics(
            [_new_topic(name, specs[name]) for name in missing],
            operation_timeout=ADMIN_TIMEOUT_S,
            request_timeout=ADMIN_TIMEOUT_S,
        )
        for name, future in futures.items():
            try:
                future.result()
                report.created.append(name)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
                raced.append(name)  # made by someone else meanwhile: check it like the rest
    if missing:
        existing = _listed_once_visible(admin, missing)

    present = [name for name in specs if name in existing and name not in report.created]
    actual_configs = _describe_configs(admin, present)
    for name in present:
        spec = specs[name]
        partitions = len(existing[name].partitions)
        drifts = []
        if partitions != spec.partitions:
            drifts.append(Drift(name, "partitions", str(spec.partitions), str(partitions), True))
        for key, declared in spec.configs().items():
            actual = actual_configs[name].get(key)
            if actual != declared:
                drifts.append(Drift(name, key, declared, str(actual), False))
        config_drifts = [d for d in drifts if not d.fatal]
        if fix_configs and config_drifts:
            _alter_configs(admin, name, spec)
            report.fixed.append(name)
            drifts = [d for d in drifts if d.fatal]
        report.drift.extend(drifts)
        if not drifts and name not in report.fixed:
            report.unchanged.append(name)
    return report


def delete_run_topics(settings: RuntimeSettings, *, admin: AdminClient | None = None) -> list[str]:
    """Delete every topic of this run's prefix, so a test or benchmark leaves nothing behind.

    Refuses an empty prefix (that would be every topic). A topic already gone is fine.
    """
    prefix = settings.kafka.topic_prefix
    if not prefix:
        raise ValueError("refusing to delete topics without a run prefix")
    admin = admin or admin_client(settings)
    names = [t for t in admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics if t.startswith(prefix)]
    if not names:
        return []
    futures = admin.delete_topics(names, operation_timeout=ADMIN_TIMEOUT_S)
    for future in futures.values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
    wait_until(
        lambda: not any(t.startswith(prefix) for t in admin.list_topics(timeout=10).topics),
        ADMIN_TIMEOUT_S,
        f"topics of {prefix!r} to leave the metadata",
    )
    return names


def _listed_once_visible(admin: AdminClient, names: list[str]) -> dict:
    """The topic metadata, once it lists every one of `names`.

    A broker answers a creation before its metadata lists the topic; right after a batch
    of creations a fresh client can still be told the topic is not there. Waiting here
    makes "apply returned" mean "the topics can be seen and used".
    """
    listed: dict = {}

    def all_listed() -> bool:
        nonlocal listed
        listed = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        return all(name in listed for name in names)

    wait_until(all_listed, ADMIN_TIMEOUT_S, f"{len(names)} new topics to show in metadata")
    return listed


def _new_topic(name: str, spec: TopicSpec) -> NewTopic:
    return NewTopic(
        name,
        num_partitions=spec.partitions,
        replication_factor=spec.replication,
        config=spec.configs(),
    )


def _describe_configs(admin: AdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    out: dict[str, dict[str, str]] = {}
    for resource, future in admin.describe_configs(
        resources, request_timeout=ADMIN_TIMEOUT_S
    ).items():
        out[resource.name] = {key: entry.value for key, entry in future.result().items()}
    return out


def _alter_configs(admin: AdminClient, name: str, spec: TopicSpec) -> None:
    entries = [
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
        for key, value in spec.configs().items()
    ]
    resource = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=entries)
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()
    # The change is accepted before every broker's metadata shows it: wait until it does.
    wait_until(
        lambda: all(
            _describe_configs(admin, [name])[name].get(k) == v for k, v in spec.configs().items()
        ),
        ADMIN_TIMEOUT_S,
        f"{name}'s altered configs to become visible",
    )


def render_graph(agents: Sequence[Processor], topology: Topology = TOPOLOGY) -> str:
    """Plain-text graph: each agent with what it reads and writes, then every topic."""
    lines = []
    for agent in agents:
        lines.append(f"{agent.name}  [{agent.guarantee_text}]")
        lines += [f"  <- {topic}" for topic in agent.reads]
        lines += [f"  -> {topic}" for topic in agent.writes]
    lines.append("")
    lines.append("topics:")
    for spec in topology.all_topics():
        retention = "forever" if spec.retention_ms < 0 else f"{spec.retention_ms // 3_600_000} h"
        lines.append(
            f"  {spec.name:<34} partitions={spec.partitions:<2} {spec.cleanup_policy:<7} "
            f"retention={retention:<8} schema={spec.schema or '-'}"
        )
    return "\n".join(lines)


def render_mermaid(agents: Sequence[Processor], topology: Topology = TOPOLOGY) -> str:
    """The same graph as a Mermaid flowchart (docs/topology.md embeds it)."""

    def node(topic: str) -> str:
        return "t_" + topic.replace(".", "_").replace("-", "_")

    lines = ["flowchart LR"]
    topics = sorted({t for a in agents for t in (*a.reads, *a.writes)})
    for topic in topics:
        spec = topology.topic(topic)
        lines.append(f'  {node(topic)}[("{topic}<br/>{spec.partitions}p")]')
    for agent in agents:
        lines.append(f"  a_{agent.name}{{{{{agent.name}}}}}")
        lines += [f"  {node(t)} --> a_{agent.name}" for t in agent.reads]
        lines += [f"  a_{agent.name} --> {node(t)}" for t in agent.writes]
    return "\n".join(lines)
