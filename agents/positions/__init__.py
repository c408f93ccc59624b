"""Positions: execution reports and marks in, the position per symbol and closed trades out.

`core.py` is pure; docs/execution.md ("Positions") states the rules.
"""
