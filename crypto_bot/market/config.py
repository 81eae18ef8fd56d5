"""MarketConfig: the `market:` section, where the bot's candles come from.

Covers the section's keys (meaning, allowed values, default) and its own cross-field rule. Does not
cover the checks that need the file system or ccxt (a CSV directory with candles in it, an exchange
ccxt knows): `crypto_bot.settings` runs those with the timeframes; nor opening a source (see
`crypto_bot.bot.build_market`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from crypto_bot.memory.config import ConfigSection, setting

SOURCES = ("simulated", "csv", "ccxt")


@dataclass(frozen=True)
class MarketConfig(ConfigSection):
    """The market data source and the simulated scanner."""

    key_prefix: ClassVar[str] = "market."

    source: str = setting(
        "simulated", "simulated (built in), csv (replay files) or ccxt (live candles)", str, choices=SOURCES
    )
    seed: int = setting(42, "seed of the simulated market's prices", int, minimum=0, maximum=2**32 - 1)
    csv_directory: str | None = setting(
        None, "directory of <BASE>_<QUOTE>-<timeframe>.csv files (market.source: csv)", str, optional=True
    )
    exchange: str = setting("binance", "ccxt exchange id (market.source: ccxt)", str)
    scanner_new_symbols_per_cycle: int = setting(
        0, "simulated scanner: new pairs listed every cycle (0: a fixed universe)", int, minimum=0, maximum=1000
    )
    max_universe: int = setting(
        500, "simulated scanner: most pairs listed at once; the oldest without a position go first", int,
        minimum=1, maximum=100_000,
    )

    def _validate_csv_directory_given(self) -> list[str]:
        if self.source == "csv" and self.csv_directory is None:
            return ["market.csv_directory is required when market.source is csv"]
        return []
