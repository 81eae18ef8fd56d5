"""Live candles from a real exchange through ccxt's asyncio client (optional `ccxt` extra).

Covers `CcxtMarket`: one rate-limited exchange instance per market, credentials read only from
environment variables whose names are given, and for every `fetch_ohlcv`:
- errors per request: each fetch succeeds or raises one typed `MarketDataError` of its own
  (`errors`), never failing another; ccxt's classes decide the back-off (`backoff`): rate limits
  pause the whole source (Retry-After honoured), network errors are retried a bounded number of
  times (tenacity), an unavailable exchange pauses the source, a bad symbol is dropped from the
  universe with one warning, an authentication failure is reported once;
- pagination up to the exchange's per-request cap (`ohlcv_page_limit`: ccxt's `features`, else its
  `maxEntriesPerRequest`, or `ohlcv_limit`), at most `MAX_OHLCV_PAGES` requests a fetch, and also
  when a single request comes back short (a server capping below that limit);
- every page validated (`candles.checked_candles`) before it becomes a frame, and a body that is not
  JSON refused before ccxt's parser can make it an empty page (no candles, no error);
- the still-open candle dropped by the exchange's clock (`exchange_clock`: `fetch_time`, resampled
  hourly, and the newest candle's open), not the machine's;
- REST calls counted (every HTTP request ccxt sends) in `stats()`.
Also `ccxt_source_problems`, the environment checks `config check` runs for a ccxt source.
Does not cover order placement (see `crypto_bot.execution`) or simulated and replayed data.

ccxt's own pagination (`params={"paginate": True}`) is not used: it spans its pages from the
machine's clock, sends them all at once with retries of its own, and returns them unvalidated.

Each credential is registered with `crypto_bot.redaction` as it is read, so the handler-level
filter (`redaction.install()`, which the command runs at start-up) removes it from every log record
and exception text, ccxt's own included (ccxt logs request headers, API key included, at DEBUG, and
exchanges echo keys and signed URLs in their error messages).
"""

from __future__ import annotations

import asyncio
import contextvars
import difflib
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from crypto_bot import redaction
from crypto_bot.market.backoff import BackoffPolicy, RequestGate, jittered
from crypto_bot.market.candles import EARLIEST_OPEN_MS, checked_candles
from crypto_bot.market.config import CcxtConfig, MarketConfig
from crypto_bot.market.errors import (
    AuthenticationFailed,
    BadData,
    ExchangeRejected,
    ExchangeUnavailable,
    MarketDataError,
    NetworkFailure,
    RateLimited,
    UnknownSymbol,
)
from crypto_bot.market.exchange_clock import DEFAULT_RESYNC_MS, ExchangeClock
from crypto_bot.market.source import ohlcv_frame, visible_slice
from crypto_bot.market.stats import SourceStats
from crypto_bot.market.timeframes import TIMEFRAME_MS, checked_fetch, timeframe_ms, validate_limit

logger = logging.getLogger(__name__)

_CREDENTIAL_FIELDS = ("apiKey", "secret", "password", "uid", "privateKey", "walletAddress", "token")

MAX_OHLCV_PAGES = 10
"""Most requests one fetch pages through (ccxt's own `paginationCalls` default): a fetch stays bounded in
time and rate-limit weight, so a window longer than this many pages of the exchange is refused by config check."""

SYNCED_CLOCK_TOLERANCE_MS = 60_000
"""How far past the exchange's clock (sampled by fetch_time) a candle may open before it is garbage."""
UNSYNCED_CLOCK_TOLERANCE_MS = 86_400_000
"""The same without a server time: the machine's clock may be off, but not by a day."""

_ERROR_TEXT_CHARACTERS = 200  # of ccxt's message (method, URL, body) carried into ours

_T = TypeVar("_T")


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


def ohlcv_page_limit(exchange: Any, default_type: str = "spot") -> int:
    """Candles one OHLCV request of `exchange` (a ccxt instance) returns at most, from ccxt's metadata:
    `features[type].fetchOHLCV.limit`, else ccxt's `maxEntriesPerRequest` option (1000 unless set)."""
    features = (exchange.features or {}).get("spot" if default_type == "margin" else default_type) or {}
    candidates = [features, *(features.get(kind) or {} for kind in ("linear", "inverse"))]
    for scope in candidates:
        limit = (scope.get("fetchOHLCV") or {}).get("limit") if isinstance(scope, Mapping) else None
        if isinstance(limit, int) and limit > 0:
            return limit
    limit, _ = exchange.handle_max_entries_per_request_and_params("fetchOHLCV")
    return int(limit)


def max_candles_per_fetch(config: CcxtConfig) -> int:
    """The most candles one fetch of this exchange returns: pages of its per-request cap, `MAX_OHLCV_PAGES` of them."""
    page_limit = config.ohlcv_limit or ohlcv_page_limit(exchange_class(config.exchange)(), config.default_type)
    return page_limit * MAX_OHLCV_PAGES


def ccxt_source_problems(
    market: MarketConfig, timeframes: Iterable[str], candle_counts: Mapping[str, int]
) -> list[str]:
    """What a ccxt source could not run with: ccxt missing, an unknown exchange, a timeframe it does not
    offer, a sandbox it does not have, an unset credential variable, or a candle count (key -> value,
    e.g. {"strategy.history_candles": 300}) above what one fetch returns. Empty for other sources.

    Imports ccxt and builds the exchange class offline (no network)."""
    if market.fetching_source != "ccxt":  # the bot's own source, or a fleet feeder's upstream
        return []
    config = market.ccxt
    try:
        known = exchange_ids()
    except ImportError:
        return ["market.source=ccxt needs the optional dependency ccxt: pip install 'crypto-bot[ccxt]'"]
    if config.exchange not in known:
        close = difflib.get_close_matches(config.exchange, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return [f"invalid market.ccxt.exchange={config.exchange!r}: allowed a ccxt exchange id such as binance or kraken{hint}"]
    exchange = exchange_class(config.exchange)()
    problems = []
    offered = set(exchange.timeframes or {})
    missing = [timeframe for timeframe in timeframes if timeframe not in offered]
    if missing:
        problems.append(
            f"timeframes {', '.join(missing)} are not offered by {config.exchange}; it offers {', '.join(sorted(offered))}"
        )
    if config.sandbox and not (exchange.urls or {}).get("test"):
        problems.append(f"market.ccxt.sandbox=true: {config.exchange} has no test network in ccxt; set it to false")
    for key in ("api_key_env", "secret_env", "password_env"):
        variable = getattr(config, key)
        if variable is not None and not os.environ.get(variable):
            problems.append(f"market.ccxt.{key} names environment variable {variable!r}, which is unset or empty")
    page_limit = config.ohlcv_limit or ohlcv_page_limit(exchange, config.default_type)
    most = page_limit * MAX_OHLCV_PAGES
    source_of_limit = "market.ccxt.ohlcv_limit" if config.ohlcv_limit else f"{config.exchange}'s limit in ccxt"
    for key, count in candle_counts.items():
        if count > most:
            problems.append(
                f"invalid {key}={count}: allowed at most {most}, what one fetch from {config.exchange} returns "
                f"({MAX_OHLCV_PAGES} requests of {page_limit} candles, {source_of_limit})"
            )
    return problems


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
        if variable is not None:
            credentials[field] = redaction.secret_from_environment(argument, variable)
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


class _Response:
    """The HTTP answer to the request running in this task: its headers (for Retry-After), and its body when
    that was not JSON (`text`: ccxt hands such a body on as a string, which its parsers can turn into no rows)."""

    __slots__ = ("headers", "text")

    def __init__(self) -> None:
        self.headers: Mapping[str, str] = {}
        self.text: str | None = None

    def retry_after_seconds(self) -> float | None:
        """Retry-After in seconds (a number, or an HTTP date against the answer's Date), or None."""
        headers = {name.lower(): value for name, value in self.headers.items()}
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                until = parsedate_to_datetime(value)
                now = parsedate_to_datetime(headers["date"]) if "date" in headers else None
                seconds = (until - now).total_seconds() if now is not None else until.timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                return None
        return seconds if math.isfinite(seconds) and seconds >= 0 else None


class _Probe:
    """Whether one request, over all its attempts, is the gate's probe after an outage."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = False


# Set by each request attempt in its own task; read by the hook ccxt calls with the HTTP answer.
_current_response: contextvars.ContextVar[_Response | None] = contextvars.ContextVar("ccxt_response", default=None)


async def _monotonic_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class CcxtMarket:
    """Market data from a live exchange; `advance()` ends a stats cycle and the clock is the exchange's."""

    __slots__ = (
        "_authenticated",
        "_backoff",
        "_ccxt",
        "_clock",
        "_clock_lock",
        "_closed",
        "_default_type",
        "_dropped",
        "_exchange",
        "_gate",
        "_page_limit",
        "_quote",
        "_reported",
        "_rng",
        "_sleep",
        "_stats",
        "_symbols",
        "_timeframes",
        "name",
    )

    name: str
    _exchange: Any
    _ccxt: ModuleType
    _symbols: tuple[str, ...] | None
    _quote: str
    _default_type: str
    _timeframes: tuple[str, ...]
    _page_limit: int
    _clock: ExchangeClock
    _clock_lock: asyncio.Lock
    _backoff: BackoffPolicy
    _gate: RequestGate
    _sleep: Callable[[float], Awaitable[None]]
    _rng: random.Random
    _stats: SourceStats
    _dropped: dict[str, str]
    _reported: set[str]
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
        sandbox: bool = False,
        default_type: str = "spot",
        timeout_ms: int | None = None,
        ohlcv_limit: int | None = None,
        symbols: Iterable[str] | None = None,
        quote: str = "USDT",
        timeframes: Iterable[str] | None = None,
        clock_ms: Callable[[], int] = _wall_clock_ms,
        clock_resync_ms: int = DEFAULT_RESYNC_MS,
        backoff: BackoffPolicy | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = _monotonic_sleep,
        rng: random.Random | None = None,
    ) -> None:
        """`symbols` fixes the universe; without it, the universe is the loaded active markets of
        `default_type` quoted in `quote`. `config` is passed to the ccxt exchange (credentials only
        via *_env). `timeframes` defaults to every allowed timeframe the exchange offers. `ohlcv_limit`
        overrides the exchange's per-request cap. `clock_ms` is the machine's wall clock; `monotonic`,
        `sleep` and `rng` drive the back-off (tests inject them)."""
        exchange = exchange_class(exchange_id)
        exchange_config = _checked_config(config)
        exchange_config["options"] = {**exchange_config.get("options", {}), "defaultType": default_type}
        if timeout_ms is not None:
            exchange_config["timeout"] = timeout_ms
        credentials = _credentials(api_key_env, secret_env, password_env)
        self._ccxt = _import_ccxt()
        self._exchange = exchange({**exchange_config, **credentials})
        if sandbox:
            if not (self._exchange.urls or {}).get("test"):
                raise ValueError(f"sandbox: {exchange_id} has no test network in ccxt")
            self._exchange.set_sandbox_mode(True)
        self.name = exchange_id
        self._symbols = None if symbols is None else tuple(dict.fromkeys(symbols))
        self._quote = quote
        self._default_type = default_type
        offered = set(self._exchange.timeframes or {})
        if timeframes is None:
            timeframes = offered.intersection(TIMEFRAME_MS)
        self._timeframes = tuple(sorted(set(timeframes), key=timeframe_ms))
        if not self._timeframes:
            raise ValueError("timeframes must name at least one timeframe; got none")
        missing = [timeframe for timeframe in self._timeframes if timeframe not in offered]
        if missing:
            raise ValueError(f"timeframes {missing} are not offered by {exchange_id}; it offers {sorted(offered)}")
        if ohlcv_limit is not None:
            validate_limit(ohlcv_limit)
        self._page_limit = ohlcv_limit or ohlcv_page_limit(self._exchange, default_type)
        self._clock = ExchangeClock(clock_ms, resync_ms=clock_resync_ms)
        self._clock_lock = asyncio.Lock()
        self._backoff = backoff or BackoffPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._gate = RequestGate(
            self._backoff,
            rate_limit_seconds=max(float(self._exchange.rateLimit), 1.0) / 1000,
            monotonic=monotonic,
            sleep=sleep,
            rng=self._rng,
        )
        self._stats = SourceStats()
        self._dropped = {}
        self._reported = set()
        self._authenticated = bool(credentials)
        self._closed = False
        self._instrument(self._exchange)
        logger.info(
            "ccxt market %s (authenticated=%s, sandbox=%s, %s, %d candles per request, rate limiting enabled)",
            exchange_id, self._authenticated, sandbox, default_type, self._page_limit,
        )

    @classmethod
    def from_config(
        cls, section: CcxtConfig, /, *, symbols: Iterable[str] | None = None,
        timeframes: Iterable[str] | None = None, **injected: Any,
    ) -> CcxtMarket:
        """The market `market.ccxt` describes; `injected` passes clocks, sleep, rng or a ccxt `config` through
        (the section is positional-only, so `config=` reaches the exchange instead of colliding with it)."""
        return cls(
            section.exchange,
            api_key_env=section.api_key_env,
            secret_env=section.secret_env,
            password_env=section.password_env,
            sandbox=section.sandbox,
            default_type=section.default_type,
            timeout_ms=section.timeout_ms,
            ohlcv_limit=section.ohlcv_limit,
            symbols=symbols,
            timeframes=timeframes,
            **injected,
        )

    def _instrument(self, exchange: Any) -> None:
        """Count every HTTP request ccxt sends, and hand each answer's headers to the request that asked."""
        send, answered = exchange.fetch, exchange.on_rest_response
        stats = self._stats

        async def counted_fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
            stats.count_rest_call()
            answer = await send(url, method, headers, body)
            response = _current_response.get()
            if response is not None and isinstance(answer, str):
                response.text = answer
            return answer

        def on_rest_response(code: Any, reason: Any, url: Any, method: Any, response_headers: Any, *rest: Any) -> Any:
            response = _current_response.get()
            if response is not None and isinstance(response_headers, Mapping):
                response.headers = response_headers
            return answered(code, reason, url, method, response_headers, *rest)

        exchange.fetch = counted_fetch
        exchange.on_rest_response = on_rest_response

    def __repr__(self) -> str:
        return f"CcxtMarket(exchange_id={self.name!r}, authenticated={self._authenticated}, closed={self._closed})"

    @property
    def exchange(self) -> Any:
        """The one ccxt exchange instance this market talks through."""
        return self._exchange

    @property
    def now_ms(self) -> int:
        """The exchange's time as estimated (the injected wall clock plus the tracked offset), epoch ms."""
        return self._clock.now_ms()

    @property
    def clock_offset_ms(self) -> int:
        """Exchange time minus the machine's, as tracked."""
        return self._clock.offset_ms

    @property
    def timeframes(self) -> tuple[str, ...]:
        """Timeframes served, smallest first."""
        return self._timeframes

    @property
    def ohlcv_limit(self) -> int:
        """Candles per OHLCV request (the exchange's cap, or the override)."""
        return self._page_limit

    @property
    def resume_in_seconds(self) -> float:
        """Seconds until the source sends requests again (0 when it is not paused): skip fetching until then."""
        return self._gate.resume_in_seconds()

    def universe(self) -> list[str]:
        """The configured symbols, else the active markets of the type quoted in `quote` (empty before
        loading); without the symbols the exchange said it does not list."""
        if self._symbols is not None:
            return [symbol for symbol in self._symbols if symbol not in self._dropped]
        markets = self._exchange.markets or {}
        margin = self._default_type == "margin"  # margin pairs are spot markets that allow margin
        market_type = "spot" if margin else self._default_type
        return sorted(
            symbol
            for symbol, market in markets.items()
            if market.get("type") == market_type
            and (market.get("margin") or not margin)
            and market.get("active") is not False
            and market.get("quote") == self._quote
            and symbol not in self._dropped
        )

    def stats(self) -> dict[str, Any]:
        """REST calls (`rest_calls`, `rest_calls_cycle` since the last `advance()`, `rest_calls_last_cycle`),
        `retries`, failed fetches by kind (`errors`), `paused`, `resume_in_seconds`, `pause_reason`,
        `dropped_symbols` (symbol -> why), `clock_offset_ms`, `clock_synced`, `ohlcv_limit`."""
        resume_in = self._gate.resume_in_seconds()
        return {
            **self._stats.snapshot(),
            "paused": resume_in > 0,
            "resume_in_seconds": round(resume_in, 3),
            "pause_reason": self._gate.pause_reason,
            "dropped_symbols": dict(self._dropped),
            "clock_offset_ms": self._clock.offset_ms,
            "clock_synced": self._clock.synced,
            "ohlcv_limit": self._page_limit,
        }

    async def load_markets(self, *, reload: bool = False) -> None:
        """Fetch the exchange's market list (ccxt caches it; fetch_ohlcv loads it on demand)."""
        try:
            await self._request(lambda: self._exchange.load_markets(reload), what=f"{self.name} markets")
        except MarketDataError as error:
            self._failed(error)
            raise

    def advance(self) -> None:
        """Live markets move on their own; this ends the stats cycle (`rest_calls_cycle`)."""
        self._stats.end_cycle()

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 200
    ) -> pd.DataFrame:
        """Closed candles by the exchange's clock, validated; `MarketDataError` (one kind per cause) otherwise.

        Without `since_ms`, the newest `limit`: one request for `limit + 1` (the newest an exchange
        returns is usually still open, and is dropped) when that fits a page, else pages forward from
        where they start. With it, the oldest `limit` from `since_ms`, paging forward."""
        if self._closed:
            raise RuntimeError(f"CcxtMarket({self.name!r}) is closed")
        length_ms = checked_fetch(timeframe, self._timeframes, since_ms=since_ms, limit=limit)
        try:
            if symbol in self._dropped:
                raise UnknownSymbol(self._dropped[symbol], symbol=symbol, timeframe=timeframe)
            await self._sync_clock()
            open_ms, values = await self._fetch_candles(symbol, timeframe, length_ms, since_ms, limit)
        except MarketDataError as error:
            error.symbol, error.timeframe = symbol, timeframe
            self._failed(error)
            raise
        rows = visible_slice(open_ms, self._clock.now_ms(), length_ms, since_ms, limit)
        return ohlcv_frame(open_ms[rows], values[rows])

    async def close(self) -> None:
        """Close the exchange's HTTP session; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._exchange.close()

    # ------------------------------------------------------------ fetching

    async def _fetch_candles(
        self, symbol: str, timeframe: str, length_ms: int, since_ms: int | None, limit: int
    ) -> tuple[np.ndarray, np.ndarray]:
        what = f"{self.name} {symbol} {timeframe}"
        if since_ms is None and limit + 1 <= self._page_limit:
            open_ms, values = await self._page(symbol, timeframe, None, limit + 1, what)
            if len(open_ms) > limit or not len(open_ms):
                return open_ms, values
            # Some candles, but fewer than asked: less history than the window, or a server capping requests
            # below the limit ccxt knows of (a silent cap, which would leave the bot a short window for good).
            # Paging from the window's start fills the window in the second case, for one request more in the
            # first; only whole-window fetches come here (a new series, or one after a long outage).
        if since_ms is None:  # more than a page: start where the newest `limit` closed candles begin
            newest_closed_open_ms = self._clock.now_ms() // length_ms * length_ms - length_ms
            since_ms = max(0, newest_closed_open_ms - (limit - 1) * length_ms)
        pages: list[tuple[np.ndarray, np.ndarray]] = []
        cursor_ms, count = since_ms, 0
        for _ in range(MAX_OHLCV_PAGES):
            open_ms, values = await self._page(symbol, timeframe, cursor_ms, min(self._page_limit, limit - count), what)
            after = open_ms >= cursor_ms  # some exchanges also return the candle that contains `since`
            open_ms, values = open_ms[after], values[after]
            if not len(open_ms):
                break  # nothing after the cursor yet (or a gap longer than a page: the next fetch resumes here)
            pages.append((open_ms, values))
            count += len(open_ms)
            cursor_ms = int(open_ms[-1]) + length_ms
            if count >= limit or cursor_ms + length_ms > self._clock.now_ms():
                break  # enough, or up to the newest closed candle
        if not pages:
            return np.empty(0, dtype=np.int64), np.empty((0, 5))
        return np.concatenate([page[0] for page in pages]), np.concatenate([page[1] for page in pages])

    async def _page(
        self, symbol: str, timeframe: str, since_ms: int | None, limit: int, what: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """One validated request; the newest candle's open advances the exchange clock."""

        async def candles() -> Any:
            rows = await self._exchange.fetch_ohlcv(symbol, timeframe, since=since_ms, limit=limit)
            response = _current_response.get()
            if response is not None and response.text is not None:  # with `since`, ccxt parses garbage into []
                raise self._ccxt.BadResponse(f"the answer is not JSON: {response.text}")
            return rows

        rows = await self._request(candles, what=what, symbol=symbol, timeframe=timeframe)
        open_ms, values = checked_candles(rows, what=what)
        if len(open_ms):
            newest_ms = int(open_ms[-1])
            tolerance_ms = SYNCED_CLOCK_TOLERANCE_MS if self._clock.synced else UNSYNCED_CLOCK_TOLERANCE_MS
            ahead_ms = newest_ms - self._clock.now_ms()
            if ahead_ms > tolerance_ms:
                raise BadData(
                    f"{what}: newest candle opens at {newest_ms}, {ahead_ms / 1000:.0f} s after the exchange's clock "
                    f"(offset {self._clock.offset_ms} ms from this machine)"
                )
            self._clock.record_candle_open(newest_ms)
        return open_ms, values

    async def _sync_clock(self) -> None:
        """Sample the exchange's time when due (first fetch, then hourly); one sample for concurrent fetches."""
        if not self._clock.needs_sync() or not self._exchange.has.get("fetchTime"):
            return
        async with self._clock_lock:
            if not self._clock.needs_sync():
                return
            sent_ms = self._clock.local_ms()
            try:
                server_ms = await self._request(self._exchange.fetch_time, what=f"{self.name} time")
                if isinstance(server_ms, bool) or not isinstance(server_ms, int) or server_ms < EARLIEST_OPEN_MS:
                    raise BadData(f"{self.name} time: not epoch milliseconds: {server_ms!r}")
            except (BadData, ExchangeRejected) as error:  # candles still bound the clock from below
                self._clock.record_failed_sync()
                self._report_once("time", f"{self.name}: no server time ({error}); closing candles by this machine's clock")
                return
            self._clock.record_server_time(server_ms, sent_ms, self._clock.local_ms())
            if abs(self._clock.offset_ms) >= 1000:
                logger.info("%s clock is %+.1f s from this machine's", self.name, self._clock.offset_ms / 1000)

    async def _request(
        self, operation: Callable[[], Awaitable[_T]], *, what: str, symbol: str | None = None,
        timeframe: str | None = None,
    ) -> _T:
        """`operation` (one ccxt call) through the gate, retried by tenacity as ccxt's error class says; a typed error otherwise."""
        ccxt = self._ccxt
        retrying = AsyncRetrying(
            retry=retry_if_exception(self._retryable),
            stop=self._out_of_retries,
            wait=self._retry_wait,
            sleep=self._sleep,
            before_sleep=lambda state: self._stats.count_retry(),
            reraise=True,
        )
        probe = _Probe()
        try:
            return await retrying(self._attempt, operation, probe, symbol, timeframe)
        except MarketDataError:
            raise  # the gate's own: paused
        except ccxt.BadSymbol as error:
            raise UnknownSymbol(f"unknown symbol {symbol!r} on {self.name}: {_text(error)}") from error
        except ccxt.AuthenticationError as error:
            raise AuthenticationFailed(f"{what}: the exchange refused the credentials: {_text(error)}") from error
        except ccxt.DDoSProtection as error:
            raise RateLimited(
                f"{what}: rate limited ({_text(error)})", retry_after_seconds=self._gate.resume_in_seconds()
            ) from error
        except ccxt.ExchangeNotAvailable as error:
            raise ExchangeUnavailable(
                f"{what}: exchange unavailable ({_text(error)})", retry_after_seconds=self._gate.resume_in_seconds()
            ) from error
        except ccxt.NetworkError as error:  # out of retries: the next request would meet the same network
            self._gate.unavailable(f"{self.name}: no answer ({type(error).__name__})", NetworkFailure)
            raise NetworkFailure(
                f"{what}: {type(error).__name__} after {self._backoff.network_retries} retries ({_text(error)})",
                retry_after_seconds=self._gate.resume_in_seconds(),
            ) from error
        except ccxt.BadResponse as error:
            raise BadData(f"{what}: unreadable answer ({_text(error)})") from error
        except ccxt.BaseError as error:
            raise ExchangeRejected(f"{what}: {type(error).__name__} ({_text(error)})") from error
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:  # ccxt parsing garbage
            raise BadData(f"{what}: the answer could not be read ({type(error).__name__}: {_text(error)})") from error
        finally:
            # The probe's outcome is its last attempt's, and a pause it calls for is set by now: the requests
            # waiting for it wake to that. Ended after its first attempt instead, a probe that timed out let every
            # waiting request through, each with retries of its own (issue 13's timeout outage).
            if probe.held:
                self._gate.end_probe()

    async def _attempt(
        self, operation: Callable[[], Awaitable[_T]], probe: _Probe, symbol: str | None, timeframe: str | None
    ) -> _T:
        ccxt = self._ccxt
        if await self._gate.admit(symbol=symbol, timeframe=timeframe, probing=probe.held):
            probe.held = True
        response = _Response()
        token = _current_response.set(response)
        try:
            result = await operation()
        except ccxt.DDoSProtection as error:
            self._gate.rate_limited(response.retry_after_seconds(), f"{self.name} rate limit ({type(error).__name__})")
            raise
        except ccxt.ExchangeNotAvailable as error:
            self._gate.unavailable(f"{self.name} unavailable ({type(error).__name__})")
            raise
        except ccxt.NetworkError:
            raise  # retried, or paused once out of retries
        except Exception:
            self._gate.answered()  # an answer, even a refusal: the exchange is reachable
            raise
        else:
            self._gate.answered()
            return result
        finally:
            _current_response.reset(token)

    def _retryable(self, error: BaseException) -> bool:
        ccxt = self._ccxt
        if isinstance(error, ccxt.DDoSProtection):  # RateLimitExceeded too: the gate holds the wait
            return True
        return isinstance(error, ccxt.NetworkError) and not isinstance(error, ccxt.ExchangeNotAvailable)

    def _out_of_retries(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome is not None else None
        retries = (
            self._backoff.rate_limit_retries
            if isinstance(error, self._ccxt.DDoSProtection)
            else self._backoff.network_retries
        )
        return state.attempt_number > retries

    def _retry_wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, self._ccxt.DDoSProtection):
            return 0.0  # the gate pauses every request of the source, this one included
        base = self._backoff.doubled(self._backoff.network_retry_seconds, state.attempt_number)
        return jittered(base, self._rng)

    def _failed(self, error: MarketDataError) -> None:
        """Count a failed fetch; drop a bad symbol from the universe and report it, and credentials, once."""
        self._stats.count_error(error)
        if isinstance(error, UnknownSymbol) and error.symbol is not None and error.symbol not in self._dropped:
            self._dropped[error.symbol] = error.message
            logger.warning("%s: dropped %s from the universe: %s", self.name, error.symbol, error.message)
        elif isinstance(error, AuthenticationFailed):
            self._report_once("authentication", f"{error.message}; check the variables named by market.ccxt.*_env")

    def _report_once(self, topic: str, message: str) -> None:
        log = logger.debug if topic in self._reported else logger.warning
        self._reported.add(topic)
        log("%s", message)


def _text(error: BaseException) -> str:
    """ccxt's message (method, URL, status, body), redacted, then shortened (a cut key would escape redaction)."""
    text = redaction.redact(" ".join(str(error).split()))
    return text if len(text) <= _ERROR_TEXT_CHARACTERS else text[: _ERROR_TEXT_CHARACTERS - 3] + "..."
