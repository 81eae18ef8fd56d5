"""Market data for the bot: a protocol, three sources (simulated by default, CSV replay, ccxt live), their config.

`CcxtMarket` imports ccxt only when constructed, so this package works without the `ccxt` extra.
"""

from crypto_bot.market.ccxt_market import CcxtMarket, exchange_ids, offered_timeframes
from crypto_bot.market.config import SOURCES, MarketConfig
from crypto_bot.market.csv_market import CsvFileError, CsvFormatError, CsvMarket, csv_file_name, csv_symbols
from crypto_bot.market.simulated import DEFAULT_SYMBOLS, SimulatedMarket, generated_symbols
from crypto_bot.market.source import OHLCV_COLUMNS, MarketDataSource, ohlcv_frame
from crypto_bot.market.timeframes import MAX_LIMIT, TIMEFRAME_MS, timeframe_ms

__all__ = [
    "DEFAULT_SYMBOLS",
    "MAX_LIMIT",
    "OHLCV_COLUMNS",
    "SOURCES",
    "TIMEFRAME_MS",
    "CcxtMarket",
    "CsvFileError",
    "CsvFormatError",
    "CsvMarket",
    "MarketConfig",
    "MarketDataSource",
    "SimulatedMarket",
    "csv_file_name",
    "csv_symbols",
    "exchange_ids",
    "generated_symbols",
    "offered_timeframes",
    "ohlcv_frame",
    "timeframe_ms",
]
