"""Bot configuration: the YAML file's schema and the one typed settings tree built from it.

The file carries the seed's memory keys at the top level (or a `memory:` section), `symbols`,
`timeframes` and the sections market, strategy, risk, paper, storage, server, notify, recycle and allocator. Each
section is a frozen `ConfigSection` whose fields define its keys once (meaning, allowed values, default); the
component that uses a section takes the object and never checks it again.

`load_settings` is what `crypto-bot config check` and `run` call. It reports every problem at once,
each naming its key: unknown keys (keys of other bots' configs say what to write here instead,
typos get "did you mean"), values outside their range, then the cross-field and environment rules
below (`_validate_*`, in the style of freqtrade's config_validation), each run when the parts it
reads are valid. A config it accepts runs: the rules cover what the components would otherwise
refuse at run time or silently never trade on. That includes the strategy plugin: it is imported and
built with its params (then dropped; the bot builds its own), relative paths from the config file's
folder (`Settings.config_dir`).

See also: `crypto_bot.memory.config` (Setting, ConfigSection, MemoryConfig), `crypto_bot.market.config`
(MarketConfig), `crypto_bot.execution.risk` and `broker` (RiskConfig, PaperConfig).
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from crypto_bot.config_file import read_config_file
from crypto_bot.execution.broker import PaperConfig
from crypto_bot.execution.risk import RiskConfig
from crypto_bot.market.config import MarketConfig
from crypto_bot.market.csv_files import csv_file_name, csv_symbols
from crypto_bot.market.timeframes import MAX_LIMIT, TIMEFRAME_MS
from crypto_bot.memory.allocator import AllocatorConfig
from crypto_bot.memory.config import KEYS as MEMORY_KEYS
from crypto_bot.memory.config import (
    ConfigError,
    ConfigSection,
    MemoryConfig,
    Setting,
    invalid,
    mapping_setting,
    setting,
    settings_of,
    unknown_keys,
)
from crypto_bot.memory.recycle import RecycleConfig
from crypto_bot.memory.units import MIB
from crypto_bot.notify.config import NotifyConfig
from crypto_bot.status.config import ServerConfig
from crypto_bot.strategy.plugin import (
    SPEC_FORMS,
    PluginBuildError,
    PluginLoadError,
    PluginSpec,
    build_plugin,
    load_plugin_class,
)
from crypto_bot.strategy.warmup import MIN_TRAINING_ROWS, required_candles
from crypto_bot.working_set import minimum_working_set, working_set_bound_bytes

TIMEFRAMES = tuple(TIMEFRAME_MS)
DEFAULT_SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT", "ADA/USDT")
DEFAULT_TIMEFRAMES = ("1m", "5m", "1h")
BUILTIN_PLUGIN = "crypto_bot.strategy.builtin:BuiltinStrategy"


@dataclass(frozen=True, slots=True)
class _PluginSetting(Setting):
    """`strategy.plugin`: a non-empty string; whether it names a usable plugin is `_validate_strategy_plugin`'s."""

    @property
    def allowed(self) -> str:
        return SPEC_FORMS


@dataclass(frozen=True)
class StrategyConfig(ConfigSection):
    """The `strategy:` section: the plugin, what is analysed each cycle, the built-in strategy's indicators and model."""

    key_prefix: ClassVar[str] = "strategy."

    plugin: str = field(
        default=BUILTIN_PLUGIN,
        metadata={
            "setting": _PluginSetting(
                BUILTIN_PLUGIN, "the strategy plugin, called once per analysed symbol per cycle (README: Strategies)",
                str,
            )
        },
    )
    params: Mapping[str, Any] = mapping_setting(
        "keyword arguments the plugin class is built with (none: built with no arguments)"
    )
    plugin_max_failures: int = setting(
        10, "failures in a row (raising, or returning other than a score) after which the plugin is disabled", int,
        minimum=1, maximum=1_000_000,
    )

    batch_size: int = setting(
        6, "symbols analysed per cycle, besides those with open positions", int, minimum=1, maximum=1000
    )
    history_candles: int = setting(
        300, "bounded window of candles kept per series (fetched in one request at first)", int,
        minimum=60, maximum=MAX_LIMIT,
    )
    fetch_limit: int = setting(300, "most candles one update of a series fetches", int, minimum=1, maximum=MAX_LIMIT)
    ema_fast: int = setting(12, "fast EMA span (candles)", int, minimum=2, maximum=500)
    ema_slow: int = setting(26, "slow EMA span (candles)", int, minimum=3, maximum=1000)
    # A plugin's score s enters when its side's score (1 + |s|) / 2 reaches min_score: |s| >= 2 * min_score - 1.
    min_score: float = setting(
        0.55, "the side's score (1 + |score|) / 2 a signal needs to enter: |score| >= 2 * min_score - 1", float,
        minimum=0.5, minimum_open=True, maximum=1,
    )
    model_path: str = setting("data/signal_model.npz", "the signal model's file, trained there at first start", str)
    model_horizon: int = setting(5, "candles ahead the model predicts the direction of", int, minimum=1, maximum=500)
    model_training_symbols: int = setting(4, "simulated symbols the model is trained on", int, minimum=1, maximum=50)
    model_training_candles: int = setting(
        3000, "simulated candles per training symbol (one fetch)", int, minimum=500, maximum=MAX_LIMIT
    )

    def __post_init__(self) -> None:
        if self.params is None:  # `params:` with every entry commented out
            object.__setattr__(self, "params", {})
        super().__post_init__()

    def _validate_ema_order(self) -> list[str]:
        if self.ema_fast < self.ema_slow:
            return []
        return [f"strategy.ema_fast ({self.ema_fast}) must be smaller than strategy.ema_slow ({self.ema_slow})"]

    def _validate_window_holds_the_indicators(self) -> list[str]:
        # A shorter window never has enough candles to analyse: the bot would run and never trade.
        needed = required_candles(fast=self.ema_fast, slow=self.ema_slow)
        if self.history_candles >= needed:
            return []
        allowed = f"an integer >= {needed}, the candles the indicators need with these EMA spans"
        return [invalid("strategy.history_candles", self.history_candles, allowed)]

    def _validate_training_rows(self) -> list[str]:
        # Each training candle needs the indicators' warm-up behind it and the horizon ahead of it.
        rows = self.model_training_symbols * (self.model_training_candles - required_candles() + 1 - self.model_horizon)
        if rows >= MIN_TRAINING_ROWS:
            return []
        return [
            f"strategy.model_training_symbols x (strategy.model_training_candles - warm-up - strategy.model_horizon) "
            f"gives {max(rows, 0)} labelled candles; the signal model needs at least {MIN_TRAINING_ROWS}"
        ]


@dataclass(frozen=True)
class StorageConfig(ConfigSection):
    """The `storage:` section."""

    key_prefix: ClassVar[str] = "storage."

    journal_path: str = setting("data/journal.sqlite", "SQLite journal of positions and trades (WAL)", str)


SECTIONS: dict[str, type[ConfigSection]] = {
    "market": MarketConfig,
    "strategy": StrategyConfig,
    "risk": RiskConfig,
    "paper": PaperConfig,
    "storage": StorageConfig,
    "server": ServerConfig,
    "notify": NotifyConfig,
    "recycle": RecycleConfig,
    "allocator": AllocatorConfig,
}
TOP_LEVEL_KEYS = ("memory", "symbols", "timeframes", *SECTIONS, *sorted(MEMORY_KEYS))

# Keys that are not ours, with what to do instead: freqtrade's (many bot configs start from one).
# A renamed key of this project goes here too, with its replacement.
OLD_KEYS: dict[str, str] = {
    "metrics": "use the server: section instead (enabled, address, port): one server serves the status page, "
    "/api/status, /health and /metrics",
    "max_open_trades": "use risk.max_open_positions instead (freqtrade's name)",
    "dry_run_wallet": "use paper.starting_balance instead (freqtrade's name)",
    "dry_run": "remove it; paper trading is the only mode",
    "timeframe": "use timeframes instead, a list such as [1m, 5m, 1h]",
    "exchange": "use market.ccxt.exchange instead, with market.source: ccxt",
}


@dataclass(frozen=True)
class Settings:
    """A validated bot configuration: one frozen section object per component."""

    memory: MemoryConfig = field(default_factory=MemoryConfig)
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    timeframes: tuple[str, ...] = DEFAULT_TIMEFRAMES
    market: MarketConfig = field(default_factory=MarketConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    recycle: RecycleConfig = field(default_factory=RecycleConfig)
    allocator: AllocatorConfig = field(default_factory=AllocatorConfig)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)  # the file as given (BotContext.config)
    config_dir: Path = field(default_factory=Path.cwd, compare=False)  # relative plugin paths start here


def load_settings(path: str | Path) -> Settings:
    """Read (`config_file`: duplicate keys, encoding, YAML) and strictly validate a config file; ConfigError
    lists every problem."""
    raw = read_config_file(path)
    return parse_settings({} if raw is None else raw, config_dir=Path(path).absolute().parent)


def parse_settings(raw: Any, *, config_dir: Path | None = None) -> Settings:
    """Validate a config mapping; ConfigError lists every problem, each naming its key.

    `config_dir` is the folder relative plugin paths are taken from: the config file's (default: the
    current directory).
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the config must be a mapping of sections, got {type(raw).__name__}")
    problems = unknown_keys(raw, TOP_LEVEL_KEYS, renamed=OLD_KEYS, elsewhere=_SECTION_OF_KEY)
    parts: dict[str, Any] = {"memory": _memory(raw, problems), "config_dir": config_dir or Path.cwd()}
    for name, section in SECTIONS.items():
        parts[name] = _section(name, section, raw.get(name), problems)
    parts["symbols"] = _symbols(raw.get("symbols", list(DEFAULT_SYMBOLS)), problems)
    parts["timeframes"] = _timeframes(raw.get("timeframes", list(DEFAULT_TIMEFRAMES)), problems)
    for rule in _RULES:
        needed = inspect.signature(rule).parameters
        if all(parts[name] is not None for name in needed):
            problems.extend(rule(**{name: parts[name] for name in needed}))
    if problems:
        raise ConfigError(*problems)
    return Settings(**parts, raw=dict(raw))


_SECTION_OF_KEY = {key: f"{name}.{key}" for name, section in SECTIONS.items() for key in settings_of(section)}


def describe_keys() -> list[tuple[str, Any, str, str]]:
    """(key as written in the file, default, allowed values, meaning) of every key, from the schema."""
    rows = [(key, rule.default, rule.allowed, rule.meaning) for key, rule in settings_of(MemoryConfig).items()]
    rows.append(("symbols", list(DEFAULT_SYMBOLS), "a non-empty list of pairs like BTC/USDT", "the pairs traded"))
    rows.append(
        ("timeframes", list(DEFAULT_TIMEFRAMES), f"a non-empty list of {', '.join(TIMEFRAMES)}",
         "candle timeframes: the smallest is analysed, the largest gives the regime")
    )
    for name, section in SECTIONS.items():
        for key, rule in settings_of(section).items():
            rows.append((f"{name}.{key}", rule.default, rule.allowed, rule.meaning))
            nested = getattr(rule, "section", None)  # market.ccxt, market.redis: their own keys follow
            if nested is not None:
                rows.extend(
                    (f"{name}.{key}.{inner}", each.default, each.allowed, each.meaning)
                    for inner, each in settings_of(nested).items()
                )
    return rows


def _section(name: str, section: type[ConfigSection], values: Any, problems: list[str]) -> Any:
    """The section built from its mapping, or None with its problems added."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        problems.append(f"{name} must be a mapping with keys {', '.join(settings_of(section))}")
        return None
    try:
        return section.from_mapping(values, renamed=OLD_KEYS, elsewhere=_SECTION_OF_KEY)
    except ConfigError as error:
        problems.extend(error.problems)
        return None


def _memory(raw: Mapping[Any, Any], problems: list[str]) -> MemoryConfig | None:
    nested = raw.get("memory")
    top_level = {key: value for key, value in raw.items() if key in MEMORY_KEYS}
    if nested is not None and top_level:
        problems.append(
            f"memory settings given both at the top level ({', '.join(top_level)}) and in a memory: section; use one"
        )
        return None
    return _section("memory", MemoryConfig, nested if nested is not None else top_level, problems)


def _symbols(value: Any, problems: list[str]) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and "/" in s for s in value):
        problems.append(invalid("symbols", value, "a non-empty list of pairs like BTC/USDT"))
        return None
    if len(set(value)) != len(value):
        problems.append(f"symbols must not repeat a pair, got {value!r}")
        return None
    return tuple(value)


def _timeframes(value: Any, problems: list[str]) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not value or not all(isinstance(tf, str) and tf in TIMEFRAMES for tf in value):
        problems.append(invalid("timeframes", value, f"a non-empty list of {', '.join(TIMEFRAMES)}"))
        return None
    return tuple(sorted(set(value), key=TIMEFRAMES.index))


# ---------------------------------------------------------------- rules across keys and the environment
# Each reads the parts its parameters name (Settings fields) and returns the problems it finds.


def _validate_csv_source(market: MarketConfig, timeframes: tuple[str, ...]) -> list[str]:
    """A replay needs its directory, with candles on the smallest timeframe (the replay's base)."""
    if market.fetching_source != "csv" or market.csv_directory is None:
        return []
    directory = Path(market.csv_directory)
    if not directory.is_dir():
        return [invalid("market.csv_directory", market.csv_directory, "an existing directory")]
    if not csv_symbols(directory, timeframes[0]):
        return [
            f"market.csv_directory {market.csv_directory!r} has no candle files for timeframe {timeframes[0]} "
            f"(the smallest of timeframes); expected files like {csv_file_name('BTC/USDT', timeframes[0])}"
        ]
    return []


def _validate_ccxt_source(market: MarketConfig, timeframes: tuple[str, ...], strategy: StrategyConfig) -> list[str]:
    """A ccxt source (ccxt is imported only for one) must know the exchange, serve every timeframe and the window."""
    if market.source != "ccxt":
        return []
    from crypto_bot.market.ccxt_market import ccxt_source_problems  # pandas and ccxt: for a ccxt source only

    counts = {"strategy.history_candles": strategy.history_candles, "strategy.fetch_limit": strategy.fetch_limit}
    return ccxt_source_problems(market, timeframes, counts)


def _validate_journal_path(storage: StorageConfig) -> list[str]:
    return _file_path_problems("storage.journal_path", storage.journal_path)


def _validate_model_path(strategy: StrategyConfig) -> list[str]:
    return _file_path_problems("strategy.model_path", strategy.model_path)


def _file_path_problems(key: str, value: str) -> list[str]:
    """A file the bot creates: not a directory, and its nearest existing ancestor is a directory."""
    path = Path(value)
    try:
        if path.is_dir():
            return [invalid(key, value, "a file path, not a directory")]
        ancestor = next((parent for parent in path.absolute().parents if parent.exists()), None)
    except OSError as error:  # a name too long, a loop of links: the OS cannot use the path
        return [invalid(key, value, f"a path the operating system can use ({error.strerror or error})")]
    if ancestor is not None and not ancestor.is_dir():
        return [invalid(key, value, f"a path whose parent can be a directory ({ancestor} is a file)")]
    return []


def _validate_cache_budget_holds_the_working_set(
    memory: MemoryConfig, strategy: StrategyConfig, market: MarketConfig, symbols: tuple[str, ...],
    timeframes: tuple[str, ...],
) -> list[str]:
    """The budget holds one cycle's windows and regimes, or the cycle's own puts evict what it then reads."""
    universe = len(symbols)
    if market.source == "csv":  # a replay's universe is its files on the smallest timeframe
        directory = Path(market.csv_directory or "")
        universe = len(csv_symbols(directory, timeframes[0])) if directory.is_dir() else 0
    shape = (min(strategy.batch_size, universe), len(timeframes), strategy.history_candles)
    if memory.cache_size_limit_bytes >= working_set_bound_bytes(*shape):
        return []  # room to spare: no need to build frames (and import pandas) to measure them
    working_set = minimum_working_set(*shape)
    if not working_set.symbols or memory.cache_size_limit_bytes >= working_set.total_bytes:
        return []
    allowed_mb = math.ceil(working_set.total_bytes / MIB * 100) / 100
    return [
        f"cache_size_limit_mb={memory.cache_size_limit_mb} ({memory.cache_size_limit_bytes:,} B) cannot "
        f"hold the working set: {working_set.describe()}; allowed >= {allowed_mb:g}"
    ]


def _validate_strategy_plugin(strategy: StrategyConfig, config_dir: Path) -> list[str]:
    """The plugin imports, is a class with a callable `signal`, and builds with its params (the instance is dropped)."""
    try:
        plugin_class = load_plugin_class(PluginSpec.parse(strategy.plugin, config_dir))
        build_plugin(plugin_class, strategy.params)
    except PluginLoadError as error:
        return [f"strategy.plugin={strategy.plugin!r} cannot be used: {error}"]
    except PluginBuildError as error:
        return [f"strategy.params={dict(strategy.params)!r} cannot build {strategy.plugin}: {error}"]
    return []


def _validate_metrics_extra(server: ServerConfig) -> list[str]:
    if server.enabled and importlib.util.find_spec("prometheus_client") is None:
        return [
            "server.enabled=true needs the optional dependency prometheus_client (for /metrics): "
            "pip install 'crypto-bot[metrics]'"
        ]
    return []


def _validate_server_token(server: ServerConfig) -> list[str]:
    """Beyond loopback, anyone who reaches the port could read the bot: a token must guard it."""
    if not server.enabled or server.loopback or os.environ.get(server.token_variable):
        return []
    return [
        f"server.address={server.address!r} is reachable from other machines: set the environment variable "
        f"{server.token_variable} (server.token_variable) to a secret token, or bind 127.0.0.1"
    ]


def _validate_telegram_token(notify: NotifyConfig) -> list[str]:
    if notify.telegram_chat_id is None or os.environ.get(notify.telegram_token_variable):
        return []
    return [
        f"notify.telegram_chat_id is set but the environment variable {notify.telegram_token_variable} "
        "(notify.telegram_token_variable) holding the bot token is not"
    ]


_RULES: tuple[Callable[..., list[str]], ...] = (
    _validate_csv_source,
    _validate_ccxt_source,
    _validate_journal_path,
    _validate_model_path,
    _validate_cache_budget_holds_the_working_set,
    _validate_strategy_plugin,
    _validate_metrics_extra,
    _validate_server_token,
    _validate_telegram_token,
)
