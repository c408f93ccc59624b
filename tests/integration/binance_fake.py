"""A replaying Binance USD-M for python-binance's real `Client`, through `responses`.

Answers come from the reconstructed fixtures (tests/fixtures/binance/rest), with the
request's own ids echoed (client order id, client algo id, symbol, side, quantity,
trigger) so the adapter's checks hold; `fail_next(method, path, fixture)` queues a
recorded failure (429, 418, 503, -4164, ...) for the next such request. The fake keeps
the orders it accepted, so a lookup by client id answers as Binance would (-2013 for an
id it never saw)."""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import responses

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "rest"
TESTNET = "https://testnet.binancefuture.com/fapi"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIX / name).read_text())


def params(request: Any) -> dict[str, str]:
    raw = request.body or urlparse(request.url).query
    if isinstance(raw, bytes):
        raw = raw.decode()
    return {k: v[0] for k, v in parse_qs(raw).items()}


class FakeBinance:
    """Pass a `responses` mock to answer python-binance in this process, or call
    `serve()` for a real HTTP server on 127.0.0.1 (another process's python-binance)."""

    def __init__(self, rsps: responses.RequestsMock | None = None, base: str = TESTNET) -> None:
        self.base = base
        self.orders: dict[str, dict[str, Any]] = {}  # client id -> order body
        self.algos: dict[str, dict[str, Any]] = {}  # client algo id -> algo body
        self.failures: dict[tuple[str, str], deque[str]] = defaultdict(deque)
        self.sent: list[tuple[str, str, dict[str, str]]] = []  # method, path, params
        self.on_request: Any = None  # (method, path) -> None, before the answer
        self._next_id = 4611875134427365377
        self._lock = threading.Lock()
        self.routes = {
            ("GET", "/v1/order"): self._query_order,
            ("POST", "/v1/order"): self._new_order,
            ("GET", "/v1/algoOrder"): self._query_algo,
            ("POST", "/v1/algoOrder"): self._new_algo,
            ("DELETE", "/v1/algoOrder"): self._cancel_algo,
            ("POST", "/v1/marginType"): lambda p: self._replay("margin_type_ok.json"),
            ("POST", "/v1/leverage"): self._leverage,
        }
        if rsps is not None:
            for method, path in self.routes:
                rsps.add_callback(method, f"{base}{path}", callback=self._callback(method, path))

    def handle(self, method: str, path: str, p: dict[str, str]) -> tuple[int, dict, str]:
        """The answer to one request (status, headers, JSON text)."""
        with self._lock:
            self.sent.append((method, path, p))
            if self.on_request is not None:
                self.on_request(method, path)
            queued = self.failures[(method, path)]
            if queued:
                return self._replay(queued.popleft())
            route = self.routes.get((method, path))
            if route is None:
                return 404, {}, json.dumps({"code": -1, "msg": f"no route {method} {path}"})
            return route(p)

    def _callback(self, method: str, path: str) -> Any:
        return lambda request: self.handle(method, path, params(request))

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        """A real HTTP server on 127.0.0.1 answering like `handle`; (server, REST base URL).
        Stop it with `server.shutdown()`."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                p = {k: v[0] for k, v in parse_qs(url.query or body).items()}
                if body and url.query:
                    p.update({k: v[0] for k, v in parse_qs(body).items()})
                status, headers, text = fake.handle(self.command, url.path.removeprefix("/fapi"), p)
                data = text.encode()
                self.send_response(status)
                for k, v in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}/fapi"

    def fail_next(self, method: str, path: str, name: str) -> None:
        self.failures[(method, path)].append(name)

    def calls(self, method: str, path: str) -> list[dict[str, str]]:
        return [p for m, q, p in self.sent if (m, q) == (method, path)]

    @staticmethod
    def _replay(name: str, body: Any = None) -> tuple[int, dict[str, str], str]:
        doc = fixture(name)
        headers = {k: v for k, v in doc["headers"].items() if k != "Content-Type"}
        return doc["status"], headers, json.dumps(doc["body"] if body is None else body)

    def _query_order(self, p: dict[str, str]) -> tuple[int, dict[str, str], str]:
        order = self.orders.get(p.get("origClientOrderId", ""))
        if order is None:
            return self._replay("query_order_2013.json")
        return self._replay("query_order_filled.json", order)

    def _new_order(self, p: dict[str, str]) -> tuple[int, dict[str, str], str]:
        coid = p["newClientOrderId"]
        if coid in self.orders and self.orders[coid]["status"] not in ("FILLED", "CANCELED"):
            return self._replay("order_4116.json")
        body = dict(fixture("order_market_filled.json")["body"])
        self._next_id += 1
        body.update(
            orderId=self._next_id,
            clientOrderId=coid,
            symbol=p["symbol"],
            side=p["side"],
            origQty=p["quantity"],
            executedQty=p["quantity"],
            reduceOnly=p.get("reduceOnly") == "true",
        )
        self.orders[coid] = body
        return self._replay("order_market_filled.json", body)

    def _query_algo(self, p: dict[str, str]) -> tuple[int, dict[str, str], str]:
        algo = self.algos.get(p.get("clientAlgoId", ""))
        if algo is None:
            return self._replay("query_order_2013.json")
        return self._replay("algo_order_new.json", algo)

    def _new_algo(self, p: dict[str, str]) -> tuple[int, dict[str, str], str]:
        body = dict(fixture("algo_order_new.json")["body"])
        self._next_id += 1
        body.update(
            algoId=self._next_id,
            clientAlgoId=p["clientAlgoId"],
            symbol=p["symbol"],
            side=p["side"],
            orderType=p["type"],
            quantity=p["quantity"],
            triggerPrice=p["triggerPrice"],
        )
        self.algos[p["clientAlgoId"]] = body
        return self._replay("algo_order_new.json", body)

    def _cancel_algo(self, p: dict[str, str]) -> tuple[int, dict[str, str], str]:
        algo = self.algos.get(p.get("clientAlgoId", ""))
        if algo is None or algo["algoStatus"] != "NEW":
            return self._replay("algo_cancel_2011.json")
        algo["algoStatus"] = "CANCELED"
        body = {**fixture("algo_cancel_ok.json")["body"], "clientAlgoId": p["clientAlgoId"]}
        return self._replay("algo_cancel_ok.json", body)

    def _leverage(self, p: dict[str, str]) -> tuple[int, dict[str, str], str]:
        body = {**fixture("leverage_ok.json")["body"], "leverage": int(p["leverage"])}
        body["symbol"] = p["symbol"]
        return self._replay("leverage_ok.json", body)

    def fill_event(self, client_order_id: str, trade_id: int, at: int) -> dict[str, Any]:
        """The ORDER_TRADE_UPDATE of the whole fill of an accepted order."""
        o = self.orders[client_order_id]
        return {
            "e": "ORDER_TRADE_UPDATE", "E": at + 5, "T": at,
            "o": {
                "s": o["symbol"], "c": client_order_id, "S": o["side"], "o": "MARKET",
                "f": "GTC", "q": o["origQty"], "p": "0", "ap": o["avgPrice"], "sp": "0",
                "x": "TRADE", "X": "FILLED", "i": o["orderId"], "l": o["origQty"],
                "z": o["origQty"], "L": o["avgPrice"], "n": "0.38", "N": "USDT", "T": at,
                "t": trade_id, "m": False, "R": o["reduceOnly"], "ps": "BOTH", "rp": "0",
            },
        }  # fmt: skip
