"""Deterministic ids: client order ids from intent ids, command ids from facts.

A client order id is a function of (role tag, intent or exit id) only, so a resend after
a restart carries the same id and the exchange recognises it (Binance refuses a duplicate
among open orders with -4116; the paper exchange refuses any duplicate). Binance allows
`^[\\.A-Z\\:/a-z0-9_-]{1,36}$` (FACTS.md). Short ids in that alphabet are kept readable,
`<tag>-<id>`; anything else becomes `<tag>:<hex of sha256(id)>`, cut to 36 characters.
The separator after the tag tells the two forms apart, so a readable id can never equal
a hashed one, and 124+ bits of hash make a collision between hashed ids negligible.
"""

from __future__ import annotations

import hashlib
import re

from agents.governor.model import ReleaseReason

CLIENT_ORDER_ID_RE = re.compile(r"[\.A-Z\:/a-z0-9_-]{1,36}")
MAX_CLIENT_ORDER_ID = 36
_TAG_RE = re.compile(r"[A-Z][A-Z0-9]{0,3}")

ENTRY_TAG = "E"
STOP_LOSS_TAG = "S"
TAKE_PROFIT_TAG = "T"
EXIT_TAG = "X"


def close_tag(n: int) -> str:
    """Tag of the intent's n-th close order (n >= 1): C1, C2, ..."""
    if not 1 <= n <= 999:
        raise ValueError(f"close order number out of range: {n}")
    return f"C{n}"


def client_order_id(tag: str, key: str) -> str:
    """The client order id of the order `tag` for `key` (an intent or exit id)."""
    if not _TAG_RE.fullmatch(tag):
        raise ValueError(f"bad client order id tag {tag!r}")
    if not key:
        raise ValueError("empty key for a client order id")
    readable = f"{tag}-{key}"
    if len(readable) <= MAX_CLIENT_ORDER_ID and CLIENT_ORDER_ID_RE.fullmatch(readable):
        return readable
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"{tag}:{digest[: MAX_CLIENT_ORDER_ID - len(tag) - 1]}"


def filled_command_id(intent_id: str) -> str:
    """Command id of the one SlotFilled an intent ever sends."""
    return f"{intent_id}:filled"


def release_command_id(intent_id: str, reason: ReleaseReason) -> str:
    """Command id of an intent's release for `reason` (one per intent and reason)."""
    return f"{intent_id}:release:{reason.value}"
