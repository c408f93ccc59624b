"""Faust shell of the clock agent: market.ticks -> Clock commands on the portfolio topic."""

from __future__ import annotations

from typing import Any

from agents.clock.config import ClockConfig
from agents.clock.core import heartbeat
from agents.governor.codec import COMMAND_SCHEMA
from agents.runtime import AgentContext, guarded_events
from quantum.records import tagged
from topologies.declaration import MARKET_TICKS, PORTFOLIO, TOPOLOGY

TICK_SCHEMA = TOPOLOGY.topic(MARKET_TICKS).schema or ""


def register(ctx: AgentContext) -> None:
    source = ctx.raw_topic(MARKET_TICKS)
    config: ClockConfig = ctx.config or ClockConfig()
    every_ms = config.every_ms
    last: dict[int, int | None] = {}  # per tick partition; a restart may repeat one bucket

    async def handle(tick: dict[str, Any], event: Any) -> None:
        partition = event.message.partition
        last[partition], clock = heartbeat(last.get(partition), tick["close_time"], every_ms)
        if clock is not None:
            command = {"command": tagged(clock)}  # the Clock branch of the command union
            await ctx.send(PORTFOLIO, command, schema_file=COMMAND_SCHEMA, key=b"portfolio")

    @ctx.app.agent(source, name=ctx.name)
    async def clock(stream):  # type: ignore[no-untyped-def]
        async for _ in guarded_events(ctx, stream, schema_file=TICK_SCHEMA, handler=handle):
            pass
