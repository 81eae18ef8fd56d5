"""ServerConfig: the `server:` section, the bot's one HTTP server (status page, API, health, metrics).

Covers the section's keys. Not covered: whether the token's environment variable is set for a
non-loopback address (`crypto_bot.settings` checks the environment), or serving (`server.py`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from crypto_bot.memory.config import ConfigSection, setting


@dataclass(frozen=True)
class ServerConfig(ConfigSection):
    """Where the server listens, the token that guards it, and what /health and the chart look at."""

    key_prefix: ClassVar[str] = "server."

    enabled: bool = setting(False, "serve the status page, /api/status, /health and /metrics (Prometheus)", bool)
    address: str = setting(
        "127.0.0.1", "the address it binds; any but loopback needs the token (server.token_variable)", str
    )
    port: int = setting(9108, "the TCP port (0: a free one, printed at start)", int, minimum=0, maximum=65535)
    token_variable: str = setting(
        "CRYPTO_BOT_SERVER_TOKEN",
        "environment variable holding the bearer token the API, /health and /metrics then require (never the token)",
        str,
    )
    stall_intervals: float = setting(
        3.0, "/health answers 503 when no cycle ended within this many cycle periods (interval + cycle time)",
        float, minimum=1, maximum=1000,
    )
    history_minutes: float = setting(
        360.0, "minutes of memory readings the status page's chart shows", float, minimum=1, maximum=7 * 24 * 60
    )

    @property
    def loopback(self) -> bool:
        return is_loopback(self.address)


def is_loopback(address: str) -> bool:
    """Whether `address` (a host name or IP) only ever reaches this machine."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def base_url(address: str, port: int) -> str:
    """The URL a server bound to `address`:`port` is reached at (a wildcard bind on this machine's loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
