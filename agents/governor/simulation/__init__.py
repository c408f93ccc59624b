"""Deterministic discrete-event simulations (event time only, seeded randomness)."""
