"""wait_until: returns once the condition holds, fails naming what it waited for."""

from __future__ import annotations

import pytest

from quantum.polling import wait_until


def test_returns_when_the_condition_becomes_true() -> None:
    calls = iter([False, False, True])
    assert wait_until(lambda: next(calls), 5, "the third call", poll_s=0.001) >= 0


def test_times_out_naming_what_it_waited_for() -> None:
    with pytest.raises(TimeoutError, match="waiting for the impossible"):
        wait_until(lambda: False, 0.05, "the impossible", poll_s=0.01)
