"""The in-process engine writes each keyed output to the partition Faust's producer would
choose (Kafka's murmur2, as aiokafka implements it). Checked here against an independent
implementation: librdkafka's `murmur2_random` partitioner, on the broker."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from quantum.app.backtest.inprocess import kafka_partition

pytestmark = pytest.mark.broker

KEYS = [b"BTCUSDT", b"ETHUSDT", b"SOLUSDT", b"DOGEUSDT", b"portfolio", b"x", b"", b"1000PEPEUSDT"]


def test_kafka_partition_is_the_java_murmur2_partition(settings) -> None:
    topic = settings.topic("partitioning")
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])[topic].result()
    producer = Producer(
        {"bootstrap.servers": settings.kafka.bootstrap, "partitioner": "murmur2_random"}
    )
    seen: dict[bytes, int] = {}

    def delivered(err, msg) -> None:
        assert err is None
        seen[msg.key()] = msg.partition()

    keys = [k for k in KEYS if k] + [f"intent-{i}".encode() for i in range(40)]
    for key in keys:
        producer.produce(topic, key=key, value=b"v", on_delivery=delivered)
    assert producer.flush(30) == 0
    assert {k: kafka_partition(k, 6) for k in keys} == seen
    admin.delete_topics([topic])
