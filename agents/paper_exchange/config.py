"""Paper exchange agent parameters: the exchange's own (exchange/config.py) plus its memory
of client order ids."""

from __future__ import annotations

from pydantic import Field

from exchange.config import PaperExchangeConfig

DAY_MS = 24 * 60 * 60 * 1000


class PaperVenueConfig(PaperExchangeConfig):
    """The paper exchange behind the `orders` topic (section `paper_exchange`).

    Every field of `exchange.config.PaperExchangeConfig` (fees, slippage, intrabar path,
    leverage, funding, initial balance; docs/paper-exchange.md has their defaults and
    why), plus how long the agent remembers the client order ids it received, so that a
    resent order is answered with the original's status instead of being placed again:

    order_memory_ms: 259200000 (3 days of event time). A finished order (filled, rejected,
        canceled, expired) is forgotten this long after it finished. Binance answers a
        lookup by client order id for 3 days for orders that ended without a fill (90 for
        the rest); the execution agent resends only orders its ledger still has as SENT,
        i.e. orders it sent moments before a crash, so 3 days is far beyond any resend.
    order_memory_max: 20000. At most this many finished orders are remembered; beyond it
        the oldest finished go first (about 1 KB each in memory). Open orders are never
        forgotten: the exchange itself still holds them.
    """

    order_memory_ms: int = Field(3 * DAY_MS, ge=0)
    order_memory_max: int = Field(20_000, ge=1)
