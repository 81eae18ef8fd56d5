"""Live candles from a real exchange through ccxt's asyncio client (optional `ccxt` extra).

Covers `CcxtMarket`: one rate-limited exchange instance per market, credentials read only from
environment variables whose names are given, ccxt's OHLCV lists turned into the `source` frame,
and the exchange's still-open candle dropped (no look-ahead). Does not cover order placement
(see `crypto_bot.execution`) or simulated and replayed data (`simulated`, `csv_market`).

Each credential is registered with `crypto_bot.redaction` as it is read, so the handler-level
filter (`redaction.install()`, which the command runs at start-up) removes it from every log record
and exception text, ccxt's own included (ccxt logs request headers, API key included, at DEBUG, and
exchanges echo keys and signed URLs in their error messages).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from crypto_bot import redaction
from crypto_bot.market.source import OHLCV_COLUMNS, ohlcv_frame, visible_slice
from crypto_bot.market.timeframes import (
    TIMEFRAME_MS,
    require_served,
    timeframe_ms,
    validate_limit,
    validate_since_ms,
)

logger = logging.getLogger(__name__)

_CREDENTIAL_FIELDS = ("apiKey", "secret", "password", "uid", "privateKey", "walletAddress", "token")


def _import_ccxt() -> ModuleType:
    """ccxt's asyncio package, or ImportError saying which extra to install."""
    try:
        import ccxt.async_support as ccxt_async
    except ImportError as exc:
        raise ImportError("CcxtMarket needs the optional dependency 'ccxt': pip install 'crypto-bot[ccxt]'") from exc
    return ccxt_async


def exchange_class(exchange_id: str) -> type:
    """ccxt's asyncio exchange class for `exchange_id`; ImportError naming the extra, ValueError for an unknown id."""
    ccxt_async = _import_ccxt()
    if not isinstance(exchange_id, str) or exchange_id not in ccxt_async.exchanges:
        raise ValueError(f"exchange_id must be a ccxt exchange id such as 'binance' or 'kraken'; got {exchange_id!r}")
    return getattr(ccxt_async, exchange_id)


def exchange_ids() -> list[str]:
    """Every exchange id ccxt knows; ImportError naming the extra when ccxt is not installed."""
    return list(_import_ccxt().exchanges)


def offered_timeframes(exchange_id: str) -> frozenset[str]:
    """Timeframes the exchange serves, from ccxt's description of it (no network, no session)."""
    return frozenset(exchange_class(exchange_id)().timeframes or {})


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _credentials(api_key_env: str | None, secret_env: str | None, password_env: str | None) -> dict[str, str]:
    """ccxt credential fields read from the named environment variables, each registered for redaction."""
    credentials: dict[str, str] = {}
    for field, argument, variable in (
        ("apiKey", "api_key_env", api_key_env),
        ("secret", "secret_env", secret_env),
        ("password", "password_env", password_env),
    ):
        if variable is None:
            continue
        value = os.environ.get(variable, "")
        if not value:
            raise ValueError(f"{argument} names environment variable {variable!r}, which is unset or empty")
        try:
            redaction.register_secret(value)
        except ValueError:
            raise ValueError(
                f"{argument} names environment variable {variable!r}, whose value is too short to be a real "
                "credential or to be redacted from logs (fewer than 4 characters)"
            ) from None
        credentials[field] = value
    return credentials


def _checked_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Copy of the ccxt `config`, refusing credentials (env only) and disabled rate limiting."""
    config = dict(config or {})
    carried = sorted(field for field in _CREDENTIAL_FIELDS if field in config)
    if carried:
        raise ValueError(
            f"config must not carry credentials {carried}; name environment variables with "
            "api_key_env / secret_env / password_env instead"
        )
    if config.get("verbose"):
        raise ValueError("config['verbose'] must be false: ccxt's verbose mode prints request headers and keys")
    if config.get("enableRateLimit", True) is not True:
        raise ValueError(f"config['enableRateLimit'] must be True (or absent); got {config['enableRateLimit']!r}")
    config["enableRateLimit"] = True
    return config


def _rows_to_arrays(rows: list[list[Any]]) -> tuple[np.ndarray, np.ndarray]:
    """ccxt's [[open_ms, o, h, l, c, v], ...] as sorted int64 opens and an (n, 5) float64 block."""
    table = np.array(
        [[math.nan if value is None else value for value in row[: 1 + len(OHLCV_COLUMNS)]] for row in rows],
        dtype=np.float64,
    ).reshape(-1, 1 + len(OHLCV_COLUMNS))
    table = table[np.argsort(table[:, 0], kind="stable")]
    return table[:, 0].astype(np.int64), table[:, 1:]


class CcxtMarket:
    """Market data from a live exchange; `advance()` is a no-op and the clock is the wall clock."""

    __slots__ = ("_authenticated", "_clock_ms", "_closed", "_exchange", "_quote", "_symbols", "_timeframes", "name")

    name: str
    _exchange: Any
    _symbols: tuple[str, ...] | None
    _quote: str
    _timeframes: tuple[str, ...]
    _clock_ms: Callable[[], int]
    _authenticated: bool
    _closed: bool

    def __init__(
        self,
        exchange_id: str = "binance",
        *,
        config: Mapping[str, Any] | None = None,
        api_key_env: str | None = None,
        secret_env: str | None = None,
        password_env: str | None = None,
        symbols: Iterable[str] | None = None,
        quote: str = "USDT",
        timeframes: Iterable[str] | None = None,
        clock_ms: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        """`symbols` fixes the universe; without it, the universe is the loaded active spot markets
        quoted in `quote`. `config` is passed to the ccxt exchange (credentials only via *_env).
        `timeframes` defaults to every allowed timeframe the exchange offers."""
        exchange = exchange_class(exchange_id)
        exchange_config = _checked_config(config)
        credentials = _credentials(api_key_env, secret_env, password_env)
        self._exchange = exchange({**exchange_config, **credentials})
        self.name = exchange_id
        self._symbols = None if symbols is None else tuple(dict.fromkeys(symbols))
        self._quote = quote
        offered = set(self._exchange.timeframes or {})
        if timeframes is None:
            timeframes = offered.intersection(TIMEFRAME_MS)
        self._timeframes = tuple(sorted(set(timeframes), key=timeframe_ms))
        if not self._timeframes:
            raise ValueError("timeframes must name at least one timeframe; got none")
        missing = [timeframe for timeframe in self._timeframes if timeframe not in offered]
        if missing:
            raise ValueError(f"timeframes {missing} are not offered by {exchange_id}; it offers {sorted(offered)}")
        self._clock_ms = clock_ms
        self._authenticated = bool(credentials)
        self._closed = False
        logger.info("ccxt market %s (authenticated=%s, rate limiting enabled)", exchange_id, self._authenticated)

    def __repr__(self) -> str:
        return f"CcxtMarket(exchange_id={self.name!r}, authenticated={self._authenticated}, closed={self._closed})"

    @property
    def exchange(self) -> Any:
        """The one ccxt exchange instance this market talks through."""
        return self._exchange

    @property
    def now_ms(self) -> int:
        """The injected clock (wall clock by default), in epoch milliseconds."""
        return self._clock_ms()

    @property
    def timeframes(self) -> tuple[str, ...]:
        """Timeframes served, smallest first."""
        return self._timeframes

    def universe(self) -> list[str]:
        """The configured symbols, else active spot markets quoted in `quote` (empty before loading)."""
        if self._symbols is not None:
            return list(self._symbols)
        markets = self._exchange.markets or {}
        return sorted(
            symbol
            for symbol, market in markets.items()
            if market.get("spot") and market.get("active") is not False and market.get("quote") == self._quote
        )

    async def load_markets(self, *, reload: bool = False) -> None:
        """Fetch the exchange's market list (ccxt caches it; fetch_ohlcv loads it on demand)."""
        await self._exchange.load_markets(reload)

    def advance(self) -> None:
        """Live markets move on their own."""

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 200
    ) -> pd.DataFrame:
        """Closed candles from the exchange; one extra is requested without `since_ms`, since the
        newest one an exchange returns is usually still open and is dropped."""
        if self._closed:
            raise RuntimeError(f"CcxtMarket({self.name!r}) is closed")
        length_ms = require_served(timeframe, self._timeframes)
        validate_limit(limit)
        validate_since_ms(since_ms)
        from ccxt.base.errors import BadSymbol

        try:
            rows = await self._exchange.fetch_ohlcv(
                symbol, timeframe, since=since_ms, limit=limit if since_ms is not None else limit + 1
            )
        except BadSymbol as exc:
            raise KeyError(f"unknown symbol {symbol!r} on {self.name}") from exc
        open_ms, values = _rows_to_arrays(rows)
        rows_shown = visible_slice(open_ms, self.now_ms, length_ms, since_ms, limit)
        return ohlcv_frame(open_ms[rows_shown], values[rows_shown])

    async def close(self) -> None:
        """Close the exchange's HTTP session; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._exchange.close()
