"""The breaker's equity from positions records: open shares replaced, closed ones settled
once, late records of a settled position ignored; properties over random record streams."""

from __future__ import annotations

import json
from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from agents.exit_guard.equity import EquityBook, on_position

DAY = 86_400_000


def take(book: EquityBook, pid: str, closed: bool, r: str, f: str, u: str, t: int) -> EquityBook:
    return on_position(
        book,
        intent_id=pid,
        closed=closed,
        realized_pnl=D(r),
        fees=D(f),
        unrealized_pnl=D(u),
        event_time_ms=t,
        retention_ms=DAY,
    )


def test_equity_is_initial_plus_every_positions_net_pnl() -> None:
    book = EquityBook(D(1000))
    book = take(book, "a", False, "0", "1", "-20", 1)
    book = take(book, "b", False, "5", "1", "10", 1)
    assert book.equity() == D(1000 - 21 + 14)
    book = take(book, "a", True, "-30", "2", "0", 2)  # unrealized of a closed one is ignored
    assert book.settled == D(-32) and book.equity() == D(1000 - 32 + 14)
    assert take(book, "a", False, "0", "1", "-99", 3) == book  # late OPEN of a settled one
    assert take(book, "a", True, "-30", "2", "0", 2) == book  # the close again
    assert EquityBook.from_json(json.loads(json.dumps(book.to_json()))) == book


def test_settled_ids_are_forgotten_after_the_retention() -> None:
    book = take(EquityBook(D(1000)), "a", True, "1", "0", "0", 0)
    book = take(book, "b", True, "1", "0", "0", DAY)
    assert set(book.closed) == {"b"} and book.settled == D(2)


records = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.booleans(),
        st.integers(-50, 50),
        st.integers(0, 3),
        st.integers(-50, 50),
    ),
    max_size=30,
)


@given(records)
def test_equity_equals_the_last_word_on_each_position(stream) -> None:
    book = EquityBook(D(100))
    last: dict[str, tuple[bool, int]] = {}
    for t, (pid, closed, r, f, u) in enumerate(stream):
        book = take(book, pid, closed, str(r), str(f), str(u), t)
        if pid in last and last[pid][0]:
            continue  # settled: nothing about it changes any more
        last[pid] = (closed, r - f + (0 if closed else u))
    assert book.equity() == D(100) + sum(share for _, share in last.values())
    # redelivering the whole stream changes nothing
    again = book
    for t, (pid, closed, r, f, u) in enumerate(stream):
        if last.get(pid, (False, 0))[0]:
            again = take(again, pid, closed, str(r), str(f), str(u), t)
    assert again == book
