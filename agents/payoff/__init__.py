"""Payoff analyser: exit ladders compared in R (expectancy, profit factor, breakeven win rate)."""
