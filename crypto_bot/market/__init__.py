"""Market data for the bot: a protocol, three sources (simulated by default, CSV replay, ccxt live), their config,
the typed errors of a request, what a valid candle is, when a series needs fetching, and the
per-series refresh the bot runs (`refresh_series`).

`CcxtMarket` imports ccxt only when constructed, so this package works without the `ccxt` extra.

Names are imported from their modules on first use (`crypto_bot.lazy_exports`): importing the package costs nothing.
"""

from crypto_bot.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "backoff": ("BackoffPolicy",),
        "candles": ("candle_problem", "checked_candles"),
        "ccxt_market": (
            "CcxtMarket",
            "MAX_OHLCV_PAGES",
            "ccxt_source_problems",
            "exchange_ids",
            "max_candles_per_fetch",
            "offered_timeframes",
        ),
        "config": ("CcxtConfig", "MARKET_TYPES", "MarketConfig", "SOURCES"),
        "csv_market": ("CsvFileError", "CsvFormatError", "CsvMarket"),
        "csv_files": ("csv_file_name", "csv_symbols"),
        "errors": (
            "AuthenticationFailed",
            "BadData",
            "ERROR_KINDS",
            "ExchangeRejected",
            "ExchangeUnavailable",
            "MarketDataError",
            "NetworkFailure",
            "RateLimited",
            "UnknownSymbol",
        ),
        "schedule": ("FetchRequest", "candles_closed_after", "refresh_request"),
        "series": ("SeriesUpdate", "newest_open_ms", "refresh_series"),
        "simulated": ("DEFAULT_SYMBOLS", "SimulatedMarket", "generated_symbols"),
        "source": ("MarketDataSource", "OHLCV_COLUMNS", "ohlcv_frame"),
        "stats": ("SourceStats",),
        "timeframes": ("MAX_LIMIT", "TIMEFRAME_MS", "timeframe_ms"),
    },
)
