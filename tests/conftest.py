"""Shared fixtures: one real broker (and schema registry) per test session.

Where the broker comes from, first match wins:
1. `KAFKA_BOOTSTRAP` (and `SCHEMA_REGISTRY_URL`) set: use them as they are.
2. A Docker engine answers: testcontainers starts Kafka (KRaft) and a registry.
3. Otherwise the project's own no-Docker broker (`infra.local.up`), started once and
   stopped at the end if this session started it.

Tests keep apart through topic prefixes (`settings` fixture), never through new brokers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from quantum.app.settings import Settings
from topologies.apply import delete_run_topics

# Hypothesis profiles for the whole session: `dev` for the quick local loop, `ci` (4x the
# examples; 10x until 2026-11-26, when the end-to-end tests grew and CI's 40 minutes got
# tight) in .ci/run. No per-example deadline: a loaded CI machine must not fail a property for
# being slow.
hypothesis_settings.register_profile(
    "dev", max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.register_profile(
    "ci", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@dataclass(frozen=True)
class BrokerEndpoints:
    bootstrap: str
    registry_url: str
    origin: str  # "env" | "testcontainers" | "infra"


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def _from_testcontainers() -> Iterator[BrokerEndpoints]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka:
        registry = DockerContainer("apicurio/apicurio-registry:3.0.9").with_exposed_ports(8080)
        registry.with_env("APICURIO_RULES_GLOBAL_COMPATIBILITY", "BACKWARD")
        with registry:
            wait_for_logs(registry, "started in", timeout=120)
            host = registry.get_container_host_ip()
            port = registry.get_exposed_port(8080)
            yield BrokerEndpoints(
                kafka.get_bootstrap_server(),
                f"http://{host}:{port}/apis/ccompat/v7",
                "testcontainers",
            )


def _from_infra() -> Iterator[BrokerEndpoints]:
    from infra import local

    infra_settings = Settings().infra
    was_running = local.status(infra_settings).healthy
    endpoints = local.up(infra_settings)
    try:
        assert endpoints.registry_url, "infra.local.up started no schema registry"
        yield BrokerEndpoints(endpoints.bootstrap, endpoints.registry_url, "infra")
    finally:
        if not was_running:
            local.down(infra_settings)


@pytest.fixture(scope="session")
def broker() -> Iterator[BrokerEndpoints]:
    """The session's one real broker and registry."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        url = os.environ.get("SCHEMA_REGISTRY_URL")
        if not url:
            pytest.fail("KAFKA_BOOTSTRAP is set but SCHEMA_REGISTRY_URL is not; set both")
        yield BrokerEndpoints(os.environ["KAFKA_BOOTSTRAP"], url, "env")
    elif os.environ.get("QT_TEST_DOCKER", "auto") != "never" and _docker_answers():
        yield from _from_testcontainers()
    else:
        yield from _from_infra()


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix no other test uses: `t-<test name>-<random>.`"""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:40]
    return f"t-{name}-{uuid.uuid4().hex[:8]}."


@pytest.fixture
def settings(broker: BrokerEndpoints, topic_prefix: str) -> Iterator[Settings]:
    """Settings pointing at the session broker, with this test's own topic prefix.

    Topics made under the prefix are deleted after the test.
    """
    s = Settings(
        kafka={"bootstrap": broker.bootstrap, "topic_prefix": topic_prefix},
        registry={"url": broker.registry_url},
    )
    yield s
    delete_run_topics(s)
