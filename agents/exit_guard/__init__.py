"""Exit guard: price TP/SL, margin-PnL% exit, liquidation-proximity guard, time stop; and the
account drawdown circuit breaker."""
