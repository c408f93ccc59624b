"""Single-node transactions on the session broker: aborted stays invisible, committed is seen."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka import TopicPartition as Tp
from confluent_kafka.admin import AdminClient, NewTopic

from quantum.app.settings import Settings

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
