"""`python -m crypto_bot.healthcheck`: exit 0 when the bot's status server answers `GET /health` with 200, else 1.

For the container's HEALTHCHECK (slim images have no curl): the standard library only, none of the bot. The
address is `http://$CRYPTO_BOT_HEALTH_HOST:$CRYPTO_BOT_HEALTH_PORT/health` (127.0.0.1 and 9108, the status
server's `server.port` default: set the variable to the port your config names), with the bearer token from
$CRYPTO_BOT_SERVER_TOKEN when the server is guarded by one.
Not covered: what makes the bot healthy (the status server's /health decides).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

HOST_VARIABLE = "CRYPTO_BOT_HEALTH_HOST"
PORT_VARIABLE = "CRYPTO_BOT_HEALTH_PORT"
TOKEN_VARIABLE = "CRYPTO_BOT_SERVER_TOKEN"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9108
TIMEOUT_SECONDS = 5.0


def health_url(environment: Mapping[str, str]) -> str:
    return f"http://{environment.get(HOST_VARIABLE, DEFAULT_HOST)}:{environment.get(PORT_VARIABLE, DEFAULT_PORT)}/health"


def check(environment: Mapping[str, str] = os.environ) -> tuple[bool, str]:
    """(healthy, what was seen): healthy only for an answer 200 from /health."""
    url = health_url(environment)
    request = urllib.request.Request(url)
    if token := environment.get(TOKEN_VARIABLE):
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - our own http URL
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as error:
        return False, f"{url}: {error.code} {error.reason}"
    except (urllib.error.URLError, OSError) as error:
        return False, f"{url}: {getattr(error, 'reason', error)}"


def main() -> int:
    healthy, seen = check()
    print(seen, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
