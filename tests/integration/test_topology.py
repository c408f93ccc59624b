"""`topology apply` on the real broker: creates what is missing, refuses drift."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from quantum.app.cli import main as cli_main
from quantum.app.settings import Settings
from topologies.apply import apply_topology
from topologies.declaration import PORTFOLIO, TOPOLOGY

pytestmark = pytest.mark.broker


def _admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka.bootstrap})


def test_apply_creates_every_topic_with_a_single_partition_portfolio(settings: Settings) -> None:
    report = apply_topology(settings)
    assert report.ok, report.render()
    expected = {settings.topic(t.name) for t in TOPOLOGY.all_topics()}
    assert set(report.created) == expected
    topics = _admin(settings).list_topics(timeout=10).topics
    assert len(topics[settings.topic(PORTFOLIO)].partitions) == 1
    assert len(topics[settings.topic("market.ticks")].partitions) == 6

    again = apply_topology(settings)
    assert again.ok and not again.created and set(again.unchanged) == expected


def test_apply_refuses_a_portfolio_topic_with_two_partitions(settings: Settings) -> None:
    name = settings.topic(PORTFOLIO)
    admin = _admin(settings)
    admin.create_topics([NewTopic(name, 2, 1)])[name].result()
    report = apply_topology(settings)
    assert not report.ok
    fatal = [d for d in report.drift if d.fatal]
    assert [(d.topic, d.what, d.actual, d.declared) for d in fatal] == [
        (name, "partitions", "2", "1")
    ]


def test_cli_apply_exits_nonzero_on_drift_and_fix_configs_repairs_retention(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env_args = ["--topic-prefix", settings.kafka.topic_prefix]
    name = settings.topic("orders")
    admin = _admin(settings)
    admin.create_topics([NewTopic(name, 6, 1, config={"retention.ms": "1000"})])[name].result()
    monkeypatch.setenv("KAFKA_BOOTSTRAP", settings.kafka.bootstrap)
    assert cli_main([*env_args, "topology", "apply"]) == 0  # config drift only: reported
    assert "retention.ms is 1000, declared 604800000" in capsys.readouterr().out
    assert cli_main([*env_args, "topology", "apply", "--fix-configs"]) == 0
    assert f"fixed   {name}" in capsys.readouterr().out
    assert not apply_topology(settings).drift


def test_delete_run_topics_removes_exactly_this_runs_topics(settings: Settings) -> None:
    from topologies.apply import delete_run_topics

    assert apply_topology(settings).ok
    other = settings.with_prefix(settings.kafka.topic_prefix.rstrip(".") + "-other.")
    assert apply_topology(other).ok
    deleted = delete_run_topics(settings)
    assert set(deleted) == {settings.topic(t.name) for t in TOPOLOGY.all_topics()}
    assert delete_run_topics(other)  # the neighbour's topics were still there
    with pytest.raises(ValueError, match="without a run prefix"):
        delete_run_topics(settings.with_prefix(""))
