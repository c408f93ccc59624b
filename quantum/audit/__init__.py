"""Checks that re-read committed logs and prove the platform's invariants held."""
