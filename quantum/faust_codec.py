"""A Faust codec that reads and writes one topic's values in the Confluent Avro wire format.

Faust chooses a codec per topic (`value_serializer=`); this one is bound to a physical
topic and a schema file, so agents can use typed-less dict streams with the same bytes the
confluent-kafka shells produce. Decode failures surface as `quantum.errors.DecodeError`
(Faust wraps it in its ValueDecodeError), so the runtime can still dead-letter the record.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs
from faust.serializers.codecs import Codec

from quantum.serde import AvroSerde


class AvroCodec(Codec):
    """Codec for `topic` (physical name) with values of `schema_file` (e.g. `orders.avsc`)."""

    def __init__(
        self,
        serde: AvroSerde,
        topic: str,
        schema_file: str,
        children: tuple[Any, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        # Faust's clone() re-creates codecs from kwargs, so everything goes through them.
        super().__init__(
            children=children, serde=serde, topic=topic, schema_file=schema_file, **kwargs
        )
        self.serde = serde
        self.topic = topic
        self.schema_file = schema_file

    def _dumps(self, obj: Any) -> bytes:
        return self.serde.encode(self.topic, obj, schema_file=self.schema_file)

    def _loads(self, s: bytes) -> Any:
        return self.serde.decode(self.topic, s, schema_file=self.schema_file)


def codec_name(topic: str) -> str:
    """The name under which the codec of `topic` is registered with Faust."""
    return f"avro:{topic}"


def register_codec(serde: AvroSerde, topic: str, schema_file: str) -> str:
    """Register an AvroCodec for `topic` with Faust; returns the name for `value_serializer=`."""
    name = codec_name(topic)
    codecs.register(name, AvroCodec(serde, topic, schema_file))
    return name
