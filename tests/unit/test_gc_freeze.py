"""GcFreezer: when it freezes, and that a frozen governor state is still freed when dropped.

The second test is why freezing is safe for the governor: its remembered state has no
reference cycles, so an entry the memory horizon forgets is freed by reference counting
even though it sits in the permanent generation. Were the entries cyclic, every frozen one
would leak and the frozen count would grow by entries per command.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from decimal import Decimal

import pytest

from agents.governor.config import GovernorConfig
from agents.governor.core import GovernorCore
from agents.governor.model import Side, SlotRequest
from quantum.gc_freeze import GcFreezer, freeze_survivors


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class _Cell:
    """A tracked object (a plain instance), so a freeze has something new to move."""


def test_it_freezes_once_per_every_events_and_not_before() -> None:
    freezer = GcFreezer(every=3)
    kept = [_Cell()]
    freezer.count(2)
    assert gc.get_freeze_count() == 0
    freezer.count(1)
    frozen = gc.get_freeze_count()
    assert frozen > 0
    kept.append(_Cell())
    freezer.count(2)
    assert gc.get_freeze_count() == frozen  # the count restarted at the freeze
    freezer.count(1)
    assert gc.get_freeze_count() > frozen
    assert len(kept) == 2


def test_every_zero_never_freezes() -> None:
    freezer = GcFreezer(every=0)
    freezer.count(10**6)
    assert gc.get_freeze_count() == 0


def _request(i: int) -> SlotRequest:
    return SlotRequest(
        intent_id=f"i{i}",
        symbol=f"S{i % 50:03d}USDT",
        side=Side.LONG,
        notional=Decimal(100),
        score=(i % 97) / 97,
        event_time_ms=1_000_000 + i * 10,
    )


def test_a_frozen_governor_state_is_freed_when_the_horizon_forgets_it() -> None:
    # A 5 s horizon at 10 ms per command: the core remembers ~500 commands' entries.
    core = GovernorCore(GovernorConfig(memory_horizon_ms=5_000))
    freezer = GcFreezer(every=500)
    for i in range(10_000):
        core.handle(_request(i))
        freezer.count(1)
    freeze_survivors()
    halfway = gc.get_freeze_count()
    for i in range(10_000, 20_000):
        core.handle(_request(i))
        freezer.count(1)
    freeze_survivors()
    grown = gc.get_freeze_count() - halfway
    # Leaked, the second 10,000 commands would have left ~20,000 frozen entries behind.
    assert core.remembered < 2_000
    assert grown < 1_000, f"{grown} more frozen objects after 10,000 more commands"
