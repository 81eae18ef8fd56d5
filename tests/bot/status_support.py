"""A real bot served on 127.0.0.1: the `serve` fixture the status server and page tests share."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from crypto_bot.settings import parse_settings
from crypto_bot.status import StatusBoard
from crypto_bot.status.prometheus import build_registry
from crypto_bot.status.server import StatusServer
from tests.bot.support import Session
from tests.fakes import FakeClock


@dataclass
class Served:
    session: Session
    board: StatusBoard
    server: StatusServer
    clock: FakeClock

    def cycles(self, count: int = 1) -> None:
        for _ in range(count):
            started = time.perf_counter()
            self.session.cycle()
            self.board.record_cycle(self.session.bot, time.perf_counter() - started)

    def get(self, path: str, token: str | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.server.url.rstrip("/") + path, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def json(self, path: str, token: str | None = None) -> tuple[int, Any]:
        status, _, body = self.get(path, token)
        return status, json.loads(body)


@pytest.fixture
def serve(start: Callable[..., Session], config_dict: Callable[..., dict[str, Any]]) -> Iterator[Callable[..., Served]]:
    """`serve(token=None, **sections)`: a prepared bot, its board (on a FakeClock) and its server on a free port."""
    servers: list[StatusServer] = []

    def build(token: str | None = None, **sections: Any) -> Served:
        settings = parse_settings(config_dict(server={"enabled": True, "port": 0}, **sections))
        session = start(settings)
        clock = FakeClock()
        board = StatusBoard(
            settings.server, memory=session.bot.memory, notifier=session.bot.notifier, interval_seconds=1.0, clock=clock
        )
        server = StatusServer(board, build_registry(board), address="127.0.0.1", port=0, token=token)
        servers.append(server)
        return Served(session, board, server, clock)

    yield build
    for server in servers:
        server.shutdown()
