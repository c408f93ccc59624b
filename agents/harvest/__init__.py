"""Harvest: the R-multiple profit ladder, break-even and trailing stops of open positions."""
