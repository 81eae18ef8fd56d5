"""The container's HEALTHCHECK command against a real HTTP server: 200 is healthy; 503, a refused connection and
a missing token are not."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crypto_bot.healthcheck import check
from tests.bot.conftest import REPO_ROOT, SUBPROCESS_TIMEOUT_SECONDS


class HealthServer(ThreadingHTTPServer):
    """Answers GET /health with `status`, or 401 without the bearer `token` when one is set."""

    status = 200
    token: str | None = None


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        authorised = self.server.token is None or self.headers.get("Authorization") == f"Bearer {self.server.token}"
        status = 404 if self.path != "/health" else self.server.status if authorised else 401
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[HealthServer]:
    running = HealthServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=running.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


def environment_for(server: HealthServer, **extra: str) -> dict[str, str]:
    return {"CRYPTO_BOT_HEALTH_PORT": str(server.server_address[1]), **extra}


def test_an_answer_200_is_healthy(server: HealthServer) -> None:
    assert check(environment_for(server))[0]


def test_an_answer_503_is_unhealthy_and_said(server: HealthServer) -> None:
    server.status = 503
    healthy, seen = check(environment_for(server))
    assert not healthy and "503" in seen


def test_the_bearer_token_is_sent_when_set(server: HealthServer) -> None:
    server.token = "s3cret"
    assert not check(environment_for(server))[0]
    assert check(environment_for(server, CRYPTO_BOT_SERVER_TOKEN="s3cret"))[0]


def test_no_server_is_unhealthy(server: HealthServer) -> None:
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    healthy, seen = check({"CRYPTO_BOT_HEALTH_PORT": str(port)})
    assert not healthy and str(port) in seen


def test_the_command_exits_0_or_1(server: HealthServer) -> None:
    command = [sys.executable, "-m", "crypto_bot.healthcheck"]
    environment = {**environment_for(server), "PYTHONPATH": str(REPO_ROOT)}
    assert subprocess.run(command, env=environment, capture_output=True, timeout=SUBPROCESS_TIMEOUT_SECONDS).returncode == 0
    server.status = 503
    assert subprocess.run(command, env=environment, capture_output=True, timeout=SUBPROCESS_TIMEOUT_SECONDS).returncode == 1
