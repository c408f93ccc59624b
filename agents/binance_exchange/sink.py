"""Records from the live sources (user stream, market feed, reconcile loop) to Kafka.

One idempotent producer (`enable.idempotence`, acks=all): a retried send is written
once. `flush()` waits for delivery; a source calls it before it treats records as sent
(the user stream before it moves its resync point, the feed before it moves its bar
cursor), so a crash loses nothing it believed delivered."""

from __future__ import annotations

from typing import Any, Protocol

from confluent_kafka import Producer

from quantum.config import RuntimeSettings
from quantum.serde import AvroSerde
from topologies.declaration import TOPOLOGY


class Sink(Protocol):
    def send(
        self, logical: str, value: dict[str, Any], key: bytes | None, *, schema: str | None = None
    ) -> None: ...

    def flush(self) -> None: ...


class KafkaSink:
    """Avro records to logical topics of the settings' run (prefix added)."""

    def __init__(self, settings: RuntimeSettings, serde: AvroSerde | None = None) -> None:
        self._settings = settings
        self._serde = serde or AvroSerde.from_settings(settings)
        self._producer = Producer(
            {
                "bootstrap.servers": settings.kafka.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )
        self._errors: list[str] = []

    def send(
        self, logical: str, value: dict[str, Any], key: bytes | None, *, schema: str | None = None
    ) -> None:
        topic = self._settings.topic(logical)
        data = self._serde.encode(
            topic, value, schema_file=schema or TOPOLOGY.topic(logical).schema or ""
        )
        self._producer.produce(topic, data, key=key, on_delivery=self._delivered)
        self._producer.poll(0)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def flush(self, timeout_s: float = 30.0) -> None:
        left = self._producer.flush(timeout_s)
        if left or self._errors:
            errors, self._errors = self._errors, []
            raise RuntimeError(f"{left} records undelivered; errors: {errors[:3]}")
