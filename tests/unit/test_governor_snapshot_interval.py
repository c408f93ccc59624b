"""The governor's snapshot interval: at least `snapshot_every` commands, and long enough
that the entries written per command stay bounded as the remembered state grows."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from agents.governor.config import GovernorShellSettings
from agents.governor.shell import snapshot_due


@given(
    st.integers(1, 2000),
    st.sampled_from([0.0, 0.25, 1.0, 2.0]),
    st.lists(st.integers(0, 3), min_size=1, max_size=5000),
)
def test_snapshot_work_per_command_is_bounded_and_the_replay_too(
    every: int, per_entry: float, growth: list[int]
) -> None:
    conf = GovernorShellSettings(snapshot_every=every, snapshot_every_per_entry=per_entry)
    remembered = since = written = 0
    longest = 0
    for added in growth:  # one command, which adds 0-3 entries to the state
        remembered += added
        since += 1
        longest = max(longest, since)
        if snapshot_due(since, remembered, conf):
            written += remembered  # a snapshot writes every entry it holds
            assert since >= every
            since = 0
    # a restart replays at most the commands since the last snapshot
    assert longest <= max(every, math.ceil(per_entry * remembered))
    if per_entry > 0:
        # each snapshot's entries are paid for by the commands since the one before
        assert written <= len(growth) / per_entry


def test_a_large_state_widens_the_interval_and_a_small_one_does_not() -> None:
    conf = GovernorShellSettings(snapshot_every=1000)  # snapshot_every_per_entry 1.0
    assert snapshot_due(1000, 10, conf)  # small state: the fixed interval
    assert not snapshot_due(999, 10, conf)
    assert not snapshot_due(1000, 50_000, conf)  # 50,000 entries: wait for 50,000 commands
    assert snapshot_due(50_000, 50_000, conf)
