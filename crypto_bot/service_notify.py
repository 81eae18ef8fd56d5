"""systemd's notification protocol (sd_notify) for `Type=notify` units: READY=1 once the bot is set up, WATCHDOG=1
after each healthy cycle, STOPPING=1 when it stops, each with a STATUS= line for `systemctl status`.

Covers: the datagrams, sent with the standard library to the unix datagram socket systemd names in $NOTIFY_SOCKET
(a path, or `@name` for the abstract namespace), the watchdog period systemd asks for ($WATCHDOG_USEC, meant for
the process $WATCHDOG_PID names, or any when unset), and doing nothing when $NOTIFY_SOCKET is unset (not
under systemd, or another Type=).
Not covered: the unit itself (`deploy/systemd/crypto-bot.service`) and what makes a cycle healthy (the run loop
in `crypto_bot.cli` decides: every phase ended without an error).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)

NOTIFY_SOCKET_VARIABLE = "NOTIFY_SOCKET"
WATCHDOG_USEC_VARIABLE = "WATCHDOG_USEC"
WATCHDOG_PID_VARIABLE = "WATCHDOG_PID"


class ServiceNotifier:
    """Sends sd_notify datagrams to one socket address; with no address every call does nothing."""

    address: str | None
    watchdog_seconds: float | None

    def __init__(self, address: str | None, watchdog_seconds: float | None = None) -> None:
        self.address = address or None
        self.watchdog_seconds = watchdog_seconds
        self._socket: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] = os.environ, pid: int | None = None) -> ServiceNotifier:
        """The notifier systemd's variables describe (a disabled one outside a notify unit)."""
        return cls(environment.get(NOTIFY_SOCKET_VARIABLE), _watchdog_seconds(environment, os.getpid() if pid is None else pid))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str) -> None:
        """Start-up is done: systemd marks the unit active and starts the watchdog's clock."""
        self._send("READY=1", _status_field(status))

    def watchdog(self, status: str) -> None:
        """A healthy cycle ended: the keep-alive that resets systemd's watchdog."""
        self._send("WATCHDOG=1", _status_field(status))

    def stopping(self, status: str) -> None:
        self._send("STOPPING=1", _status_field(status))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, *assignments: str) -> None:
        if self.address is None:
            return
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(payload, _socket_address(self.address))
        except OSError as error:  # the bot keeps trading; systemd's watchdog will tell if this goes on
            log = logger.debug if self._failed else logger.warning
            self._failed = True
            log("cannot notify systemd at %s=%s: %s", NOTIFY_SOCKET_VARIABLE, self.address, error)


def _status_field(status: str) -> str:
    """STATUS= on one line: a newline would start another field, a NUL end the text."""
    return "STATUS=" + " ".join(status.replace("\0", " ").splitlines())


def _socket_address(address: str) -> str | bytes:
    """`@name` is the abstract namespace: a leading NUL byte on the wire (sd_notify(3))."""
    if address.startswith("@"):
        return b"\0" + address[1:].encode()
    return address


def _watchdog_seconds(environment: Mapping[str, str], pid: int) -> float | None:
    """The watchdog period systemd set for this process, or None (no WatchdogSec=, or meant for another pid)."""
    watchdog_pid = environment.get(WATCHDOG_PID_VARIABLE)
    if watchdog_pid and watchdog_pid != str(pid):
        return None
    try:
        microseconds = int(environment.get(WATCHDOG_USEC_VARIABLE, ""))
    except ValueError:
        return None
    return microseconds / 1e6 if microseconds > 0 else None
