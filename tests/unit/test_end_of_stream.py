"""End of stream: every partition gets the marker, every stage forwards it exactly once
after all its inputs ended, however the partitions are shared between instances."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import given, settings
from hypothesis import strategies as st

from quantum.end_of_stream import (
    EndOfStream,
    EndOfStreamTracker,
    EventTimeWatermark,
    marker_key,
    marker_of,
    marker_record,
)
from quantum.errors import InvalidRecord
from quantum.marketdata import KlineSource, end_of_stream_record, is_end_of_stream
from quantum.serde import AvroSerde
from quantum.validation import validate

TICKS = "market.ticks"
SIGNALS = "ai.signals"


def test_one_instance_forwards_once_after_every_partition() -> None:
    tracker = EndOfStreamTracker({TICKS: 6})
    feed = EndOfStream.origin("replay", 1_000)
    for p in (3, 0, 5, 1, 4):
        assert tracker.on_marker(TICKS, p, feed) is None
        assert tracker.ended(TICKS, p)
    assert tracker.pending() == [(TICKS, 2)] and not tracker.done
    out = tracker.on_marker(TICKS, 2, EndOfStream.origin("replay", 1_500))
    assert out == EndOfStream(tuple(f"{TICKS}/{p}" for p in range(6)), 6, 1_500)
    assert tracker.done and tracker.forwarded
    assert tracker.on_marker(TICKS, 2, feed) is None  # a redelivery: nothing more


def test_two_upstream_instances_each_cover_half() -> None:
    """Upstream ran as two instances owning ticks partitions 0-2 and 3-5: a downstream
    partition has ended only once both of their markers arrived there."""
    up_a = EndOfStream(tuple(f"{TICKS}/{p}" for p in range(3)), 6, 10)
    up_b = EndOfStream(tuple(f"{TICKS}/{p}" for p in range(3, 6)), 6, 12)
    down = EndOfStreamTracker({SIGNALS: 2})
    assert down.on_marker(SIGNALS, 0, up_a) is None and not down.ended(SIGNALS, 0)
    assert down.on_marker(SIGNALS, 0, up_b) is None and down.ended(SIGNALS, 0)
    assert down.on_marker(SIGNALS, 1, up_b) is None
    forwarded = down.on_marker(SIGNALS, 1, up_a)
    assert forwarded is not None and forwarded.covers == (f"{SIGNALS}/0", f"{SIGNALS}/1")
    assert forwarded.event_time == 12


def test_an_instance_owning_part_of_the_inputs() -> None:
    tracker = EndOfStreamTracker({TICKS: 6}, owned=[(TICKS, 4), (TICKS, 1)])
    assert tracker.on_marker(TICKS, 1, EndOfStream.origin("replay", 5)) is None
    out = tracker.on_marker(TICKS, 4, EndOfStream.origin("replay", 5))
    assert out == EndOfStream((f"{TICKS}/1", f"{TICKS}/4"), 6, 5)


def test_broken_markers_are_refused() -> None:
    tracker = EndOfStreamTracker({TICKS: 2})
    tracker.on_marker(TICKS, 0, EndOfStream(("x/0",), 2, 1))
    with pytest.raises(ValueError, match="of=3"):
        tracker.on_marker(TICKS, 0, EndOfStream(("x/1",), 3, 1))
    with pytest.raises(ValueError, match="not an input"):
        tracker.on_marker(TICKS, 7, EndOfStream.origin("replay", 1))
    with pytest.raises(ValueError):
        EndOfStreamTracker({TICKS: 2}, owned=[(SIGNALS, 0)])
    for bad in ((("a",), 0, 1), ((), 1, 1), (("a", "b"), 1, 1), (("a",), 1, -1)):
        with pytest.raises(ValueError):
            EndOfStream(*bad)


def test_snapshot_restore_continues_where_it_was() -> None:
    tracker = EndOfStreamTracker({TICKS: 3, SIGNALS: 1})
    tracker.on_marker(TICKS, 0, EndOfStream.origin("replay", 7))
    tracker.on_marker(SIGNALS, 0, EndOfStream(("a/0",), 2, 9))
    restored = EndOfStreamTracker({TICKS: 3, SIGNALS: 1})
    restored.restore(json.loads(json.dumps(tracker.snapshot())))
    assert restored.snapshot() == tracker.snapshot()
    for t in (tracker, restored):
        assert t.on_marker(TICKS, 1, EndOfStream.origin("replay", 8)) is None
        assert t.on_marker(TICKS, 2, EndOfStream.origin("replay", 8)) is None
        assert t.on_marker(SIGNALS, 0, EndOfStream(("a/1",), 2, 9)) == EndOfStream(
            (f"{SIGNALS}/0", f"{TICKS}/0", f"{TICKS}/1", f"{TICKS}/2"), 4, 9
        )


@settings(max_examples=200, deadline=None)
@given(
    partitions=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    instances=st.lists(st.integers(1, 3), min_size=4, max_size=4),
    seed=st.integers(0, 10_000),
)
def test_a_pipeline_of_stages_ends_exactly_once_everywhere(
    partitions: list[int], instances: list[int], seed: int
) -> None:
    """Stage k reads topic k (partitions[k] partitions) with instances[k] instances that
    share its partitions; its markers go to every partition of topic k + 1. Markers are
    delivered in a random order. Every instance forwards exactly once, only after every
    marker of its inputs arrived, and the last topic's every partition ends."""
    rng = random.Random(seed)
    topics = [f"t{k}" for k in range(len(partitions))] + ["out"]
    counts = [*partitions, rng.randint(1, 6)]
    # stage k: its instances, each owning a share of topic k's partitions
    stages: list[list[EndOfStreamTracker]] = []
    for k, n in enumerate(partitions):
        share: list[list[tuple[str, int]]] = [[] for _ in range(min(instances[k], n))]
        for p in range(n):
            share[p % len(share)].append((topics[k], p))
        stages.append([EndOfStreamTracker({topics[k]: n}, owned=s) for s in share])
    # the feed: one marker per partition of topic 0
    inbox: list[tuple[int, str, int, EndOfStream]] = [
        (0, topics[0], p, EndOfStream.origin("replay", 100)) for p in range(counts[0])
    ]
    last_topic_markers: dict[int, list[EndOfStream]] = {}
    forwards: dict[tuple[int, int], int] = {}
    while inbox:
        stage, topic, partition, marker = inbox.pop(rng.randrange(len(inbox)))
        if stage == len(stages):
            last_topic_markers.setdefault(partition, []).append(marker)
            continue
        for i, tracker in enumerate(stages[stage]):
            if (topic, partition) not in tracker.owned:
                continue
            out = tracker.on_marker(topic, partition, marker)
            if out is not None:
                forwards[(stage, i)] = forwards.get((stage, i), 0) + 1
                assert tracker.done and not tracker.pending()
                for q in range(counts[stage + 1]):
                    inbox.append((stage + 1, topics[stage + 1], q, out))
    assert all(n == 1 for n in forwards.values())
    assert len(forwards) == sum(len(s) for s in stages)
    final = EndOfStreamTracker({"out": counts[-1]})
    for q in range(counts[-1]):
        for marker in last_topic_markers[q]:
            final.on_marker("out", q, marker)
        assert final.ended("out", q)
    assert final.done


def test_watermark_is_the_slowest_live_partition() -> None:
    wm = EventTimeWatermark([(TICKS, p) for p in range(3)])
    assert wm.observe(TICKS, 0, 100) is None  # partitions 1 and 2 not heard from yet
    assert wm.observe(TICKS, 1, 50) is None
    assert wm.observe(TICKS, 2, 70) == 50
    assert wm.observe(TICKS, 1, 40) == 50  # never backwards
    assert wm.observe(TICKS, 1, 120) == 70
    assert wm.end(TICKS, 2, 70) == 100  # an ended partition holds nothing back
    state = wm.snapshot()
    assert wm.end(TICKS, 0) == 120
    assert wm.end(TICKS, 1) == 120  # all ended: as far as the stream went
    again = EventTimeWatermark([(TICKS, p) for p in range(3)])
    again.restore(json.loads(json.dumps(state)))
    assert again.value == 100
    with pytest.raises(ValueError):
        wm.observe(SIGNALS, 0, 1)


# ---- the marker as a record --------------------------------------------------------------


@pytest.fixture
def serde() -> AvroSerde:
    return AvroSerde(SchemaRegistryClient.new_client({"url": "mock://eos"}))


@pytest.mark.parametrize(
    "schema_file", ["market.ticks.avsc", "trade.intents.avsc", "trade.rejections.avsc"]
)
def test_marker_records_validate_and_round_trip(serde: AvroSerde, schema_file: str) -> None:
    marker = EndOfStream(("market.ticks/0", "market.ticks/1"), 6, 1_767_225_659_999)
    value = marker_record(schema_file, marker)
    validate(schema_file, value, universe=frozenset({"BTCUSDT"}))  # placeholders pass
    data = serde.encode("t", value, schema_file=schema_file)
    decoded = serde.decode("t", data, schema_file=schema_file)
    assert marker_of(decoded) == marker


def test_kline_marker_per_partition(serde: AvroSerde) -> None:
    marker = EndOfStream.origin("replay", 5)
    values = [end_of_stream_record(marker, p, KlineSource.SAMPLE) for p in range(6)]
    assert len({v["event_id"] for v in values}) == 6 and all(is_end_of_stream(v) for v in values)
    assert len({marker_key(p) for p in range(6)}) == 6
    data = serde.encode("t", values[3], schema_file="market.ticks.avsc")
    decoded = serde.decode("t", data, schema_file="market.ticks.avsc")
    assert decoded["event_id"] == "END_OF_STREAM:3" and marker_of(decoded) == marker


def test_a_broken_marker_is_a_poison_record() -> None:
    value: dict[str, Any] = marker_record("market.ticks.avsc", EndOfStream.origin("replay", 1))
    value["end_of_stream"] = {"covers": ["a", "b"], "of": 1, "event_time": 1}
    with pytest.raises(InvalidRecord, match="end_of_stream"):
        validate("market.ticks.avsc", value)
    with pytest.raises(ValueError, match="no 'end_of_stream'"):
        marker_record("portfolio.avsc", EndOfStream.origin("replay", 1))


def test_an_ordinary_kline_is_still_fully_checked() -> None:
    value = marker_record("market.ticks.avsc", EndOfStream.origin("replay", 1))
    value["end_of_stream"] = None
    with pytest.raises(InvalidRecord):
        validate("market.ticks.avsc", value)
