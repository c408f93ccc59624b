"""Per-symbol features from closed klines: the same incremental code live and in replay."""
