"""A real websockets server on 127.0.0.1 that plays recorded message sequences, one
script per connection, and an in-memory sink for the live sources' records."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

DROP = "DROP"  # end the connection abruptly (no close frame), as a network cut does
HOLD = "HOLD"  # keep the connection open until the client leaves


@dataclass
class Script:
    """What one connection plays: messages (dicts are sent as JSON), then DROP or HOLD."""

    messages: list[Any]
    end: str = HOLD


@dataclass
class ScriptedServer:
    scripts: list[Script]
    paths: list[str] = field(default_factory=list)
    url: str = ""

    async def _handler(self, ws: ServerConnection) -> None:
        n = len(self.paths)
        self.paths.append(ws.request.path if ws.request else "")
        script = self.scripts[n] if n < len(self.scripts) else Script([], HOLD)
        for m in script.messages:
            await ws.send(m if isinstance(m, str) else json.dumps(m))
        if script.end == DROP:
            await asyncio.sleep(0.05)  # let the last frames leave before the cut
            ws.transport.abort()
            return
        await ws.wait_closed()

    async def __aenter__(self) -> ScriptedServer:
        self._server = await serve(self._handler, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()


@dataclass
class MemorySink:
    """Records by logical topic, in send order; `flushed` counts what was flushed."""

    records: list[tuple[str, dict[str, Any], bytes | None]] = field(default_factory=list)
    flushed: int = 0
    on_send: Callable[[MemorySink], None] | None = None

    def send(
        self, logical: str, value: dict[str, Any], key: bytes | None, *, schema: str | None = None
    ) -> None:
        self.records.append((logical, value, key))
        if self.on_send is not None:
            self.on_send(self)

    def flush(self) -> None:
        self.flushed = len(self.records)

    def values(self, logical: str) -> list[dict[str, Any]]:
        return [v for t, v, _ in self.records if t == logical]
