"""Agents: each one a pure decision core (`core.py`) plus a thin Kafka shell."""
