"""Market data for the bot: a protocol and three sources (simulated by default, CSV replay, ccxt live).

`CcxtMarket` imports ccxt only when constructed, so this package works without the `ccxt` extra.
"""

from crypto_bot.market.ccxt_market import CcxtMarket
from crypto_bot.market.csv_market import CsvFormatError, CsvMarket, csv_file_name
from crypto_bot.market.simulated import DEFAULT_SYMBOLS, SimulatedMarket, generated_symbols
from crypto_bot.market.source import OHLCV_COLUMNS, MarketDataSource, ohlcv_frame
from crypto_bot.market.timeframes import MAX_LIMIT, TIMEFRAME_MS, timeframe_ms

__all__ = [
    "DEFAULT_SYMBOLS",
    "MAX_LIMIT",
    "OHLCV_COLUMNS",
    "TIMEFRAME_MS",
    "CcxtMarket",
    "CsvFormatError",
    "CsvMarket",
    "MarketDataSource",
    "SimulatedMarket",
    "csv_file_name",
    "generated_symbols",
    "ohlcv_frame",
    "timeframe_ms",
]
