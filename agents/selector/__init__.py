"""Selector: ranks signals per event-time window into trade intents, with every rejection
recorded (docs/selector.md). `core.py` is the pure decision, `config.py` its parameters."""
