"""Bot configuration: the YAML file's schema, validated in one place.

The file carries the seed's memory keys at the top level (or a `memory:` section) and the bot's
own sections: market, symbols, timeframes, strategy, risk, paper, storage, metrics. `load_settings`
is strict (the CLI's `config check` and `run`): anything wrong, unknown keys included, raises
`ConfigError` naming the key and the allowed values. Memory keys are validated by `MemoryConfig`,
the risk section by `RiskConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from crypto_bot.execution import RiskConfig
from crypto_bot.memory import ConfigError, MemoryConfig
from crypto_bot.memory.config import KEYS as MEMORY_KEYS

TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")


@dataclass(frozen=True, slots=True)
class Rule:
    """One setting: its default, a check and the allowed values as a person reads them."""

    default: Any
    check: Callable[[Any], bool]
    allowed: str


def _number(low: float, high: float, *, low_open: bool = True) -> Rule:
    def check(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return (low < v if low_open else low <= v) and v <= high

    return Rule(None, check, f"a number in {'(' if low_open else '['}{low}, {high}]")


def _int(low: int, high: int) -> Rule:
    return Rule(None, lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high, f"an integer in [{low}, {high}]")


def _choice(*values: Any) -> Rule:
    return Rule(None, lambda v: v in values, "one of " + ", ".join(map(str, values)))


def _text(optional: bool = False) -> Rule:
    allowed = "a string or null" if optional else "a non-empty string"
    return Rule(None, lambda v: (optional and v is None) or (isinstance(v, str) and bool(v)), allowed)


def _flag() -> Rule:
    return Rule(None, lambda v: isinstance(v, bool), "true or false")


def _with(rule: Rule, default: Any) -> Rule:
    return Rule(default, rule.check, rule.allowed)


SECTIONS: dict[str, dict[str, Rule]] = {
    "market": {
        "source": _with(_choice("simulated", "csv", "ccxt"), "simulated"),
        "seed": _with(_int(0, 2**32 - 1), 42),
        "csv_directory": _with(_text(optional=True), None),
        "exchange": _with(_text(), "binance"),
        "scanner_new_symbols_per_cycle": _with(_int(0, 1000), 0),
        "max_universe": _with(_int(1, 100_000), 500),
    },
    "strategy": {
        "batch_size": _with(_int(1, 1000), 6),
        "history_candles": _with(_int(60, 100_000), 300),
        "fetch_limit": _with(_int(1, 5000), 300),
        "ema_fast": _with(_int(2, 500), 12),
        "ema_slow": _with(_int(3, 1000), 26),
        "min_score": _with(_number(0, 1), 0.55),
        "model_path": _with(_text(), "data/signal_model.joblib"),
        "model_horizon": _with(_int(1, 500), 5),
        "model_training_symbols": _with(_int(1, 50), 4),
        "model_training_candles": _with(_int(500, 200_000), 3000),
    },
    "paper": {
        "starting_balance": _with(_number(0, 1e12), 10_000.0),
        "fee_rate": _with(_number(0, 0.1, low_open=False), 0.001),
        "slippage_bps": _with(_number(0, 1000, low_open=False), 5.0),
    },
    "storage": {
        "journal_path": _with(_text(), "data/journal.sqlite"),
    },
    "metrics": {
        "enabled": _with(_flag(), False),
        "port": _with(_int(1, 65535), 9108),
        "address": _with(_text(), "127.0.0.1"),
    },
}
DEFAULT_SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT", "ADA/USDT"]
DEFAULT_TIMEFRAMES = ["1m", "5m", "1h"]


@dataclass(frozen=True, slots=True)
class Settings:
    """A validated bot configuration."""

    memory: MemoryConfig
    symbols: list[str]
    timeframes: list[str]
    market: dict[str, Any]
    strategy: dict[str, Any]
    risk: RiskConfig
    paper: dict[str, Any]
    storage: dict[str, Any]
    metrics: dict[str, Any]
    raw: dict[str, Any]


def load_settings(path: str | Path) -> Settings:
    """Read and strictly validate a YAML config file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    return parse_settings({} if raw is None else raw)


def parse_settings(raw: Any) -> Settings:
    """Validate a config mapping; raises ConfigError naming the first wrong key."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the config must be a mapping of sections, got {type(raw).__name__}")
    allowed_top = set(SECTIONS) | {"symbols", "timeframes", "memory", "risk"} | MEMORY_KEYS
    unknown = sorted(set(raw) - allowed_top, key=str)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(sorted(allowed_top))}")
    memory_section = raw.get("memory")
    top_memory = {k: v for k, v in raw.items() if k in MEMORY_KEYS}
    if memory_section is not None and top_memory:
        raise ConfigError("memory settings given both at the top level and in a memory: section; use one")
    if memory_section is not None and not isinstance(memory_section, Mapping):
        raise ConfigError("memory must be a mapping of memory settings")
    memory = MemoryConfig.from_mapping(memory_section if memory_section is not None else top_memory)
    sections = {name: _section(name, raw.get(name), rules) for name, rules in SECTIONS.items()}
    if sections["strategy"]["ema_fast"] >= sections["strategy"]["ema_slow"]:
        raise ConfigError("strategy.ema_fast must be smaller than strategy.ema_slow")
    if sections["market"]["source"] == "csv" and not sections["market"]["csv_directory"]:
        raise ConfigError("market.csv_directory is required when market.source is csv")
    risk_section = raw.get("risk")
    if risk_section is None:
        risk_section = {}
    if not isinstance(risk_section, Mapping):
        raise ConfigError("risk must be a mapping of risk settings")
    try:
        risk = RiskConfig.from_mapping(risk_section)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid risk section: {error}") from error
    return Settings(
        memory=memory,
        risk=risk,
        symbols=_symbols(raw.get("symbols", DEFAULT_SYMBOLS)),
        timeframes=_timeframes(raw.get("timeframes", DEFAULT_TIMEFRAMES)),
        raw=dict(raw),
        **sections,
    )


def _section(name: str, values: Any, rules: dict[str, Rule]) -> dict[str, Any]:
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{name} must be a mapping with keys {', '.join(rules)}")
    unknown = sorted(set(values) - set(rules), key=str)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; allowed: {', '.join(rules)}")
    result = {}
    for key, rule in rules.items():
        value = values.get(key, rule.default)
        if not rule.check(value):
            raise ConfigError(f"invalid {name}.{key}={value!r}: allowed {rule.allowed}")
        result[key] = value
    return result


def _symbols(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and "/" in s for s in value):
        raise ConfigError(f"invalid symbols={value!r}: allowed a non-empty list of pairs like BTC/USDT")
    if len(set(value)) != len(value):
        raise ConfigError("symbols must not repeat a pair")
    return list(value)


def _timeframes(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(tf in TIMEFRAMES for tf in value):
        raise ConfigError(f"invalid timeframes={value!r}: allowed a non-empty list of {', '.join(TIMEFRAMES)}")
    return sorted(set(value), key=TIMEFRAMES.index)
