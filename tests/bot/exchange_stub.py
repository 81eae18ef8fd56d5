"""A loopback HTTP server that plays Binance's spot REST API, with faults on demand.

It answers exchangeInfo, time and klines the way Binance does (klines from `startTime`, capped at
`max_limit` per request, the still-open candle included, a Date header from its own clock), and
records every request, and when by its own clock (`arrivals_ms`, for request rates). Faults are
queued (`faults`, one per klines request) or standing (`outage`, every request until cleared): an
HTTP status with body and headers, a hang longer than the client's timeout, a dropped connection, a
raw body (garbage or truncated JSON), or explicit candle rows.
`missing_opens` leaves candles out (a gap). Tests and `bench/bench_rest_calls.py` use it; nothing
in it reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOUR_MS = 3_600_000
INTERVAL_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": HOUR_MS, "4h": 4 * HOUR_MS, "1d": 24 * HOUR_MS}
SERVER_NOW_MS = 1_704_067_200_000 + 10 * HOUR_MS  # 2024-01-01T10:00:00Z: the 10:00 candle is open
BINANCE_MAX_LIMIT = 1000


def binance_symbol(base: str, quote: str, status: str = "TRADING") -> dict[str, Any]:
    """The fields of one exchangeInfo entry that ccxt's Binance market parser reads."""
    return {
        "symbol": base + quote,
        "status": status,
        "baseAsset": base,
        "quoteAsset": quote,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "orderTypes": ["LIMIT", "MARKET"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "permissions": ["SPOT"],
        "filters": [],
    }


def marker(open_ms: int, length_ms: int) -> int:
    """1..24: the candle's number within its day of candles (for 1h, the hour of day + 1); prices are built on it."""
    return (open_ms // length_ms) % 24 + 1


def kline(open_ms: int, length_ms: int = HOUR_MS) -> list[Any]:
    """A Binance kline: open m.5, high m+1, low m, close m.75, volume 12.5, for m = `marker`."""
    m = marker(open_ms, length_ms)
    return [open_ms, f"{m}.5", f"{m + 1}", f"{m}", f"{m}.75", "12.5", open_ms + length_ms - 1, "0", 7, "0", "0", "0"]


@dataclass
class Fault:
    """One bad answer: `status`/`body`/`headers`; `raw` bytes instead of JSON; `hang_seconds` before
    answering; `drop` the connection without an answer; `rows` as the klines answer."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    hang_seconds: float = 0.0
    drop: bool = False
    rows: list[Any] | None = None


def rate_limited(retry_after_seconds: int | None = None) -> Fault:
    headers = {} if retry_after_seconds is None else {"Retry-After": str(retry_after_seconds)}
    return Fault(status=429, body={"code": -1003, "msg": "Too many requests."}, headers=headers)


def unavailable() -> Fault:
    return Fault(status=503, raw=b"Service Unavailable")


class FakeBinance(BaseHTTPRequestHandler):
    """Answers exchangeInfo, time and klines like Binance; records every request it sees."""

    server: LoopbackBinance

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        server = self.server
        with server.lock:
            server.requests.append((url.path, query))
            server.arrivals_ms.append(server.now_ms)
            fault = server.outage
            if fault is None and url.path == "/api/v3/klines" and server.faults:
                fault = server.faults.popleft()
        if fault is not None and self.fault(fault, url.path, query):
            return
        if url.path == "/api/v3/exchangeInfo":
            self.reply({"timezone": "UTC", "serverTime": server.now_ms, "rateLimits": [], "symbols": server.symbols})
        elif url.path == "/api/v3/time":
            self.reply({"serverTime": server.now_ms})
        elif url.path in ("/sapi/v1/margin/allPairs", "/sapi/v1/margin/isolated/allPairs"):
            if server.echo_credentials:  # as some exchanges do: the key and the signed URL in the error
                message = f"Invalid API-key {self.headers.get('X-MBX-APIKEY')}, IP, or permissions; request {self.path}"
                self.reply({"code": -2015, "msg": message}, status=401)
            else:
                self.reply([])
        elif url.path == "/api/v3/klines" and query.get("interval") in INTERVAL_MS:
            if query.get("symbol") not in {entry["symbol"] for entry in server.symbols}:
                self.reply({"code": -1121, "msg": "Invalid symbol."}, status=400)
            else:
                self.reply(server.klines(query))
        else:
            self.reply({"code": -1100, "msg": "unexpected request"}, status=400)

    def fault(self, fault: Fault, path: str, query: dict[str, str]) -> bool:
        """Play `fault`; False when only its delay applied and the normal answer follows."""
        if fault.hang_seconds:
            time.sleep(fault.hang_seconds)
        if fault.drop:
            self.close_connection = True
            self.connection.shutdown(2)
            return True
        if fault.rows is not None:
            self.reply(fault.rows)
        elif fault.raw is not None:
            self.send(fault.status, fault.raw, fault.headers)
        elif fault.body is not None or fault.status != 200:
            self.reply(fault.body, status=fault.status, headers=fault.headers)
        else:
            return False
        return True

    def reply(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps(body).encode(), headers or {})

    def send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header from the server's clock, not the machine's (clock-skew tests)."""
        return formatdate(self.server.now_ms / 1000, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


class LoopbackBinance(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeBinance)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.arrivals_ms: list[int] = []  # the server's clock at each request of `requests` (request rates)
        self.echo_credentials = False
        self.clock_ms: Callable[[], int] = lambda: SERVER_NOW_MS
        self.max_limit = BINANCE_MAX_LIMIT
        self.first_open_ms = 0  # no candle opens before this (a listing date)
        self.missing_opens: set[int] = set()
        self.faults: deque[Fault] = deque()
        self.outage: Fault | None = None
        self.symbols = [
            binance_symbol("BTC", "USDT"),
            binance_symbol("ETH", "BTC"),
            binance_symbol("LUNA", "USDT", "BREAK"),
        ]

    @property
    def now_ms(self) -> int:
        """The exchange's clock (`clock_ms`, a fixed time unless a test sets one)."""
        return self.clock_ms()

    @now_ms.setter
    def now_ms(self, value: int) -> None:
        self.clock_ms = lambda: value

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def klines(self, query: dict[str, str]) -> list[list[Any]]:
        """Binance's klines: `limit` (capped) candles from `startTime`, else the newest, the open one included."""
        length_ms = INTERVAL_MS[query["interval"]]
        current_open_ms = self.now_ms // length_ms * length_ms
        limit = min(int(query.get("limit", 500)), self.max_limit)
        if "startTime" in query:
            first_ms = max(-(-int(query["startTime"]) // length_ms) * length_ms, self.first_open_ms)
            opens = (o for o in range(first_ms, current_open_ms + 1, length_ms) if o not in self.missing_opens)
            chosen = [o for _, o in zip(range(limit), opens, strict=False)]
        else:
            newest = (o for o in range(current_open_ms, self.first_open_ms - 1, -length_ms) if o not in self.missing_opens)
            chosen = sorted(o for _, o in zip(range(limit), newest, strict=False))
        return [kline(open_ms, length_ms) for open_ms in chosen]

    def klines_requests(self) -> list[dict[str, str]]:
        with self.lock:
            return [query for path, query in self.requests if path == "/api/v3/klines"]

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.requests]


@contextmanager
def running_server() -> Iterator[LoopbackBinance]:
    httpd = LoopbackBinance()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), name="loopback-binance", daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


LOOPBACK_CONFIG: dict[str, Any] = {
    # Only the spot exchangeInfo endpoint is needed to load markets; no currencies, no margin pairs.
    "options": {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False, "fetchCurrencies": False},
    # Keep tests fast: a 1 ms rate-limit interval (still throttled) and no grace sleep on close.
    "rateLimit": 1,
    "timeout_on_exit": 0,
}


def point_at(market: Any, server: LoopbackBinance) -> None:
    """Send every Binance API URL of `market`'s ccxt exchange to `server`."""
    api_urls = market.exchange.urls["api"]
    for name, url in api_urls.items():
        api_urls[name] = server.base_url + urlsplit(url).path
