"""When a market source may send its next request: back-off after rate limits, outages and network errors.

Covers `BackoffPolicy` (the numbers) and `RequestGate` (the state one source shares across all its
concurrent requests: open, paused until a time, or letting one probe through after an outage).
Not covered: retrying one request (`ccxt_market` drives tenacity's `AsyncRetrying` with the
policy's attempt counts and network waits), nor mapping ccxt's exceptions (`ccxt_market`) or the
errors raised (`errors`).

The gate is what keeps a source from hammering an exchange that is refusing it:
- a rate-limit answer pauses every request of the source, not just the one that got it, for the
  exchange's Retry-After if it sent one, else `rate_limit_seconds` (the exchange's `rateLimit`)
  doubled per consecutive rate-limit answer, with jitter. A pause short enough
  (`max_wait_in_fetch_seconds`) is slept inside the fetch, so the request is retried; a longer
  one fails the fetch at once (`RateLimited`) and the bot moves on;
- an unavailable exchange (or a request that ran out of network retries) pauses the source for
  `outage_pause_seconds`, doubled per consecutive outage; every fetch fails at once
  (`ExchangeUnavailable`, no request) until the pause ends; then one request goes first as a
  probe, and the fetches arriving meanwhile wait for its outcome instead of all trying at once;
- any answer from the exchange (even an error such as a bad symbol) resets both doublings.
Jitter is "equal jitter": a wait `w` becomes a uniform draw from [w/2, w], so sources that failed
together do not retry together, and no wait collapses towards zero. Time and randomness are
injected (`monotonic`, `sleep`, `rng`): the tests run outages of minutes without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from crypto_bot.market.errors import ExchangeUnavailable, MarketDataError, RateLimited
from crypto_bot.memory import validation

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How long a source waits after each kind of failure, and how often one request is retried."""

    rate_limit_retries: int = 3
    network_retries: int = 2
    network_retry_seconds: float = 0.5
    outage_pause_seconds: float = 5.0
    max_pause_seconds: float = 300.0
    max_wait_in_fetch_seconds: float = 10.0

    def __post_init__(self) -> None:
        validation.integer("rate_limit_retries", self.rate_limit_retries, minimum=0, maximum=100)
        validation.integer("network_retries", self.network_retries, minimum=0, maximum=100)
        for name in ("network_retry_seconds", "outage_pause_seconds", "max_pause_seconds"):
            validation.positive(name, getattr(self, name))
        validation.number("max_wait_in_fetch_seconds", self.max_wait_in_fetch_seconds, minimum=0)

    def doubled(self, base_seconds: float, failures: int) -> float:
        """`base_seconds` doubled per failure after the first, capped at `max_pause_seconds`."""
        return min(self.max_pause_seconds, base_seconds * 2.0 ** min(max(failures - 1, 0), 64))


def jittered(seconds: float, rng: random.Random) -> float:
    """Equal jitter: a uniform draw from [seconds / 2, seconds]."""
    return seconds * (0.5 + 0.5 * rng.random())


class RequestGate:
    """Open, paused until a time, or probing: shared by every request of one source (one event loop)."""

    __slots__ = (
        "_monotonic",
        "_outages",
        "_pause_error",
        "_pause_reason",
        "_paused_until",
        "_policy",
        "_probe",
        "_probe_due",
        "_rate_limit_hits",
        "_rate_limit_seconds",
        "_rng",
        "_sleep",
    )

    _policy: BackoffPolicy
    _rate_limit_seconds: float
    _monotonic: Callable[[], float]
    _sleep: Callable[[float], Awaitable[None]]
    _rng: random.Random
    _paused_until: float
    _pause_error: type[MarketDataError]
    _pause_reason: str
    _rate_limit_hits: int
    _outages: int
    _probe_due: bool
    _probe: asyncio.Future[None] | None

    def __init__(
        self,
        policy: BackoffPolicy,
        *,
        rate_limit_seconds: float,
        monotonic: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
    ) -> None:
        self._policy = policy
        self._rate_limit_seconds = validation.positive("rate_limit_seconds", rate_limit_seconds)  # type: ignore[assignment]
        self._monotonic = monotonic
        self._sleep = sleep
        self._rng = rng
        self._paused_until = -math.inf
        self._pause_error = ExchangeUnavailable
        self._pause_reason = ""
        self._rate_limit_hits = 0
        self._outages = 0
        self._probe_due = False
        self._probe = None

    def resume_in_seconds(self) -> float:
        """Seconds until requests may go again (0 when open)."""
        return max(0.0, self._paused_until - self._monotonic())

    @property
    def pause_reason(self) -> str | None:
        """Why the source is paused, or None when it is open."""
        return self._pause_reason if self.resume_in_seconds() > 0 else None

    async def admit(
        self, *, symbol: str | None = None, timeframe: str | None = None, probing: bool = False
    ) -> bool:
        """Return when a request may go (True if it is the probe after an outage); raise the pause's
        error when it would have to wait longer than a fetch waits, or the source is paused after an outage.
        `probing`: the caller is the probe, retrying; it does not wait for itself."""
        while True:
            if self._probe is not None and not probing:  # another request is finding out whether the exchange is back
                await asyncio.shield(self._probe)
                continue
            wait = self.resume_in_seconds()
            if wait > 0:
                if self._pause_error is RateLimited and wait <= self._policy.max_wait_in_fetch_seconds:
                    await self._sleep(wait)
                    continue
                message = f"{self._pause_reason}; requests paused for another {wait:.1f} s"
                raise self._pause_error(message, symbol=symbol, timeframe=timeframe, retry_after_seconds=wait)
            if self._probe_due:
                self._probe_due = False
                self._probe = asyncio.get_running_loop().create_future()
                return True
            return False

    def end_probe(self) -> None:
        """The probe's outcome is in, after its retries (and any pause it calls for is set): wake the requests
        waiting for it. Always called after a probe."""
        probe, self._probe = self._probe, None
        if probe is not None and not probe.done():
            probe.set_result(None)

    def answered(self) -> None:
        """The exchange answered (whatever it said): the doublings start over."""
        self._rate_limit_hits = 0
        self._outages = 0

    def rate_limited(self, retry_after_seconds: float | None, reason: str) -> float:
        """A rate-limit answer: pause every request for Retry-After, else the doubled rate limit; the pause's length."""
        self._rate_limit_hits += 1
        wait = jittered(self._policy.doubled(self._rate_limit_seconds, self._rate_limit_hits), self._rng)
        if retry_after_seconds is not None:
            wait = max(wait, retry_after_seconds)
        self._pause(wait, RateLimited, reason)
        return wait

    def unavailable(self, reason: str, error: type[MarketDataError] = ExchangeUnavailable) -> float:
        """An outage (or a request out of network retries): pause, then let one probe through; the pause's length."""
        self._outages += 1
        wait = jittered(self._policy.doubled(self._policy.outage_pause_seconds, self._outages), self._rng)
        self._pause(wait, error, reason)
        self._probe_due = True
        if self._outages == 1:
            logger.warning("%s: pausing requests for %.1f s", reason, wait)
        else:
            logger.info("%s (%d in a row): pausing requests for %.1f s", reason, self._outages, wait)
        return wait

    def _pause(self, seconds: float, error: type[MarketDataError], reason: str) -> None:
        until = self._monotonic() + seconds
        if until >= self._paused_until:  # a shorter pause never cuts a longer one short
            self._paused_until = until
            self._pause_error = error
            self._pause_reason = reason

