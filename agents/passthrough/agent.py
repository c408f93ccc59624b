"""Faust shell of the pass-through agent: market.ticks -> smoke.passthrough."""

from __future__ import annotations

from typing import Any

from agents.passthrough.core import relay
from agents.runtime import AgentContext, guarded_events
from topologies.declaration import MARKET_TICKS, PASSTHROUGH_OUT, TOPOLOGY

SCHEMA = TOPOLOGY.topic(MARKET_TICKS).schema or ""


def register(ctx: AgentContext) -> None:
    source = ctx.raw_topic(MARKET_TICKS)

    async def handle(tick: dict[str, Any], _event: Any) -> None:
        key, value = relay(tick)
        await ctx.send(PASSTHROUGH_OUT, value, schema_file=SCHEMA, key=key)

    @ctx.app.agent(source, name=ctx.name)
    async def passthrough(stream):  # type: ignore[no-untyped-def]
        universe = ctx.settings.market.universe_or_none()
        async for _ in guarded_events(
            ctx, stream, schema_file=SCHEMA, handler=handle, universe=universe
        ):
            pass
