"""A real `redis-server` for the fleet's tests: on a free loopback port, in a temporary directory, bounded.

`RedisServer` starts Debian's redis-server (found on PATH; `scripts/_venv.sh` installs it) with no
persistence (`--save '' --appendonly no`), a `maxmemory` and `volatile-ttl`, optionally a password
or TLS only (a self-signed certificate made with openssl), and can be killed (SIGKILL) and started
again on the same port, empty, as after a crash. Without redis-server the
tests skip, except under CI (CI=true), where they fail: a missing install step must not pass green.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_ATTEMPTS = 200  # readiness checks, 10 ms apart
MAXMEMORY_BYTES = 32 * 1024 * 1024


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """One redis-server process on 127.0.0.1:`port`; `kill()` and `start()` again to crash and restart it."""

    def __init__(
        self, executable: str, directory: Path, *, maxmemory_bytes: int = MAXMEMORY_BYTES, password: str | None = None,
        certificate: Path | None = None,
    ) -> None:
        self.executable = executable
        self.password = password
        self.certificate = certificate  # a PEM with the key beside it (`self_signed_certificate`): TLS only
        self.directory = directory
        self.port = _free_port()
        self.maxmemory_bytes = maxmemory_bytes
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.certificate is None:
            listen = ["--port", str(self.port)]
        else:
            key = str(self.certificate.with_suffix(".key"))
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.certificate),
                      "--tls-key-file", key, "--tls-ca-cert-file", str(self.certificate), "--tls-auth-clients", "no"]
        self.process = subprocess.Popen(
            [
                self.executable, *listen, "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "no", "--maxmemory", str(self.maxmemory_bytes),
                "--maxmemory-policy", "volatile-ttl", "--protected-mode", "yes",
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(START_ATTEMPTS):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode} on port {self.port}")
            if self._answers():
                return
            time.sleep(0.01)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def _answers(self) -> bool:
        """Whether the server answers PING (with a password: asks for it), over TLS when it has a certificate."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.1) as plain:
                connection = plain
                if self.certificate is not None:
                    context = ssl.create_default_context(cafile=str(self.certificate))
                    connection = context.wrap_socket(plain, server_hostname="127.0.0.1")
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is saved (there is no persistence anyway)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def self_signed_certificate(directory: Path) -> Path:
    """A certificate for 127.0.0.1 (PEM) with its key beside it (.key), made with openssl; skips without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not on PATH: no certificate for the TLS test")
    certificate = directory / "redis.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(certificate.with_suffix(".key")),
         "-out", str(certificate)],
        check=True, capture_output=True,
    )
    return certificate


def redis_executable() -> str:
    """redis-server's path; skips the test without one (fails under CI, where the scripts install it)."""
    executable = shutil.which("redis-server")
    if executable is None:
        message = "redis-server is not on PATH (scripts/_venv.sh installs Debian's redis-server as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return executable


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server of the test's own, stopped at teardown."""
    directory = tmp_path / "redis"
    directory.mkdir()
    with RedisServer(redis_executable(), directory) as server:
        yield server
