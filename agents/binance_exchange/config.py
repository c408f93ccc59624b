"""Live venue parameters: which venue runs (section `venue`) and how the Binance agent
talks to Binance (section `binance_exchange`)."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

DAY_MS = 24 * 60 * 60 * 1000


class VenueConfig(BaseModel):
    """Which exchange sits behind the `orders` topic (section `venue`, env `QT_VENUE__KIND`).

    kind: "paper" (default). "paper": the paper exchange agent fills orders on closed bars
        (backtests, the demo, paper trading). "binance": the binance_exchange agent sends
        them to Binance USD-M (the testnet unless binance_exchange.mainnet). Each venue
        agent refuses to start under the other kind, so one worker can never run both
        and answer every order twice.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["paper", "binance"] = "paper"


class BinanceVenueConfig(BaseModel):
    """The Binance venue agent (section `binance_exchange`, env `QT_BINANCE_EXCHANGE__*`).

    mainnet: False. True sends real orders with real money; the testnet
        (testnet.binancefuture.com) is the default and mainnet needs this explicit flag.
    margin_type: "ISOLATED". Set once per symbol before its first entry; the liquidation
        maths and the positions agent's isolated margin assume it.
    lookup_before_send: True. An order whose client id is not in the agent's table is
        looked up at Binance before it is placed: the table is written after the record
        (agents/stateful.py), so an order placed just before a crash is not in it, and the
        lookup is what keeps its redelivery from placing it again (1 weight per order).
    max_wait_ms: 60000. Longest total pause for one order when the rate governor or a 429
        says wait (one minute window, docs/binance.md); beyond it the order is REJECTED
        (RATE_LIMITED), which is safe: a held-back request never left.
    lookup_attempts: 5. Lookups by client id after an unknown outcome (timeout, 5xx)
        before the order is left UNRESOLVED with an alert (asked again when it comes again).
    lookup_backoff_ms: 1000. Pause between those lookups; Binance may need a moment to
        show an order whose answer was lost.
    timeout_s: 10.0. HTTP timeout of each REST call; a read timeout is an unknown outcome.
    working_type: "MARK_PRICE". What triggers protective stops (mark, not last price, so a
        wick on thin trades does not stop a position out).
    quote_asset: "USDT". Commission asset named in reports that carry no commission.
    order_memory_ms: 259200000 (3 days). How long a finished client id is remembered,
        as the paper exchange does; Binance itself forgets unfilled ended orders then.
    order_memory_max: 20000. At most this many finished ids are remembered.
    fill_memory_ms: 604800000 (7 days). How long a fill's key (symbol, trade id, order id)
        is remembered to drop its copies: longer than any resync reaches back (userTrades
        answers at most a 7-day window).
    rest_url: None. Binance's own REST base (testnet or mainnet) unless set; may only name
        a loopback host (e.g. http://127.0.0.1:8765/fapi, a local replay of recorded
        answers): the signed requests carry the API key, so they never go anywhere else.
    ws_url: None. Binance's own user-data websocket base (testnet or mainnet) unless set;
        loopback only, like rest_url (a local replay of the stream; the path carries the
        listen key).
    reconcile_every_ms: 60000. The reconciliation loop's period (`quantum reconcile
        --loop`); one positionRisk + openOrders + openAlgoOrders (weight 46) a minute.
    """

    model_config = ConfigDict(frozen=True)

    mainnet: bool = False
    margin_type: Literal["ISOLATED", "CROSSED"] = "ISOLATED"
    lookup_before_send: bool = True
    max_wait_ms: int = Field(60_000, ge=0)
    lookup_attempts: int = Field(5, ge=1)
    lookup_backoff_ms: int = Field(1_000, ge=0)
    timeout_s: float = Field(10.0, gt=0)
    working_type: Literal["MARK_PRICE", "CONTRACT_PRICE"] = "MARK_PRICE"
    quote_asset: str = "USDT"
    order_memory_ms: int = Field(3 * DAY_MS, ge=0)
    order_memory_max: int = Field(20_000, ge=1)
    fill_memory_ms: int = Field(7 * DAY_MS, ge=0)
    rest_url: str | None = None
    ws_url: str | None = None
    reconcile_every_ms: int = Field(60_000, ge=1_000)

    @field_validator("rest_url", "ws_url")
    @classmethod
    def _loopback_only(cls, url: str | None, info: ValidationInfo) -> str | None:
        if url is None:
            return None
        host = urlparse(url).hostname or ""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"{info.field_name} must be a loopback address, not {host!r}")
        return url


class VenueKindError(RuntimeError):
    """The venue agent asked for is not the configured one (`venue.kind`)."""


def check_venue_kind(settings: Any, wanted: str) -> None:
    """Refuse to run a venue agent that is not the configured venue: two venues behind
    one `orders` topic would answer every order twice."""
    venue: VenueConfig = getattr(settings, "venue", None) or VenueConfig()
    if venue.kind != wanted:
        raise VenueKindError(
            f"venue.kind is {venue.kind!r}: the {wanted} venue agent does not run "
            f"(set QT_VENUE__KIND={wanted} to use it)"
        )
