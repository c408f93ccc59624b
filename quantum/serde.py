"""Avro values in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, body.

The body is fastavro's schemaless encoding. Writers register their schema under the
topic-name-strategy subject `<physical topic>-value` once and then reuse the id; readers
fetch a writer schema by id once and resolve it against the local reader schema, so a
producer that moved to a compatible newer schema is still readable.

Every registry call is bounded by the configured timeout (no client retries), and after
warm-up there is no registry call at all: ids, writer schemas and parsed schemas are cached.

Bodies go through functions compiled once per schema (`quantum.avro_compiled`) when the
value or the bytes are of the plain kind those cover, and through fastavro otherwise (a
writer schema that needs resolution against the reader schema, unusual values, bad bytes),
so every error is still fastavro's.

Failures are split by who is to blame (see `quantum.errors`): a bad record raises a
`DecodeError` (dead-letter it), a bad producer value raises `EncodeError`, a registry that
does not answer raises `RegistryUnavailable` (retry, never dead-letter).
"""

from __future__ import annotations

import io
import json
import re
import struct
from typing import TYPE_CHECKING, Any

import fastavro
import fastavro.validation
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from quantum.avro_compiled import Unusual, compile_reader, compile_writer
from quantum.errors import DecodeError, EncodeError, RegistryUnavailable, SchemaRegistrationError
from quantum.schemas import parse_runtime, runtime_schema, schema_text

if TYPE_CHECKING:
    from quantum.config import RuntimeSettings

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")
HEADER_SIZE = _HEADER.size  # 5


def subject_for(topic: str) -> str:
    """Topic-name strategy: the value subject of a physical topic."""
    return f"{topic}-value"


def registry_client(url: str, timeout_s: float) -> SchemaRegistryClient:
    """A client whose every call ends within about `timeout_s` (retries would multiply it)."""
    return SchemaRegistryClient({"url": url, "timeout": timeout_s, "max.retries": 0})


def frame_schema_id(data: bytes) -> int:
    """The schema id of a Confluent frame; DecodeError(MALFORMED_FRAME) if it is not one."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("MALFORMED_FRAME", f"value is {type(data).__name__}, not bytes")
    if len(data) < HEADER_SIZE:
        raise DecodeError(
            "MALFORMED_FRAME", f"{len(data)} bytes: shorter than the 5-byte Confluent header"
        )
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise DecodeError("MALFORMED_FRAME", f"magic byte {magic}, expected {MAGIC_BYTE}")
    return schema_id


class AvroSerde:
    """Encode/decode record values of every topic; one instance per process is enough.

    `client` is any confluent `SchemaRegistryClient` (the mock from
    `SchemaRegistryClient.new_client({"url": "mock://..."})` in pure unit tests only).
    """

    def __init__(self, client: SchemaRegistryClient, *, compiled: bool = True) -> None:
        self.client = client
        self.compiled = compiled  # False: fastavro only (the reference the tests compare with)
        # (subject, schema_file) -> (schema id, parsed runtime schema)
        self._writers: dict[tuple[str, str], tuple[int, Any]] = {}
        # schema id -> (registry text, parsed runtime schema)
        self._by_id: dict[int, tuple[str, Any]] = {}
        # (schema id, schema_file) -> reader schema for fastavro, None when writer == reader
        self._readers: dict[tuple[int, str], Any] = {}
        # (physical topic, schema_file) -> (Confluent header, parsed schema, compiled writer)
        self._encoders: dict[tuple[str, str], tuple[bytes, Any, Any]] = {}
        # (schema id, schema_file) -> compiled reader when writer == reader, else None
        self._decoders: dict[tuple[int, str], Any] = {}

    @classmethod
    def from_settings(cls, settings: RuntimeSettings) -> AvroSerde:
        return cls.from_url(settings.registry.url, timeout_s=settings.registry.timeout_s)

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 10.0) -> AvroSerde:
        return cls(registry_client(url, timeout_s))

    # ---- writing ---------------------------------------------------------------------------

    def schema_id(self, topic: str, schema_file: str) -> int:
        """Register `schema_file` under `<topic>-value` (idempotent) and return its id."""
        return self._writer(topic, schema_file)[0]

    def _writer(self, topic: str, schema_file: str) -> tuple[int, Any]:
        key = (subject_for(topic), schema_file)
        cached = self._writers.get(key)
        if cached is not None:
            return cached
        text = schema_text(schema_file)
        try:
            schema_id = self.client.register_schema(key[0], Schema(text, "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 409:
                raise SchemaRegistrationError(
                    key[0],
                    f"registry refused {schema_file}: {exc.error_message} "
                    "(run `quantum schemas check` / `quantum schemas diff`)",
                    status=409,
                ) from exc
            raise RegistryUnavailable(f"registering {key[0]}: {exc}") from exc
        except Exception as exc:  # transport errors, timeouts
            raise RegistryUnavailable(f"registering {key[0]}: {exc!r}") from exc
        parsed = runtime_schema(schema_file)
        self._writers[key] = (schema_id, parsed)
        self._by_id.setdefault(schema_id, (_canonical(text), parsed))
        return schema_id, parsed

    def encode(self, topic: str, value: dict[str, Any], *, schema_file: str) -> bytes:
        """Frame `value` for `topic` (physical name). EncodeError if it does not fit the schema."""
        entry = self._encoders.get((topic, schema_file))
        if entry is None:
            schema_id, parsed = self._writer(topic, schema_file)
            writer = compile_writer(parsed) if self.compiled else None
            entry = (_HEADER.pack(MAGIC_BYTE, schema_id), parsed, writer)
            self._encoders[(topic, schema_file)] = entry
        header, parsed, compiled = entry
        if compiled is not None:
            out = bytearray(header)
            try:
                compiled(value, out)
                return bytes(out)
            except Unusual:
                pass  # fastavro decides: it may accept the value, or says what is wrong
        out = io.BytesIO()
        out.write(header)
        try:
            fastavro.schemaless_writer(out, parsed, value)
        except Exception as exc:
            raise EncodeError(
                f"{topic}: value does not match {schema_file}: {_explain(parsed, value, exc)}"
            ) from exc
        return out.getvalue()

    # ---- reading ---------------------------------------------------------------------------

    def _writer_schema(self, schema_id: int, topic: str) -> tuple[str, Any]:
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        try:
            schema = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DecodeError(
                    "UNKNOWN_SCHEMA_ID",
                    f"{topic}: schema id {schema_id} is unknown to the registry",
                ) from exc
            raise RegistryUnavailable(f"fetching schema id {schema_id}: {exc}") from exc
        except Exception as exc:  # transport errors, timeouts
            raise RegistryUnavailable(f"fetching schema id {schema_id}: {exc!r}") from exc
        if (schema.schema_type or "AVRO") != "AVRO":
            raise DecodeError(
                "SCHEMA_MISMATCH", f"{topic}: schema id {schema_id} is {schema.schema_type}"
            )
        try:
            parsed = parse_runtime(schema.schema_str)
        except Exception as exc:
            raise DecodeError(
                "SCHEMA_MISMATCH", f"{topic}: writer schema {schema_id} does not parse: {exc}"
            ) from exc
        entry = (_canonical(schema.schema_str), parsed)
        self._by_id[schema_id] = entry
        return entry

    def _reader(self, schema_id: int, schema_file: str, topic: str) -> tuple[Any, Any]:
        writer_text, writer = self._writer_schema(schema_id, topic)
        key = (schema_id, schema_file)
        if key not in self._readers:
            same = writer_text == _canonical(schema_text(schema_file))
            self._readers[key] = None if same else runtime_schema(schema_file)
        return writer, self._readers[key]

    def decode(self, topic: str, data: bytes, *, schema_file: str) -> dict[str, Any]:
        """The record in `data`, read as `schema_file`; DecodeError if that is impossible.

        A union of several records comes back in fastavro's tuple notation
        `(record full name, dict)`, which `encode` accepts as it is.
        """
        schema_id = frame_schema_id(data)
        key = (schema_id, schema_file)
        compiled = self._decoders.get(key)
        if compiled is None and key not in self._decoders:
            writer, reader = self._reader(schema_id, schema_file, topic)
            plain = reader is None and self.compiled
            compiled = self._decoders[key] = compile_reader(writer) if plain else None
        if compiled is not None and type(data) is bytes:
            try:
                value, end = compiled(data, HEADER_SIZE)
                if end == len(data) and type(value) is dict:
                    return value
            except Unusual:
                pass  # not the plain case: fastavro reads it, or says why it cannot
        writer, reader = self._reader(schema_id, schema_file, topic)
        buf = io.BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            value = fastavro.schemaless_reader(
                buf,
                writer,
                reader,
                return_record_name=True,
                return_record_name_override=True,
            )
        except Exception as exc:
            raise DecodeError(
                "SCHEMA_MISMATCH",
                f"{topic}: cannot read schema id {schema_id} ({_name(writer)}) as {schema_file}: "
                f"{type(exc).__name__}: {_short(str(exc))}",
            ) from exc
        if buf.tell() != len(data):
            raise DecodeError(
                "SCHEMA_MISMATCH",
                f"{topic}: {len(data) - buf.tell()} bytes left after the record "
                f"(schema id {schema_id}): not written with that schema",
            )
        if not isinstance(value, dict):
            raise DecodeError("SCHEMA_MISMATCH", f"{topic}: schema id {schema_id} is no record")
        return value


def _canonical(text: str) -> str:
    """Same JSON, same string: compares a registry's copy of a schema with ours."""
    try:
        return json.dumps(json.loads(text), separators=(",", ":"), sort_keys=True)
    except ValueError:
        return text


def _name(parsed: Any) -> str:
    return str(parsed.get("name", parsed.get("type"))) if isinstance(parsed, dict) else str(parsed)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _short(text: str, limit: int = 300) -> str:
    """fastavro puts whole schemas into some messages, and object reprs with memory
    addresses into others ("cannot read double from <_io.BytesIO object at 0x7f...>"): a
    dead letter needs the gist, the same for the same bad record on every run."""
    text = _ADDRESS.sub("", text)
    return text if len(text) <= limit else text[:limit] + "..."


def _explain(parsed: Any, value: Any, exc: Exception) -> str:
    """fastavro's writer errors are terse; its validator names the offending field."""
    try:
        fastavro.validation.validate(value, parsed, raise_errors=True)
    except fastavro.validation.ValidationError as verr:
        return _short("; ".join(str(e) for e in verr.errors) or str(verr))
    except Exception as verr:
        return _short(f"{type(verr).__name__}: {verr}")
    return _short(f"{type(exc).__name__}: {exc}")
