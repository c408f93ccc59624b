"""Sizing: trade intents -> sizes within risk and exposure caps, on the exchange filters."""
