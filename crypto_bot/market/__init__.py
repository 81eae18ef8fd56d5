"""Market data for the bot: a protocol, three sources (simulated by default, CSV replay, ccxt live), their config,
the typed errors of a request, what a valid candle is, when a series needs fetching, and the
per-series refresh the bot runs (`refresh_series`).

`CcxtMarket` imports ccxt only when constructed, so this package works without the `ccxt` extra.

Names are imported from their modules on first use (`crypto_bot.lazy_exports`): importing the package costs nothing.
"""

from crypto_bot.lazy_exports import lazy_exports

_EXPORTS = {
    "BackoffPolicy": "backoff",
    "candle_problem": "candles",
    "checked_candles": "candles",
    "CcxtMarket": "ccxt_market",
    "MAX_OHLCV_PAGES": "ccxt_market",
    "ccxt_source_problems": "ccxt_market",
    "exchange_ids": "ccxt_market",
    "max_candles_per_fetch": "ccxt_market",
    "offered_timeframes": "ccxt_market",
    "CcxtConfig": "config",
    "MARKET_TYPES": "config",
    "MarketConfig": "config",
    "SOURCES": "config",
    "CsvFileError": "csv_market",
    "CsvFormatError": "csv_market",
    "CsvMarket": "csv_market",
    "csv_file_name": "csv_files",
    "csv_symbols": "csv_files",
    "AuthenticationFailed": "errors",
    "BadData": "errors",
    "ERROR_KINDS": "errors",
    "ExchangeRejected": "errors",
    "ExchangeUnavailable": "errors",
    "MarketDataError": "errors",
    "NetworkFailure": "errors",
    "RateLimited": "errors",
    "UnknownSymbol": "errors",
    "FetchRequest": "schedule",
    "candles_closed_after": "schedule",
    "refresh_request": "schedule",
    "SeriesUpdate": "series",
    "newest_open_ms": "series",
    "refresh_series": "series",
    "DEFAULT_SYMBOLS": "simulated",
    "SimulatedMarket": "simulated",
    "generated_symbols": "simulated",
    "MarketDataSource": "source",
    "OHLCV_COLUMNS": "source",
    "ohlcv_frame": "source",
    "SourceStats": "stats",
    "MAX_LIMIT": "timeframes",
    "TIMEFRAME_MS": "timeframes",
    "timeframe_ms": "timeframes",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
