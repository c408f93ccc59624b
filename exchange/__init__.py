"""Exchange rules, margin maths and the paper exchange: pure code, no Kafka, no clock.

Layering: this package imports only the standard library and the shared kit (`quantum`);
agents and topologies import it, never the other way round.

- `exchange.rules`: Binance USD-M symbol filters (`SymbolRules`, `ExchangeRules`) parsed from
  `GET /fapi/v1/exchangeInfo` and `GET /fapi/v1/leverageBracket`, exact-Decimal rounding
  helpers and typed rejection reasons. `ExchangeRules.bundled()` loads the recorded rules
  of the sample symbols (`data/exchange/binance-usdm-rules.json`).
- `exchange.margin`: maintenance-margin brackets, initial/maintenance margin, unrealized
  PnL, margin-PnL % and liquidation prices (isolated and cross, one-way mode).
- `exchange.model`: sides, order types, the bar type, the paper exchange's commands and events.
- `exchange.config`: `PaperExchangeConfig` (fees, slippage, intrabar rule, funding).
- `exchange.paper`: `PaperExchange`, a deterministic bar-driven exchange simulator.
- `exchange.binance`: the live Binance USD-M adapter's parts (answer classification, rate
  governor, user-data stream, rules cache, keys, the REST adapter); docs/binance.md.

docs/exchange-rules.md and docs/paper-exchange.md state every rule and every source.
"""
