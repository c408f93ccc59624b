"""`quantum audit portfolio` on the real broker: a clean history passes; a forged
grant past the limit, written straight into the decisions topic, is caught at its offset."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from confluent_kafka import Producer

from agents.governor.codec import decision_to_avro
from agents.governor.io import CommandSender, read_decisions
from agents.governor.model import Side, SlotRequest
from agents.governor.shell import GovernorShell
from quantum.app.cli import main as cli_main
from quantum.app.settings import Settings
from quantum.serde import AvroSerde
from topologies.apply import apply_topology
from topologies.declaration import PORTFOLIO_DECISIONS

pytestmark = pytest.mark.broker


def test_audit_passes_a_real_history_and_names_the_offset_of_a_forged_grant(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apply_topology(settings).ok
    s = settings.model_copy(
        update={
            "governor_shell": settings.governor_shell.model_copy(
                update={"transactional_id": f"{settings.kafka.topic_prefix}gov"}
            )
        }
    )
    serde = AvroSerde.from_settings(s)
    sender = CommandSender(s, serde=serde)
    for i in range(6):  # base regime: 4 slots -> 4 grants, 2 denials
        sender.send(SlotRequest(f"i{i}", f"S{i}USDT", Side.LONG, Decimal(10), 0.5, 1_000 + i))
    sender.flush()
    shell = GovernorShell(s, serde=serde)
    shell.start()
    while shell._next_offset < 6:
        msgs = shell.consumer.consume(num_messages=10, timeout=0.5)
        if msgs:
            shell.process_batch(msgs)
    shell.close()

    monkeypatch.setenv("KAFKA_BOOTSTRAP", s.kafka.bootstrap)
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", s.registry.url)
    prefix = ["--topic-prefix", s.kafka.topic_prefix]
    assert cli_main([*prefix, "audit", "portfolio"]) == 0
    out = capsys.readouterr().out
    assert "portfolio audit: OK" in out and "grants         4" in out

    # Forge a fifth grant claiming room it did not have, the way a buggy writer would.
    logged = read_decisions(s, serde=serde)
    last = logged[-1].decision
    forged = dataclasses.replace(
        logged[0].decision,
        decision_id="forged#0",
        command_id="forged",
        intent_id="forged",
        symbol="FORGEDUSDT",
        open_after=0,
        reserved_after=5,
        event_time_ms=last.event_time_ms,
    )
    topic = s.topic(PORTFOLIO_DECISIONS)
    producer = Producer({"bootstrap.servers": s.kafka.bootstrap})
    producer.produce(
        topic,
        value=serde.encode(
            topic, decision_to_avro(forged, 99), schema_file="portfolio.decisions.avsc"
        ),
    )
    producer.flush(30)
    forged_offset = read_decisions(s, serde=serde)[-1].offset

    assert cli_main([*prefix, "audit", "portfolio"]) == 1
    out = capsys.readouterr().out
    assert "portfolio audit: VIOLATED" in out
    assert f"first violation at offset {forged_offset} (forged#0)" in out
