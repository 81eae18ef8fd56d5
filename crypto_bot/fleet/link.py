"""One connection to the fleet's Redis, with the outage rules of an exchange: never crash, back off, come back.

Covers `RedisLink`: an asyncio client built from `market.redis` (password read from the variable
`password_env` names and registered for redaction; TLS when asked), and `call`, which runs one
command (or pipeline) through the same `backoff.RequestGate` an exchange uses. A refused connection
or a timeout pauses every command (0.5 s, doubled per outage up to 30 s, jittered), fails them at once
with `ExchangeUnavailable` naming the server while paused, then lets one probe through; the first
answer after an outage logs "reconnected" and runs `on_reconnect`. Also `sync_client`, for
`crypto-bot status --fleet`. redis-py's own retries are off: one policy decides.
Not covered: what the commands are (`redis_market`, `feeder`, `heartbeat`).

redis-py is imported here, on the Redis paths only (the `fleet` extra).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, TypeVar

from crypto_bot import redaction
from crypto_bot.market.backoff import BackoffPolicy, RequestGate
from crypto_bot.market.config import RedisConfig, split_address
from crypto_bot.market.errors import AuthenticationFailed, ExchangeRejected, ExchangeUnavailable

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

LINK_POLICY = BackoffPolicy(outage_pause_seconds=0.5, max_pause_seconds=30.0, max_wait_in_fetch_seconds=0.0)
"""Redis on loopback is back within a second or never soon: start short, cap at half a minute."""


def import_redis() -> ModuleType:
    """redis-py, or ImportError naming the extra to install."""
    try:
        import redis
        import redis.asyncio  # noqa: F401 - the asyncio client lives in a submodule
    except ImportError as error:
        raise ImportError("market.source: redis needs the optional dependency redis: pip install 'crypto-bot[fleet]'") from error
    return redis


def client_options(config: RedisConfig) -> dict[str, Any]:
    """Keyword arguments of a redis-py client for `config` (sync or asyncio): address, db, password, TLS, timeouts."""
    host, port = split_address(config.address)  # type: ignore[misc] - the section checked the address
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "db": config.db,
        "socket_timeout": config.timeout_seconds,
        "socket_connect_timeout": config.timeout_seconds,
    }
    if config.password_env is not None:
        options["password"] = redaction.secret_from_environment("market.redis.password_env", config.password_env)
    if config.tls:
        options["ssl"] = True
        if config.tls_ca_file is not None:
            options["ssl_ca_certs"] = config.tls_ca_file
    return options


def describe(config: RedisConfig) -> str:
    """"redis 127.0.0.1:6379 db 0": how messages name the server (never with the password)."""
    return f"redis {config.address} db {config.db}"


def sync_client(config: RedisConfig) -> Any:
    """A blocking redis-py client (no retries of its own) for one-shot reads such as `status --fleet`."""
    redis = import_redis()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(**client_options(config), retry=Retry(NoBackoff(), 0))


class RedisLink:
    """An asyncio Redis client whose failures pause it instead of raising past the caller's series."""

    __slots__ = ("_client", "_down", "_errors", "_gate", "calls", "description", "on_reconnect")

    description: str
    calls: int
    on_reconnect: Callable[[], None] | None

    def __init__(
        self,
        config: RedisConfig,
        *,
        policy: BackoffPolicy = LINK_POLICY,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
        client: Any = None,
    ) -> None:
        redis = import_redis()
        self._errors = redis.exceptions
        if client is None:
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            client = redis.asyncio.Redis(**client_options(config), retry=Retry(NoBackoff(), 0))
        self._client = client
        self._gate = RequestGate(
            policy, rate_limit_seconds=policy.outage_pause_seconds, monotonic=monotonic,
            sleep=sleep or asyncio.sleep, rng=rng or random.Random(),
        )
        self._down = False
        self.description = describe(config)
        self.calls = 0
        self.on_reconnect = None

    @property
    def connected(self) -> bool:
        """False from a failed command until the next that succeeds."""
        return not self._down

    def resume_in_seconds(self) -> float:
        """Seconds until commands may go again after an outage (0: now)."""
        return self._gate.resume_in_seconds()

    async def call(self, operation: Callable[[Any], Awaitable[_T]], *, what: str) -> _T:
        """`operation(client)`'s result; ExchangeUnavailable (paused, or the server unreachable), AuthenticationFailed
        or ExchangeRejected (a refused command) otherwise, each naming the server and `what`."""
        probing = await self._gate.admit()
        try:
            self.calls += 1
            try:
                result = await operation(self._client)
            except self._errors.AuthenticationError as error:
                self._failed(f"{self.description} refused the password ({what}): {error}")
                raise AuthenticationFailed(f"{self.description} refused the password: {error}") from None
            except (self._errors.ConnectionError, self._errors.TimeoutError, OSError) as error:
                reason = f"{self.description} unreachable ({what}: {error})"
                wait = self._failed(reason)
                raise ExchangeUnavailable(reason, retry_after_seconds=wait) from None
            except self._errors.RedisError as error:  # the server answered: OOM, WRONGTYPE, a bad reply
                self._answered()
                raise ExchangeRejected(f"{self.description} refused {what}: {error}") from None
            self._answered()
            return result
        finally:
            if probing:
                self._gate.end_probe()

    def _failed(self, reason: str) -> float:
        self._down = True
        return self._gate.unavailable(reason)

    def _answered(self) -> None:
        self._gate.answered()
        if self._down:
            self._down = False
            logger.warning("%s reachable again", self.description)
            if self.on_reconnect is not None:
                self.on_reconnect()

    async def close(self) -> None:
        """Close the client's connections; safe to call twice."""
        await self._client.aclose()
