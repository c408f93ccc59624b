"""Quantum Trader: a crypto-futures trading platform built as Kafka stream processors."""

__version__ = "0.1.0"
