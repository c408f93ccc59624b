"""Single-node transactions on the session broker: aborted stays invisible, committed is seen."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka import TopicPartition as Tp
from confluent_kafka.admin import AdminClient, NewTopic

from quantum.app.settings import Settings
from quantum.kafka_util import CommittedProbe

pytestmark = pytest.mark.broker


def _read_all(bootstrap: str, topic: str, isolation: str, expect_end: int) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex}",
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([Tp(topic, 0, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF and msg.offset() >= expect_end:
                    return values
                continue
            values.append(msg.value())
        raise AssertionError(f"did not reach offset {expect_end} of {topic}")
    finally:
        consumer.close()


def test_aborted_transaction_is_invisible_to_read_committed(settings: Settings) -> None:
    topic = settings.topic("txn")
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "transactional.id": topic})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.flush(10)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(30)
    probe = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": "probe"})
    end = probe.get_watermark_offsets(Tp(topic, 0), timeout=10)[1]
    probe.close()

    assert _read_all(settings.kafka.bootstrap, topic, "read_committed", end) == [b"committed"]
    assert _read_all(settings.kafka.bootstrap, topic, "read_uncommitted", end) == [
        b"aborted",
        b"committed",
    ]


def test_the_gap_probe_tells_markers_and_aborts_from_a_skipped_record(settings: Settings) -> None:
    """Committed [a, b] (offsets 0, 1, marker 2), aborted [x] (3, marker 4), committed [c]
    (5, marker 6). A read_committed reader is handed 0, 1 and 5: the gap 2..4 holds no
    committed record, the gap 1..4 after 0 holds b (skipped), and so does 0..4 from scratch."""
    topic = settings.topic("txn-gaps")
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "transactional.id": topic})
    producer.init_transactions(30)
    for values, commit in (([b"a", b"b"], True), ([b"x"], False), ([b"c"], True)):
        producer.begin_transaction()
        for value in values:
            producer.produce(topic, value=value)
        producer.flush(10)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    assert _read_all(settings.kafka.bootstrap, topic, "read_committed", 7) == [b"a", b"b", b"c"]
    probe = CommittedProbe(settings.kafka.bootstrap, timeout_s=30)
    try:
        assert probe.first_committed(topic, 0, 2) == 5
        assert not probe.skipped(topic, 0, last=1, offset=5)  # markers and an abort
        assert probe.skipped(topic, 0, last=0, offset=5)  # b was never handed over
        assert not probe.skipped(topic, 0, last=0, offset=1)  # no gap at all
        assert probe.first_committed(topic, 0, 0) == 0
    finally:
        probe.close()
