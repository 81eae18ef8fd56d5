"""MarketConfig: the `market:` section, where the bot's candles come from; CcxtConfig and RedisConfig: its
`market.ccxt:` and `market.redis:` sections.

Covers the sections' keys (meaning, allowed values, default) and their own cross-field rules.
Does not cover the checks that need the file system, the environment or ccxt (a CSV directory with
candles in it, an exchange ccxt knows, API-key variables that are set, a `history_candles` the
exchange can serve): `crypto_bot.settings` runs those, the ccxt ones through
`crypto_bot.market.ccxt_market.ccxt_source_problems`; nor opening a source (`crypto_bot.bot.build_market`).

`market.exchange` is the old name of `market.ccxt.exchange` and is still read: given alone it sets
`market.ccxt.exchange`; given with a different `market.ccxt.exchange` it is refused. After
construction both attributes hold the exchange in use.

`market.source: redis` makes the process a worker of a fleet (`crypto_bot.fleet`): it reads candles
from the shared Redis tier that `crypto-bot feed` fills from `market.redis.upstream` (simulated, csv
or ccxt, configured by the same keys as when the bot reads them itself): `fetching_source` names
the source that talks to the exchange, whichever process runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from crypto_bot.market.timeframes import MAX_LIMIT
from crypto_bot.memory.config import MAX_SECONDS, ConfigError, ConfigSection, Setting, invalid, setting, settings_of

UPSTREAMS = ("simulated", "csv", "ccxt")
SOURCES = (*UPSTREAMS, "redis")
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


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_REDIS_ADDRESS = "127.0.0.1:6379"


def split_address(address: str) -> tuple[str, int] | None:
    """("host", port) of "host:port" ("[::1]:6379" for IPv6), or None when it is not one."""
    host, separator, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not separator or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (127.0.0.0/8, ::1, localhost)."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


@dataclass(frozen=True)
class RedisConfig(ConfigSection):
    """The fleet's shared tier: where Redis listens, how to log in, what the feeder reads, how long entries live."""

    address: str = setting(
        DEFAULT_REDIS_ADDRESS, "host:port of the Redis server; loopback unless market.redis.password_env is set", str
    )
    db: int = setting(0, "Redis database number", int, minimum=0, maximum=1023)
    key_prefix: str = setting("crypto_bot:", "prefix of every key the fleet reads and writes (fleets may share a server)", str)
    password_env: str | None = _variable("environment variable holding the Redis password (requirepass)")
    tls: bool = setting(False, "connect with TLS (a server started with tls-port)", bool)
    tls_ca_file: str | None = setting(None, "CA certificate file to verify the server with (TLS)", str, optional=True)
    upstream: str = setting(
        "simulated", "where crypto-bot feed reads candles (configured by the market keys of that source)", str,
        choices=UPSTREAMS,
    )
    window_ttl_seconds: int = setting(
        86_400, "time to live of a candle window in Redis, renewed at each close the feeder writes", int,
        minimum=60, maximum=MAX_SECONDS,
    )
    closes_stream_length: int = setting(
        10_000, "closes kept on the announcement stream (approximate)", int, minimum=100, maximum=10_000_000
    )
    feeder_buffer_closes: int = setting(
        10_000, "closes the feeder keeps while Redis is down, to announce when it is back; the oldest go first", int,
        minimum=1, maximum=10_000_000,
    )
    heartbeat_ttl_seconds: int = setting(
        600, "how long a silent worker's heartbeat stays visible in crypto-bot status --fleet", int,
        minimum=10, maximum=MAX_SECONDS,
    )
    timeout_seconds: float = setting(
        2.0, "connect and reply timeout of one Redis command", float, minimum=0.05, maximum=300
    )

    @classmethod
    def written_prefix(cls) -> str:
        return "market.redis."  # `key_prefix` is a key of this section, the Redis keys' prefix

    def _validate_address(self) -> list[str]:
        if split_address(self.address) is None:
            return [invalid("market.redis.address", self.address, "host:port, e.g. 127.0.0.1:6379")]
        return []

    def _validate_password_off_loopback(self) -> list[str]:
        # Redis without requirepass gives any client every key (and CONFIG): only this machine may reach it.
        parts = split_address(self.address)
        if parts is None or is_loopback(parts[0]) or self.password_env is not None:
            return []
        return [
            f"market.redis.address={self.address!r} is not on loopback: set market.redis.password_env to the "
            "variable holding the server's requirepass password (and consider market.redis.tls: true)"
        ]

    def _validate_key_prefix(self) -> list[str]:
        if any(character.isspace() for character in self.key_prefix):
            return [invalid("market.redis.key_prefix", self.key_prefix, "a non-empty string without spaces")]
        return []


@dataclass(frozen=True, slots=True)
class _SectionSetting(Setting):
    """A key whose value is a nested section (`market.ccxt`, `market.redis`), written as a mapping."""

    section: type[ConfigSection] = ConfigSection

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.section)

    @property
    def allowed(self) -> str:
        return f"a mapping with keys {', '.join(settings_of(self.section))}"


@dataclass(frozen=True)
class MarketConfig(ConfigSection):
    """The market data source and the simulated scanner."""

    key_prefix: ClassVar[str] = "market."

    source: str = setting(
        "simulated", "simulated (built in), csv (replay files), ccxt (live candles) or redis (a fleet's shared tier)",
        str, choices=SOURCES,
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
        metadata={"setting": _SectionSetting({}, "the ccxt exchange (market.source: ccxt)", dict, section=CcxtConfig)},
    )
    redis: RedisConfig = field(
        default_factory=dict,  # built into a RedisConfig by __post_init__
        metadata={"setting": _SectionSetting({}, "the fleet's Redis tier (market.source: redis)", dict, section=RedisConfig)},
    )
    scanner_new_symbols_per_cycle: int = setting(
        0, "simulated scanner: new pairs listed every cycle (0: a fixed universe)", int, minimum=0, maximum=1000
    )
    max_universe: int = setting(
        500, "simulated scanner: most pairs listed at once; the oldest without a position go first", int,
        minimum=1, maximum=100_000,
    )

    def __post_init__(self) -> None:
        problems = [*self._resolve_ccxt(), *self._resolve_redis()]
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

    def _resolve_redis(self) -> list[str]:
        """Build `redis` from a mapping; the problems found (on one, `redis` is left at its default)."""
        value: Any = {} if self.redis is None else self.redis
        if not isinstance(value, Mapping):
            return []  # a RedisConfig already, or not a mapping: the key's own check reports it
        try:
            object.__setattr__(self, "redis", RedisConfig.from_mapping(value))
        except ConfigError as error:
            object.__setattr__(self, "redis", RedisConfig())
            return list(error.problems)
        return []

    @property
    def fetching_source(self) -> str:
        """The source that fetches from the exchange: `source`, or for a fleet `redis.upstream` (the feeder's)."""
        return self.redis.upstream if self.source == "redis" else self.source

    def _validate_csv_directory_given(self) -> list[str]:
        if self.fetching_source == "csv" and self.csv_directory is None:
            return [f"market.csv_directory is required when {self._fetching_key} is csv"]
        return []

    @property
    def _fetching_key(self) -> str:
        return "market.redis.upstream" if self.source == "redis" else "market.source"

