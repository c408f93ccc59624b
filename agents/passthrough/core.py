"""The pass-through decision: every valid tick goes out as it came in, keyed by symbol."""

from __future__ import annotations

from typing import Any


def relay(tick: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """(key, value) to send for a decoded, validated tick."""
    return tick["symbol"].encode(), tick
