"""The clock agent's decision: one heartbeat per bucket of event time, named by the bucket."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.clock.core import heartbeat


def test_one_clock_per_bucket_and_none_for_older_ticks() -> None:
    last, clock = heartbeat(None, 12_345, 5_000)
    assert (last, clock.command_id, clock.event_time_ms) == (2, "clock:10000", 10_000)
    assert heartbeat(last, 14_999, 5_000) == (2, None)  # same bucket
    assert heartbeat(last, 9_000, 5_000) == (2, None)  # out of order: never back
    last, clock = heartbeat(last, 15_000, 5_000)
    assert (last, clock.command_id) == (3, "clock:15000")


def test_a_nonpositive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="every_ms"):
        heartbeat(None, 1, 0)


@given(st.lists(st.integers(0, 10**7), max_size=200), st.integers(1, 10**5))
def test_heartbeats_are_increasing_unique_and_never_ahead_of_the_ticks(
    times: list[int], every: int
) -> None:
    last = None
    sent = []
    for t in times:
        last, clock = heartbeat(last, t, every)
        if clock is not None:
            assert clock.event_time_ms <= t  # a heartbeat never runs ahead of the market
            sent.append(clock.event_time_ms)
    assert sent == sorted(set(sent))
    if times:
        assert sent and sent[-1] == max(times[: times.index(max(times)) + 1]) // every * every
