"""A loopback HTTP server that records what it is sent: the stand-in for a webhook and the Telegram Bot API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DELIVERY_WAIT_SECONDS = 30.0  # a bound on waiting for loopback deliveries (Notifier.flush), never what is asserted


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class Receiver:
    """Records each POST; answers `status`; while `gate` is cleared, holds every answer (a hung endpoint)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[Received] = []
        self.arrived = threading.Condition()
        self.gate = threading.Event()
        self.gate.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.gate.wait()
                with receiver.arrived:
                    receiver.requests.append(Received(self.path, dict(self.headers), json.loads(body)))
                    receiver.arrived.notify_all()
                answer = json.dumps({"ok": receiver.status == 200}).encode()
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def bodies(self) -> list[Any]:
        with self.arrived:
            return [request.body for request in self.requests]

    def close(self) -> None:
        self.gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()


@contextmanager
def receiving(status: int = 200) -> Iterator[Receiver]:
    receiver = Receiver(status)
    try:
        yield receiver
    finally:
        receiver.close()
