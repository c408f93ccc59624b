"""A minimal Faust relay for `bench.faust_eos_crash`: input topic → output topic, unchanged.

Configured only through environment variables so the crash harness can start, SIGKILL
and restart it as a plain subprocess (`python -m faust -A bench.faust_relay_app worker`).
The agent does what an ordinary Faust agent does: `await out.send(...)` inside the
stream loop, and leaves offsets and transactions entirely to Faust.

    FAUST_RELAY_APP_ID      app id = consumer group id (unique per run)
    FAUST_RELAY_BOOTSTRAP   host:port of the broker
    FAUST_RELAY_IN          input topic
    FAUST_RELAY_OUT         output topic
    FAUST_RELAY_GUARANTEE   exactly_once | at_least_once
    FAUST_RELAY_DATADIR     Faust's data directory (kept out of the repository)
"""

from __future__ import annotations

import os
import tempfile

import faust
from faust.types import StreamT

_env = os.environ

app = faust.App(
    _env.get("FAUST_RELAY_APP_ID", "faust-relay"),
    broker=f"kafka://{_env.get('FAUST_RELAY_BOOTSTRAP', '127.0.0.1:29092')}",
    processing_guarantee=_env.get("FAUST_RELAY_GUARANTEE", "exactly_once"),
    store="memory://",
    web_enabled=False,
    autodiscover=False,
    datadir=_env.get("FAUST_RELAY_DATADIR", tempfile.gettempdir()),
    topic_replication_factor=1,
    topic_allow_declare=False,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    # A SIGKILLed member stays in the group until its session times out; keep that short
    # so each restart gets the partition back within seconds, not Faust's default 60 s.
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.5,
)

source = app.topic(
    _env.get("FAUST_RELAY_IN", "relay-in"), key_serializer="raw", value_serializer="raw"
)
out = app.topic(
    _env.get("FAUST_RELAY_OUT", "relay-out"), key_serializer="raw", value_serializer="raw"
)


@app.agent(source)
async def relay(stream: StreamT) -> None:
    """Forward every input record as-is; the harness checks the output for duplicates."""
    async for event in stream.events():
        await out.send(key=event.key, value=event.value)


if __name__ == "__main__":
    app.main()
