"""systemd's notify protocol, on a real unix datagram socket: READY=1 once the bot is set up, WATCHDOG=1 after each
healthy cycle, STOPPING=1 at the end; nothing without $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crypto_bot.service_notify import ServiceNotifier
from tests.bot.conftest import SUBPROCESS_TIMEOUT_SECONDS, crypto_bot


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound where systemd would put one: (its $NOTIFY_SOCKET value, the socket)."""
    path = tmp_path / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(5)
    yield str(path), receiver
    receiver.close()


def received(receiver: socket.socket) -> list[dict[str, str]]:
    """Every datagram waiting on the socket, each as its KEY=VALUE fields."""
    messages = []
    receiver.setblocking(False)
    try:
        while True:
            payload = receiver.recv(4096).decode()
            messages.append(dict(line.split("=", 1) for line in payload.split("\n")))
    except BlockingIOError:
        return messages


def test_ready_watchdog_and_stopping_arrive_as_datagrams(notify_socket: tuple[str, socket.socket]) -> None:
    address, receiver = notify_socket
    notifier = ServiceNotifier(address)
    notifier.ready("set up")
    notifier.watchdog("cycle 1 | fine\nsecond line")
    notifier.stopping("bye")
    notifier.close()
    assert received(receiver) == [
        {"READY": "1", "STATUS": "set up"},
        {"WATCHDOG": "1", "STATUS": "cycle 1 | fine second line"},
        {"STOPPING": "1", "STATUS": "bye"},
    ]


def test_an_at_sign_names_the_abstract_namespace() -> None:
    name = f"crypto-bot-test-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(b"\0" + name.encode())
    try:
        ServiceNotifier(f"@{name}").ready("abstract")
        assert receiver.recv(4096) == b"READY=1\nSTATUS=abstract"
    finally:
        receiver.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = ServiceNotifier.from_environment({})
    assert not notifier.enabled
    notifier.ready("nobody listens")  # no socket, no error


def test_a_vanished_socket_is_a_warning_not_a_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = ServiceNotifier(str(tmp_path / "gone"))
    notifier.watchdog("cycle 1")
    notifier.watchdog("cycle 2")
    assert [record.levelname for record in caplog.records] == ["WARNING"]


@pytest.mark.parametrize(
    ("environment", "seconds"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_period_is_read_for_this_process(environment: dict[str, str], seconds: float | None) -> None:
    assert ServiceNotifier.from_environment(environment, pid=4242).watchdog_seconds == seconds


def test_a_run_notifies_ready_once_then_a_watchdog_per_cycle_then_stopping(
    tmp_path: Path,
    config_file: Callable[..., Path],
    notify_socket: tuple[str, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address, receiver = notify_socket
    config = config_file()
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    process = crypto_bot(
        "run", "--no-supervisor", "--config", str(config), "--cycles", "3", "--interval", "0",
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    output, errors = process.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert process.returncode == 0, errors
    messages = received(receiver)
    kinds = [next(iter(message)) for message in messages]
    assert kinds == ["READY", "WATCHDOG", "WATCHDOG", "WATCHDOG", "STOPPING"]
    assert [message["STATUS"] for message in messages[1:4]] == [
        line for line in output.splitlines() if "| cycle " in line
    ]
