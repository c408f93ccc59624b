"""Execution ("apply"): governor decisions and exit intents in, exchange orders out.

`core.py` is pure; `ledger.py` is the durable per-intent idempotency ledger it reads;
docs/execution.md states every rule and how a shell must use the ledger.
"""
