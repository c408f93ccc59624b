"""The knobs that point a backtest's Binance adapter at a local replay: the venue choice
of `Backtest` and the loopback-only REST and websocket bases."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agents.binance_exchange.config import BinanceVenueConfig
from quantum.app.backtest.run import pipeline_agents


def test_a_backtest_runs_exactly_one_venue() -> None:
    paper, binance = pipeline_agents(), pipeline_agents("binance")
    assert "paper_exchange" in paper and "binance_exchange" not in paper
    assert "binance_exchange" in binance and "paper_exchange" not in binance
    assert set(paper) - {"paper_exchange"} == set(binance) - {"binance_exchange"}
    assert "passthrough" not in paper + binance
    with pytest.raises(ValueError, match="unknown venue"):
        pipeline_agents("kraken")


@pytest.mark.parametrize("field", ["rest_url", "ws_url"])
def test_local_bases_are_loopback_only(field: str) -> None:
    local = "http://127.0.0.1:8765/fapi" if field == "rest_url" else "ws://127.0.0.1:8766"
    assert getattr(BinanceVenueConfig(**{field: local}), field) == local
    with pytest.raises(ValidationError, match=f"{field} must be a loopback address"):
        BinanceVenueConfig(**{field: "wss://fstream.example.com"})
