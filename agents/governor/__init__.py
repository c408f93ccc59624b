"""The portfolio governor: the one place where slot decisions are made."""
