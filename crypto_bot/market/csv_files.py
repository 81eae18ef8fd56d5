"""The CSV replay's file names: `<BASE>_<QUOTE>-<timeframe>.csv`, and which symbols a directory holds.

Apart from the replay itself (`csv_market`, which imports pandas) so that `config check` can look at a
`market.csv_directory` without loading it.
"""

from __future__ import annotations

import re
from pathlib import Path

from crypto_bot.market.timeframes import TIMEFRAME_MS, timeframe_ms, validate_symbol

_FILE_PATTERN = re.compile(rf"^([A-Z0-9]+)_([A-Z0-9]+)-({'|'.join(TIMEFRAME_MS)})\.csv$")


def csv_file_name(symbol: str, timeframe: str) -> str:
    """File name holding `symbol` at `timeframe`, e.g. "BTC_USDT-1m.csv"."""
    timeframe_ms(timeframe)
    return f"{validate_symbol(symbol).replace('/', '_')}-{timeframe}.csv"


def csv_symbols(directory: str | Path, timeframe: str) -> list[str]:
    """Symbols with a file for `timeframe` in `directory`, sorted (the universe of a replay on that base)."""
    return sorted(
        f"{match[1]}/{match[2]}"
        for match in map(_FILE_PATTERN.match, (path.name for path in Path(directory).iterdir()))
        if match and match[3] == timeframe
    )
