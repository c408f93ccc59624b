"""Binance USD-M futures: the live counterpart of the paper exchange.

Pure parts (no I/O, no clock; time comes in): `errors` (an answer -> typed outcome),
`ratelimit` (the request governor), `userstream` (user-data stream events, fill dedup,
listen-key lifecycle), `rules_cache` (exchange rules with a refresh interval). The shell:
`credentials` (keys from the environment or a file, never printed) and `rest` (the REST
adapter over python-binance's `Client`). docs/binance.md describes the whole.
"""
