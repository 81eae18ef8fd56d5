"""Market data for the bot: a protocol, three sources (simulated by default, CSV replay, ccxt live), their config,
the typed errors of a request, what a valid candle is, when a series needs fetching, and the
per-series refresh the bot runs (`refresh_series`).

`CcxtMarket` imports ccxt only when constructed, so this package works without the `ccxt` extra.
"""

from crypto_bot.market.backoff import BackoffPolicy
from crypto_bot.market.candles import candle_problem, checked_candles
from crypto_bot.market.ccxt_market import (
    MAX_OHLCV_PAGES,
    CcxtMarket,
    ccxt_source_problems,
    exchange_ids,
    max_candles_per_fetch,
    offered_timeframes,
)
from crypto_bot.market.config import MARKET_TYPES, SOURCES, CcxtConfig, MarketConfig
from crypto_bot.market.csv_market import CsvFileError, CsvFormatError, CsvMarket, csv_file_name, csv_symbols
from crypto_bot.market.errors import (
    ERROR_KINDS,
    AuthenticationFailed,
    BadData,
    ExchangeRejected,
    ExchangeUnavailable,
    MarketDataError,
    NetworkFailure,
    RateLimited,
    UnknownSymbol,
)
from crypto_bot.market.schedule import FetchRequest, candles_closed_after, refresh_request
from crypto_bot.market.series import SeriesUpdate, newest_open_ms, refresh_series
from crypto_bot.market.simulated import DEFAULT_SYMBOLS, SimulatedMarket, generated_symbols
from crypto_bot.market.source import OHLCV_COLUMNS, MarketDataSource, ohlcv_frame
from crypto_bot.market.stats import SourceStats
from crypto_bot.market.timeframes import MAX_LIMIT, TIMEFRAME_MS, timeframe_ms

__all__ = [
    "DEFAULT_SYMBOLS",
    "ERROR_KINDS",
    "MARKET_TYPES",
    "MAX_LIMIT",
    "MAX_OHLCV_PAGES",
    "OHLCV_COLUMNS",
    "SOURCES",
    "TIMEFRAME_MS",
    "AuthenticationFailed",
    "BackoffPolicy",
    "BadData",
    "CcxtConfig",
    "CcxtMarket",
    "CsvFileError",
    "CsvFormatError",
    "CsvMarket",
    "ExchangeRejected",
    "ExchangeUnavailable",
    "FetchRequest",
    "MarketConfig",
    "MarketDataError",
    "MarketDataSource",
    "NetworkFailure",
    "RateLimited",
    "SeriesUpdate",
    "SimulatedMarket",
    "SourceStats",
    "UnknownSymbol",
    "candle_problem",
    "candles_closed_after",
    "ccxt_source_problems",
    "checked_candles",
    "csv_file_name",
    "csv_symbols",
    "exchange_ids",
    "generated_symbols",
    "max_candles_per_fetch",
    "newest_open_ms",
    "offered_timeframes",
    "ohlcv_frame",
    "refresh_request",
    "refresh_series",
    "timeframe_ms",
]
