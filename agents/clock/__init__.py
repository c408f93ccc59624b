"""Clock: turns market event time into the governor's `Clock` heartbeats."""
