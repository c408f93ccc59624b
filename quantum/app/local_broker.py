"""The main job's broker: the one `KAFKA_BOOTSTRAP` names, else the local one (started,
and stopped again afterwards, if it was not already running)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def local_broker(settings: Any, *, keep: bool = False) -> Iterator[Any]:
    """Yields settings pointing at a running broker and registry."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield settings
        return
    from infra import local

    was_up = local.status(settings.infra).healthy
    t0 = time.monotonic()
    endpoints = local.up(settings.infra)
    print(
        f"broker {endpoints.bootstrap}, registry {endpoints.registry_url} "
        f"({time.monotonic() - t0:.1f} s, {'reused' if was_up else 'started'})",
        flush=True,
    )
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"bootstrap": endpoints.bootstrap}),
            "registry": settings.registry.model_copy(update={"url": endpoints.registry_url}),
        }
    )
    try:
        yield settings
    finally:
        if not was_up and not keep:
            local.down(settings.infra)
            print("stopped the local broker (--keep-infra leaves it running)", flush=True)
