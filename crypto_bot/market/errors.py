"""Typed errors of one market-data request: what failed, and what the bot may do about it.

Covers `MarketDataError` and its kinds, which every source raises from `fetch_ohlcv` for that one
(symbol, timeframe) request only: a failed request never fails another. Not covered: when a request
is retried or the source paused (`backoff`), how ccxt's exceptions map onto these (`ccxt_market`),
or what is valid data (`candles`).

| kind | error | what the source did | what the bot does |
|---|---|---|---|
| rate_limited | `RateLimited` | retried within the fetch while the wait was short, then gated every request until `retry_after_seconds` | keep the cached window (stale), try next cycle |
| network | `NetworkFailure` | retried a bounded number of times, then paused | same |
| unavailable | `ExchangeUnavailable` | paused; every request fails at once until `retry_after_seconds`, then one probe goes first | same |
| bad_symbol | `UnknownSymbol` (a KeyError) | dropped the symbol from `universe()` with one warning | stop asking for it |
| authentication | `AuthenticationFailed` | reported once, not retried | fix the keys; nothing to retry |
| bad_data | `BadData` (a ValueError) | discarded the response (garbage JSON, a bad candle) | keep the cached window (stale) |
| exchange_error | `ExchangeRejected` | not retried | keep the cached window (stale) |
"""

from __future__ import annotations

from typing import ClassVar


class MarketDataError(Exception):
    """One request of market data failed; `kind` says how, `retry_after_seconds` when asking again can help."""

    kind: ClassVar[str] = "error"
    message: str
    symbol: str | None
    timeframe: str | None
    retry_after_seconds: float | None

    def __init__(
        self,
        message: str,
        *,
        symbol: str | None = None,
        timeframe: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.symbol = symbol
        self.timeframe = timeframe
        self.retry_after_seconds = retry_after_seconds

    def __str__(self) -> str:  # KeyError's str() would quote the message
        return self.message


class RateLimited(MarketDataError):
    """The exchange said too many requests (HTTP 429/418, ccxt RateLimitExceeded or DDoSProtection)."""

    kind = "rate_limited"


class NetworkFailure(MarketDataError):
    """No usable answer after the bounded retries (a timeout, a dropped connection)."""

    kind = "network"


class ExchangeUnavailable(MarketDataError):
    """The exchange is down or in maintenance (5xx, refused connections); the source is paused."""

    kind = "unavailable"


class UnknownSymbol(MarketDataError, KeyError):
    """The exchange does not list the symbol; it has been dropped from the source's universe."""

    kind = "bad_symbol"


class AuthenticationFailed(MarketDataError):
    """The exchange refused the credentials; retrying cannot help."""

    kind = "authentication"


class BadData(MarketDataError, ValueError):
    """A response (or file row) that is not valid candles: garbage JSON, NaN, unordered times, a bad price."""

    kind = "bad_data"


class ExchangeRejected(MarketDataError):
    """Any other refusal by the exchange (a bad request, an unsupported call); not retried."""

    kind = "exchange_error"


ERROR_KINDS: tuple[str, ...] = tuple(
    error.kind
    for error in (
        RateLimited, NetworkFailure, ExchangeUnavailable, UnknownSymbol, AuthenticationFailed, BadData, ExchangeRejected
    )
)
"""Every kind, in the order stats list them."""
