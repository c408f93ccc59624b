"""Market regime (TREND_STRONG / BASE / CHOP) for the governor's active slots."""
