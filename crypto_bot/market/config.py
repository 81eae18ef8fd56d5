"""MarketConfig: the `market:` section, where the bot's candles come from; CcxtConfig: its `market.ccxt:` section.

Covers the sections' keys (meaning, allowed values, default) and their own cross-field rules.
Does not cover the checks that need the file system, the environment or ccxt (a CSV directory with
candles in it, an exchange ccxt knows, API-key variables that are set, a `history_candles` the
exchange can serve): `crypto_bot.settings` runs those, the ccxt ones through
`crypto_bot.market.ccxt_market.ccxt_source_problems`; nor opening a source (`crypto_bot.bot.build_market`).

`market.exchange` is the old name of `market.ccxt.exchange` and is still read: given alone it sets
`market.ccxt.exchange`; given with a different `market.ccxt.exchange` it is refused. After
construction both attributes hold the exchange in use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from crypto_bot.market.timeframes import MAX_LIMIT
from crypto_bot.memory.config import ConfigError, ConfigSection, Setting, setting, settings_of

SOURCES = ("simulated", "csv", "ccxt")
MARKET_TYPES = ("spot", "margin", "swap", "future")
DEFAULT_EXCHANGE = "binance"


def _variable(meaning: str) -> Any:
    return setting(None, meaning + " (the name of an environment variable, never the value)", str, optional=True)


@dataclass(frozen=True)
class CcxtConfig(ConfigSection):
    """The ccxt exchange: which one, its credentials' variable names, network, market type, timeout, page size."""

    key_prefix: ClassVar[str] = "market.ccxt."

    exchange: str = setting(DEFAULT_EXCHANGE, "ccxt exchange id", str)
    api_key_env: str | None = _variable("environment variable holding the API key")
    secret_env: str | None = _variable("environment variable holding the API secret")
    password_env: str | None = _variable("environment variable holding the API password (some exchanges)")
    sandbox: bool = setting(False, "use the exchange's test network (ccxt set_sandbox_mode)", bool)
    default_type: str = setting(
        "spot", "market type whose pairs make the universe (ccxt's defaultType)", str, choices=MARKET_TYPES
    )
    timeout_ms: int = setting(10_000, "HTTP timeout of one request (ms)", int, minimum=100, maximum=300_000)
    ohlcv_limit: int | None = setting(
        None, "candles per OHLCV request (null: the exchange's limit from ccxt's metadata)", int,
        minimum=1, maximum=MAX_LIMIT, optional=True,
    )


@dataclass(frozen=True, slots=True)
class _SectionSetting(Setting):
    """A key whose value is a nested section (`market.ccxt`), written as a mapping."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, CcxtConfig)

    @property
    def allowed(self) -> str:
        return f"a mapping with keys {', '.join(settings_of(CcxtConfig))}"


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
    exchange: str | None = setting(
        None, "old name of market.ccxt.exchange, still read; after loading, the exchange in use", str, optional=True
    )
    ccxt: CcxtConfig = field(
        default_factory=dict,  # built into a CcxtConfig by __post_init__, as a mapping from the file is
        metadata={"setting": _SectionSetting({}, "the ccxt exchange (market.source: ccxt)", dict)},
    )
    scanner_new_symbols_per_cycle: int = setting(
        0, "simulated scanner: new pairs listed every cycle (0: a fixed universe)", int, minimum=0, maximum=1000
    )
    max_universe: int = setting(
        500, "simulated scanner: most pairs listed at once; the oldest without a position go first", int,
        minimum=1, maximum=100_000,
    )

    def __post_init__(self) -> None:
        problems = self._resolve_ccxt()
        if problems:
            raise ConfigError(*problems, *self.problems())
        super().__post_init__()

    def _resolve_ccxt(self) -> list[str]:
        """Build `ccxt` from a mapping and fold the old `exchange` key into it; the problems found.

        On a problem `ccxt` is left at its default so the other keys are still checked (the object is
        never handed out: construction raises)."""
        value: Any = {} if self.ccxt is None else self.ccxt  # `ccxt:` with every key commented out
        if isinstance(value, Mapping):
            exchange_given = "exchange" in value
            try:
                value = CcxtConfig.from_mapping(value)
            except ConfigError as error:
                object.__setattr__(self, "ccxt", CcxtConfig())
                return list(error.problems)
        elif isinstance(value, CcxtConfig):
            exchange_given = True
        else:
            return []  # not a mapping: the key's own check reports it
        problems = []
        if self.exchange is not None and self.exchange != value.exchange:
            if exchange_given:
                problems.append(
                    f"market.exchange={self.exchange!r} (the old key) and market.ccxt.exchange={value.exchange!r} "
                    "disagree; keep market.ccxt.exchange only"
                )
            else:
                try:
                    value = replace(value, exchange=self.exchange)
                except ConfigError:  # not an exchange id at all: the old key's own check names it
                    object.__setattr__(self, "ccxt", value)
                    return []
        object.__setattr__(self, "ccxt", value)
        object.__setattr__(self, "exchange", value.exchange)
        return problems

    def _validate_csv_directory_given(self) -> list[str]:
        if self.source == "csv" and self.csv_directory is None:
            return ["market.csv_directory is required when market.source is csv"]
        return []

