"""Keep CPython's cyclic collector off a long-lived in-memory state.

A stateful agent holds a large, slowly changing state (the governor: ~2 entries per command
for 24 h of event time). The collector's oldest generation is scanned whole once it grew by
a quarter, so its pauses grow with the state: at 120,000 remembered entries a full pass took
40-60 ms here, all other threads stopped, and ~13 % of the governor core's time went to
collection (docs/governor-performance.md). Those pauses were the governor's latency tail.

`GcFreezer` moves the survivors of the young generations into the permanent generation
(`gc.freeze`) every `every` events, so the automatic full passes only ever see what arrived
since the last freeze. A frozen object is still freed by reference counting when the state
drops it; only a reference *cycle* among frozen objects would never be collected, so use it
where the long-lived state is acyclic (the governor's is: ids, ints, and intent records that
refer to no other record). Cyclic garbage that dies young (an exception and its traceback)
is collected by the young passes before it could be frozen.
"""

from __future__ import annotations

import gc


def freeze_survivors(generation: int = 1) -> None:
    """Collect generations up to `generation`, then freeze everything still alive.

    With the default the cost is that of the young generations; 2 (a full pass) suits a
    moment that is slow anyway, such as the end of a restore."""
    gc.collect(generation)
    gc.freeze()


class GcFreezer:
    """Calls `freeze_survivors` once per `every` events counted; `every=0` never does."""

    def __init__(self, every: int) -> None:
        self.every = every
        self._since = 0

    def count(self, events: int) -> None:
        if self.every <= 0:
            return
        self._since += events
        if self._since >= self.every:
            self._since = 0
            freeze_survivors()
