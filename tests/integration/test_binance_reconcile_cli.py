"""`quantum reconcile` on the real broker: our positions topic against Binance's book
(positionRisk, openOrders, openAlgoOrders replayed through python-binance by `responses`).
Exit 0 when they match, 1 with the diff printed when they do not."""

from __future__ import annotations

import json

import pytest
import responses

from quantum.app.cli import main
from quantum.serde import AvroSerde
from tests.integration.binance_fake import TESTNET, fixture
from tests.integration.venue_io import Feed
from topologies.apply import apply_topology
from topologies.declaration import POSITIONS

pytestmark = pytest.mark.broker

T0 = 1_767_225_600_000


def position(symbol: str, quantity: str, stop: str | None, status: str = "OPEN") -> dict:
    return {
        "symbol": symbol, "intent_id": "i1", "side": "LONG", "quantity": quantity,
        "entry_price": "95000.16", "mark_price": "95120", "leverage": 10,
        "isolated_margin": "95", "liquidation_price": None, "stop_loss": stop,
        "status": status, "realized_pnl": "0", "opened_at": T0, "updated_at": T0,
        "take_profit": None, "unrealized_pnl": "0", "fees": "0", "entry_quantity": quantity,
        "closed_at": None, "exit_reason": None,
    }  # fmt: skip


def exchange(rsps: responses.RequestsMock) -> None:
    for path, name in (
        ("/v3/positionRisk", "position_risk_v3.json"),
        ("/v1/openOrders", "open_orders_empty.json"),
        ("/v1/openAlgoOrders", "open_algo_orders.json"),
    ):
        doc = fixture(name)
        rsps.add("GET", f"{TESTNET}{path}", json=doc["body"], status=doc["status"])


@pytest.fixture
def cli_env(settings, monkeypatch):
    monkeypatch.setenv("QT_KAFKA__BOOTSTRAP", settings.kafka.bootstrap)
    monkeypatch.setenv("QT_REGISTRY__URL", settings.registry.url)
    monkeypatch.setenv("QT_BINANCE__API_KEY", "k" * 24)
    monkeypatch.setenv("QT_BINANCE__API_SECRET", "s" * 24)
    assert apply_topology(settings).ok
    feed = Feed(settings, AvroSerde.from_settings(settings))
    return settings, feed


def run_cli(settings, *args: str) -> int:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        exchange(rsps)
        return main(["--topic-prefix", settings.kafka.topic_prefix, "reconcile", *args])


def test_matching_books_exit_0(cli_env, capsys) -> None:
    settings, feed = cli_env
    feed.send(POSITIONS, position("ETHUSDT", "0.3", None, "CLOSED"), b"ETHUSDT")
    feed.send(POSITIONS, position("BTCUSDT", "0.010", "93100"), b"BTCUSDT")
    feed.flush()
    assert run_cli(settings) == 0
    assert "clean" in capsys.readouterr().out


def test_a_mismatch_exits_1_and_prints_the_diff(cli_env, capsys) -> None:
    settings, feed = cli_env
    feed.send(POSITIONS, position("BTCUSDT", "0.020", "93100"), b"BTCUSDT")
    feed.send(POSITIONS, position("SOLUSDT", "2", None), b"SOLUSDT")
    feed.flush()
    assert run_cli(settings, "--json") == 1
    diff = json.loads(capsys.readouterr().out)
    assert [(m["kind"], m["symbol"]) for m in diff] == [
        ("POSITION_DIFFERS", "BTCUSDT"),
        ("POSITION_MISSING", "SOLUSDT"),
    ]
