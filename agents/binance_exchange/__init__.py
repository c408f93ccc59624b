"""The live Binance USD-M venue as an agent: orders in, execution reports out."""
