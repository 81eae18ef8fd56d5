"""Reading a running bot's /api/status: what `crypto-bot status` and `crypto-bot memory stats` do.

Imports only the standard library, so those commands start in a fraction of a second.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from .config import ServerConfig


class BotUnreachable(Exception):
    """No bot answered at the address, or it refused the request; the message says what to do."""


def fetch_status(base_url: str, *, token: str | None, timeout_seconds: float = 10.0) -> dict[str, Any]:
    """GET `base_url`api/status as JSON; BotUnreachable naming the address when no bot answers."""
    url = base_url.rstrip("/") + "/api/status"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:  # noqa: S310 - the config's address
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 401:
            raise BotUnreachable(
                f"the bot at {base_url} requires a token: set the environment variable named by server.token_variable"
            ) from None
        raise BotUnreachable(f"the bot at {base_url} answered {url} with HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise BotUnreachable(
            f"no bot is running at {base_url} ({reason}): start one with `crypto-bot run` and server.enabled: true "
            "in its config, or give its address with --url"
        ) from None
    except ValueError as error:
        raise BotUnreachable(f"{url} did not answer JSON ({error}): is that address a crypto-bot server?") from None


def config_token(config: ServerConfig) -> str | None:
    """The token the config's server requires, from its environment variable (None when unset)."""
    return os.environ.get(config.token_variable) or None
