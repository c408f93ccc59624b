"""End of stream: how a replay knows it is finished without sleeping.

A replay's feed writes, after its last bar, one end-of-stream marker on every partition
of `market.ticks`. Every agent passes it on: once it has seen the end on each of its
input partitions, it sends one marker on each partition of each topic it writes. The
last stage's reader then knows, from the log alone, that nothing more is coming.

The marker is an ordinary record of the topic's own schema with the nullable field
`end_of_stream` set (schemas/market.ticks.avsc has the field; every topic that carries the
marker adds the same field with default null, a BACKWARD-compatible change). Its other
fields are placeholders; `quantum.validation` checks only the marker in such a record.

Why a marker says what it *covers*: an agent may run as several instances, each owning
some of its input partitions. An instance forwards a marker covering the input partitions
it owns (`"market.ticks/3"`), out of how many its stage reads in all (`of`). A partition
of the next topic has ended when the markers seen on it cover all `of` of them — one
marker from a single instance, or several from several instances. The feed, a single
producer with no input topic, covers its one source: `covers=("replay",), of=1`.

`EndOfStreamTracker` implements that rule; `EventTimeWatermark` gives the event time every
input partition has reached (an ended partition no longer holds anyone back), for agents
whose decisions wait on event time across partitions, like the selector's windows.
Both are pure: the shell feeds them what it consumed and keeps `snapshot()` in its table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from quantum.schemas import load_schema

FIELD = "end_of_stream"  # the record field that carries the marker
MARKER_KEY_PREFIX = "__end_of_stream__"


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """A marker: the producer saw the end of the inputs in `covers`, out of `of` in all.

    event_time: the highest event time (epoch ms) the producer had seen, so a consumer can
    close what waits on event time; 0 when nothing came before the end.
    """

    covers: tuple[str, ...]
    of: int
    event_time: int

    def __post_init__(self) -> None:
        if self.of < 1:
            raise ValueError(f"end of stream: of must be >= 1, got {self.of}")
        if not self.covers or any(not c for c in self.covers):
            raise ValueError("end of stream: covers must name at least one input")
        if len(set(self.covers)) > self.of:
            raise ValueError(f"end of stream: covers {len(set(self.covers))} inputs of {self.of}")
        if self.event_time < 0:
            raise ValueError(f"end of stream: event_time must be >= 0, got {self.event_time}")

    @classmethod
    def origin(cls, source: str, event_time: int) -> EndOfStream:
        """The first marker of a stream, written by its only producer (e.g. the replay feed)."""
        return cls((source,), 1, event_time)

    def to_avro(self) -> dict[str, Any]:
        """The value of the `end_of_stream` field."""
        return {"covers": list(self.covers), "of": self.of, "event_time": self.event_time}

    @classmethod
    def from_avro(cls, value: Mapping[str, Any]) -> EndOfStream:
        return cls(tuple(value["covers"]), int(value["of"]), int(value["event_time"]))


def marker_of(record: Mapping[str, Any]) -> EndOfStream | None:
    """The marker a decoded record carries, or None for an ordinary record."""
    value = record.get(FIELD)
    return None if value is None else EndOfStream.from_avro(value)


def marker_record(schema_file: str, marker: EndOfStream) -> dict[str, Any]:
    """A value of `schema_file` that is `marker`: the marker field set, every other field a
    placeholder (its default, else "" / 0 / the first enum symbol; timestamps get the
    marker's event time). For any topic whose schema has the `end_of_stream` field."""
    schema = load_schema(schema_file)
    if not any(f["name"] == FIELD for f in schema["fields"]):
        raise ValueError(f"{schema_file} has no {FIELD!r} field: it cannot carry the marker")
    value = _placeholder(schema, marker.event_time)
    value[FIELD] = marker.to_avro()
    return value


def _placeholder(avro_type: Any, event_time: int) -> Any:
    if isinstance(avro_type, list):  # a union: null if it may be, else its first branch
        return None if "null" in avro_type else _placeholder(avro_type[0], event_time)
    if isinstance(avro_type, dict):
        kind = avro_type["type"]
        if kind == "record":
            return {
                f["name"]: f["default"] if "default" in f else _placeholder(f["type"], event_time)
                for f in avro_type["fields"]
            }
        if kind == "enum":
            return avro_type["symbols"][0]
        if kind == "array":
            return []
        if kind == "map":
            return {}
        if avro_type.get("logicalType") == "timestamp-millis":
            return event_time
        return _placeholder(kind, event_time)
    return {"string": "", "bytes": b"", "int": 0, "long": 0, "double": 0.0, "float": 0.0}.get(
        avro_type, False if avro_type == "boolean" else None
    )


def marker_key(partition: int) -> bytes:
    """Key of the marker sent to `partition` (sent there explicitly, not by key hash)."""
    return f"{MARKER_KEY_PREFIX}:{partition}".encode()


def input_name(topic: str, partition: int) -> str:
    """How a marker names an input partition: `"<logical topic>/<partition>"`."""
    return f"{topic}/{partition}"


class EndOfStreamTracker:
    """Decides when an agent forwards the end of stream: once, after all its inputs ended.

    inputs: each input topic the end must come through, with its partition count (e.g.
        `{"market.ticks": 6}`). A topic that never ends (a compacted state topic such as
        positions) is simply not listed.
    owned: the (topic, partition) pairs this instance consumes; all of them by default
        (one worker runs the agent). The forwarded marker covers exactly these, out of the
        stage's total, so instances that each own a share add up downstream.
    """

    def __init__(
        self,
        inputs: Mapping[str, int],
        owned: Iterable[tuple[str, int]] | None = None,
    ) -> None:
        if not inputs or any(n < 1 for n in inputs.values()):
            raise ValueError(f"inputs need at least one topic with >= 1 partition: {inputs}")
        self._inputs = dict(inputs)
        every = [(t, p) for t, n in sorted(self._inputs.items()) for p in range(n)]
        mine = every if owned is None else sorted(set(owned))
        for topic, partition in mine:
            if topic not in self._inputs or not 0 <= partition < self._inputs[topic]:
                raise ValueError(f"owned input {topic}/{partition} is not among {self._inputs}")
        self._owned: tuple[tuple[str, int], ...] = tuple(mine)
        self._total = len(every)
        # (topic, partition) -> what the markers seen there cover, and out of how many
        self._seen: dict[tuple[str, int], tuple[set[str], int]] = {}
        self._event_time = 0
        self._forwarded = False

    # ---- queries ----------------------------------------------------------------------

    def ended(self, topic: str, partition: int) -> bool:
        """Has input partition (topic, partition) seen the end of every producer writing it?"""
        seen = self._seen.get((topic, partition))
        return seen is not None and len(seen[0]) >= seen[1]

    @property
    def done(self) -> bool:
        """Every owned input partition has ended."""
        return all(self.ended(t, p) for t, p in self._owned)

    @property
    def owned(self) -> tuple[tuple[str, int], ...]:
        """The (topic, partition) inputs this instance waits for."""
        return self._owned

    @property
    def forwarded(self) -> bool:
        return self._forwarded

    def pending(self) -> list[tuple[str, int]]:
        """Owned input partitions still waiting for their end (for logs and tests)."""
        return [(t, p) for t, p in self._owned if not self.ended(t, p)]

    # ---- the one input ----------------------------------------------------------------

    def on_marker(self, topic: str, partition: int, marker: EndOfStream) -> EndOfStream | None:
        """Note a marker read from (topic, partition); the marker to forward, exactly once.

        The returned marker goes to every partition of every topic the agent writes.
        A repeated marker (a redelivery) changes nothing. A marker whose `of` disagrees
        with an earlier one on the same partition is a broken producer: ValueError.
        """
        key = (topic, partition)
        if topic not in self._inputs or not 0 <= partition < self._inputs[topic]:
            raise ValueError(f"marker from {topic}/{partition}, not an input of {self._inputs}")
        covers, of = self._seen.setdefault(key, (set(), marker.of))
        if marker.of != of:
            raise ValueError(
                f"end of stream on {topic}/{partition}: of={marker.of} after of={of} "
                "from another producer of the same partition"
            )
        covers.update(marker.covers)
        self._event_time = max(self._event_time, marker.event_time)
        if self._forwarded or not self.done:
            return None
        self._forwarded = True
        return EndOfStream(
            tuple(input_name(t, p) for t, p in self._owned), self._total, self._event_time
        )

    # ---- state for the shell's table ------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state; `restore` of it continues exactly where this one is."""
        return {
            "seen": [
                [t, p, sorted(covers), of] for (t, p), (covers, of) in sorted(self._seen.items())
            ],
            "event_time": self._event_time,
            "forwarded": self._forwarded,
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        self._seen = {(t, int(p)): (set(c), int(of)) for t, p, c, of in snapshot["seen"]}
        self._event_time = int(snapshot["event_time"])
        self._forwarded = bool(snapshot["forwarded"])


class EventTimeWatermark:
    """The event time every owned input partition has reached: min over them of the latest
    event time seen. None until each has shown an event time (or ended); an ended partition
    holds nothing back. Event time never goes backwards here, even if a record does.
    """

    def __init__(self, inputs: Iterable[tuple[str, int]]) -> None:
        self._inputs = tuple(sorted(set(inputs)))
        if not self._inputs:
            raise ValueError("a watermark needs at least one input partition")
        self._latest: dict[tuple[str, int], int] = {}
        self._ended: set[tuple[str, int]] = set()

    def observe(self, topic: str, partition: int, event_time: int) -> int | None:
        """Note a record's event time; returns the watermark after it."""
        key = self._check(topic, partition)
        if event_time > self._latest.get(key, -1):
            self._latest[key] = event_time
        return self.value

    def end(self, topic: str, partition: int, event_time: int = 0) -> int | None:
        """Note the end of a partition; returns the watermark after it."""
        key = self._check(topic, partition)
        self._ended.add(key)
        if event_time > self._latest.get(key, -1):
            self._latest[key] = event_time
        return self.value

    @property
    def value(self) -> int | None:
        live = [k for k in self._inputs if k not in self._ended]
        if not live:  # everything ended: the end's own event time is as far as it goes
            return max(self._latest.values(), default=None)
        if any(k not in self._latest for k in live):
            return None
        return min(self._latest[k] for k in live)

    def snapshot(self) -> dict[str, Any]:
        return {
            "latest": [[t, p, v] for (t, p), v in sorted(self._latest.items())],
            "ended": [[t, p] for t, p in sorted(self._ended)],
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        self._latest = {(t, int(p)): int(v) for t, p, v in snapshot["latest"]}
        self._ended = {(t, int(p)) for t, p in snapshot["ended"]}

    def _check(self, topic: str, partition: int) -> tuple[str, int]:
        key = (topic, partition)
        if key not in self._inputs:
            raise ValueError(f"{topic}/{partition} is not an input of this watermark")
        return key
