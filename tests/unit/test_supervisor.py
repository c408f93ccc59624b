"""The supervisor's decisions (quantum/app/supervisor.py): when a worker is stalled, when
and how soon it is restarted, when the supervisor gives up."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agents.registry import REGISTRY
from quantum.app.settings import Settings
from quantum.app.supervisor import EXIT_FENCED, RestartPolicy, StallWatch, readers_of
from quantum.config import SupervisorSettings

LAG = {"g/market.ticks": 3}
AT = {("g", "market.ticks", 0): 5}


def test_lag_with_committed_offsets_standing_still_is_a_stall_after_the_timeout() -> None:
    watch = StallWatch(timeout_s=20)
    watch.reset(0.0)
    assert not watch.observe(1.0, AT, LAG)
    assert not watch.observe(20.9, AT, LAG)
    assert watch.observe(21.0, AT, LAG)


def test_moving_offsets_or_no_lag_restart_the_clock() -> None:
    watch = StallWatch(timeout_s=20)
    watch.reset(0.0)
    watch.observe(1.0, AT, LAG)
    assert not watch.observe(15.0, {("g", "market.ticks", 0): 6}, LAG)  # it committed
    assert not watch.observe(34.0, {("g", "market.ticks", 0): 6}, LAG)  # 19 s since
    assert not watch.observe(40.0, {("g", "market.ticks", 0): 6}, {})  # caught up: idle
    assert not watch.observe(59.0, {("g", "market.ticks", 0): 6}, LAG)
    assert watch.observe(79.0, {("g", "market.ticks", 0): 6}, LAG)


def test_a_start_resets_the_watch_and_zero_turns_it_off() -> None:
    watch = StallWatch(timeout_s=20)
    watch.observe(0.0, AT, LAG)
    watch.reset(100.0)  # a new worker: its restore takes time
    assert not watch.observe(110.0, AT, LAG)
    off = StallWatch(timeout_s=0)
    off.observe(0.0, AT, LAG)
    assert not off.observe(10_000.0, AT, LAG)


def test_clean_and_fenced_exits_are_not_restarted() -> None:
    policy = RestartPolicy(SupervisorSettings())
    assert not policy.after_exit(0.0, 0, 100.0).restart
    fenced = policy.after_exit(0.0, EXIT_FENCED, 100.0)
    assert not fenced.restart and "fenced" in fenced.reason


def test_backoff_doubles_for_quick_failures_and_resets_after_a_healthy_run() -> None:
    conf = SupervisorSettings(backoff_s=1, backoff_max_s=5, healthy_after_s=60)
    policy = RestartPolicy(conf)
    waits = [policy.after_exit(float(i), 71, 2.0).wait_s for i in range(5)]
    assert waits == [1, 2, 4, 5, 5]
    assert policy.after_stall(100.0, 61.0).wait_s == 1  # it had lived long enough


def test_too_many_restarts_in_the_window_give_up() -> None:
    conf = SupervisorSettings(max_restarts=3, window_s=60, backoff_s=0)
    policy = RestartPolicy(conf)
    assert [policy.after_exit(t, 70, 1.0).restart for t in (0.0, 1.0, 2.0)] == [True] * 3
    verdict = policy.after_exit(3.0, 70, 1.0)
    assert not verdict.restart and "3 restarts" in verdict.reason
    assert policy.after_exit(61.5, 70, 1.0).restart  # the first ones left the window


@given(
    st.lists(st.tuples(st.floats(0, 50), st.integers(1, 200), st.floats(0, 100)), min_size=1),
    st.integers(0, 8),
)
def test_never_more_than_max_restarts_within_any_window(events, max_restarts) -> None:
    conf = SupervisorSettings(max_restarts=max_restarts, window_s=30, backoff_s=0.5)
    policy = RestartPolicy(conf)
    now, restarts = 0.0, []
    for gap, code, lived in events:
        now += gap
        verdict = policy.after_exit(now, code if code != EXIT_FENCED else 71, lived)
        assert 0 <= verdict.wait_s <= conf.backoff_max_s
        if verdict.restart:
            restarts.append(now)
    for t in restarts:
        assert sum(1 for u in restarts if t - conf.window_s < u <= t) <= max_restarts


def test_readers_of_a_worker_name_its_faust_group_and_the_governor_s() -> None:
    settings = Settings().with_prefix("t-")
    specs = REGISTRY.select("harvest,governor")
    readers, transactional = readers_of(settings, specs, "w1")
    groups = {r.group: r.topics for r in readers}
    assert groups["t-w1"] == ("t-market.ticks", "t-positions")
    assert any("t-portfolio" in topics for g, topics in groups.items() if g != "t-w1")
    assert transactional == {"t-portfolio.decisions", "t-portfolio.governor-snapshots"}


def test_gapless_inputs_are_those_neither_compacted_nor_written_in_transactions() -> None:
    assert REGISTRY.gapless("market.ticks") and REGISTRY.gapless("portfolio")
    assert not REGISTRY.gapless("positions")  # compacted
    assert not REGISTRY.gapless("portfolio.decisions")  # the governor's transactions


def test_a_worker_reading_the_governor_s_output_knows_it_is_transactional() -> None:
    # without it, the commit marker at the end looks like lag for ever: a false stall
    _, transactional = readers_of(Settings(), REGISTRY.select("execution"), "w")
    assert "portfolio.decisions" in transactional
