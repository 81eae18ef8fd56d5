"""StatusServer: the bot's one HTTP server, on a daemon thread.

Routes: `GET /` (the status page) and `/static/*` (its script and style, shipped in this package:
nothing is fetched from the internet, and the Content-Security-Policy forbids it), `GET /health`
(200 or 503 with the reasons, JSON), `GET /api/status` (JSON), `GET /metrics` (Prometheus text).
Anything else is 404, a method other than GET or HEAD 405.

With a token (required beyond loopback, `server.token_variable`), /health, /api/status and /metrics
answer only requests with `Authorization: Bearer <token>`, compared in constant time; the page and
its assets hold no data and stay open, and the page asks for the token. The token is never logged
and never part of an answer.
"""

from __future__ import annotations

import hmac
import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import TYPE_CHECKING, Any

from crypto_bot.memory.metrics import BackgroundHTTPServer, HostHTTPServer

from .board import StatusBoard
from .config import base_url

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

logger = logging.getLogger(__name__)

__all__ = ["StatusServer"]

_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
_GUARDED = frozenset({"/health", "/api/status", "/metrics"})
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server_version = "crypto-bot"
    sys_version = ""
    status_server: StatusServer  # set on the subclass each server builds

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        try:
            if path in _GUARDED and not self.status_server.authorized(self.headers.get("Authorization")):
                self._send_json(HTTPStatus.UNAUTHORIZED, {"error": "a bearer token is required"},
                                {"WWW-Authenticate": 'Bearer realm="crypto-bot"'})
            elif path in _ASSETS:
                name, content_type = _ASSETS[path]
                self._send(HTTPStatus.OK, _asset(name), content_type)
            elif path == "/health":
                health = self.status_server.board.health()
                self._send_json(HTTPStatus(health.status_code), health.to_dict())
            elif path == "/api/status":
                self._send_json(HTTPStatus.OK, self.status_server.board.status())
            elif path == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                self._send(HTTPStatus.OK, generate_latest(self.status_server.registry), CONTENT_TYPE_LATEST)
            else:
                paths = [*_ASSETS, *sorted(_GUARDED)]
                self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}", "paths": paths})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left: nothing to answer
        except Exception:  # the boundary: a bad answer must not take the server thread (or the bot) down
            logger.exception("status server: %s failed", path)
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error; the bot's log says why"})

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def _refuse_method(self) -> None:
        self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "only GET"}, {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse_method  # noqa: N815

    def _send_json(self, status: HTTPStatus, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body, default=str).encode(), "application/json", headers)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        sent = {**_SECURITY_HEADERS, "Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}
        for name, value in sent.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        logger.debug("status server: %s %s", self.address_string(), format % args)


class StatusServer(BackgroundHTTPServer):
    """Serves a StatusBoard from a daemon thread until `shutdown()`; `port=0` picks a free port."""

    board: StatusBoard

    def __init__(
        self, board: StatusBoard, registry: CollectorRegistry, *, address: str, port: int, token: str | None
    ) -> None:
        self.board = board
        self.registry = registry
        self._expected = None if not token else f"Bearer {token}".encode()
        handler = type("Handler", (_Handler,), {"status_server": self})
        super().__init__(HostHTTPServer((address, port), handler), name="status-server")

    @property
    def url(self) -> str:
        """The status page's address (a wildcard bind is shown as this machine's loopback)."""
        return base_url(self.address, self.port)

    def authorized(self, authorization: str | None) -> bool:
        """No token configured, or the header carries it (constant-time comparison)."""
        if self._expected is None:
            return True
        return hmac.compare_digest((authorization or "").encode(), self._expected)
