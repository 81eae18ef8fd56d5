"""Settings: the repository config loads, both memory layouts work, and every kind of error names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crypto_bot.memory import ConfigError
from crypto_bot.settings import DEFAULT_SYMBOLS, DEFAULT_TIMEFRAMES, load_settings, parse_settings
from tests.bot.conftest import REPOSITORY_CONFIG


def test_the_repository_config_loads() -> None:
    settings = load_settings(REPOSITORY_CONFIG)
    assert settings.market["source"] == "simulated"
    assert settings.symbols[:2] == ["BTC/USDT", "ETH/USDT"] and len(settings.symbols) == 6
    assert settings.timeframes == ["1m", "5m", "1h"]
    assert settings.memory.cache_size_limit_mb == 256 and settings.memory.memory_threshold == 0.8
    assert settings.risk.max_open_positions == 4
    assert settings.storage["journal_path"] == "data/journal.sqlite"


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    settings = load_settings(path)
    assert settings.symbols == DEFAULT_SYMBOLS and settings.timeframes == DEFAULT_TIMEFRAMES
    assert settings.strategy["batch_size"] == 6 and settings.paper["starting_balance"] == 10_000.0
    assert settings.memory.memory_threshold == 0.8 and settings.metrics["enabled"] is False


def test_a_nested_memory_section_works() -> None:
    settings = parse_settings({"memory": {"memory_threshold": 0.85, "cache_size_limit_mb": 64}})
    assert settings.memory.memory_threshold == 0.85 and settings.memory.cache_size_limit_mb == 64


def test_top_level_memory_keys_work() -> None:
    assert parse_settings({"gc_threshold": 0.65}).memory.gc_threshold == 0.65


def test_timeframes_are_sorted_and_deduplicated() -> None:
    assert parse_settings({"timeframes": ["1h", "1m", "1h"]}).timeframes == ["1m", "1h"]


def test_raw_keeps_the_file_as_given() -> None:
    raw = {"memory_threshold": 0.85, "strategy": {"batch_size": 2}}
    assert parse_settings(raw).raw == raw


def test_numbers_in_range_are_accepted_at_the_closed_ends() -> None:
    settings = parse_settings({"paper": {"fee_rate": 0.0, "slippage_bps": 1000}, "strategy": {"min_score": 1}})
    assert (settings.paper["fee_rate"], settings.paper["slippage_bps"], settings.strategy["min_score"]) == (0.0, 1000, 1)


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        ({"colour": "red"}, ["colour", "allowed:", "strategy", "memory_threshold"]),
        ({"strategy": {"batch": 3}}, ["strategy.batch", "allowed: batch_size"]),
        ({"memory": {"memory_treshold": 0.8}}, ["memory_treshold", "allowed keys"]),
        ({"strategy": {"batch_size": 0}}, ["strategy.batch_size=0", "an integer in [1, 1000]"]),
        ({"paper": {"fee_rate": 0.5}}, ["paper.fee_rate=0.5", "[0, 0.1]"]),
        ({"strategy": {"min_score": float("nan")}}, ["strategy.min_score", "(0, 1]"]),
        ({"memory_threshold": 1.5}, ["memory_threshold=1.5", "(0, 1]"]),
        ({"risk": {"risk_per_trade_ratio": 0.5}}, ["risk_per_trade_ratio", "(0.0, 0.1]"]),
        ({"strategy": {"batch_size": "six"}}, ["strategy.batch_size='six'", "an integer"]),
        ({"strategy": {"batch_size": True}}, ["strategy.batch_size=True", "an integer"]),
        ({"metrics": {"port": 9108.5}}, ["metrics.port", "an integer in [1, 65535]"]),
        ({"memory": {"cache_size_limit_mb": "lots"}}, ["cache_size_limit_mb", "a positive number"]),
        ({"risk": {"max_open_positions": 2.5}}, ["max_open_positions", "[1, 1000]"]),
        ({"market": {"source": "binance"}}, ["market.source", "one of simulated, csv, ccxt"]),
        ({"strategy": "fast"}, ["strategy must be a mapping", "batch_size"]),
        ({"memory": 5}, ["memory must be a mapping"]),
        ({"risk": 5}, ["risk must be a mapping"]),
        ({"risk": []}, ["risk must be a mapping"]),
        ({"symbols": "BTC/USDT"}, ["symbols", "a non-empty list of pairs"]),
        ({"symbols": ["BTC/USDT", "BTC/USDT"]}, ["symbols must not repeat"]),
        ({"timeframes": ["2m"]}, ["timeframes", "1m, 5m, 15m, 1h, 4h, 1d"]),
        ({"strategy": {"ema_fast": 30, "ema_slow": 26}}, ["strategy.ema_fast", "strategy.ema_slow"]),
        ({"market": {"source": "csv"}}, ["market.csv_directory"]),
        ({"gc_threshold": 0.9, "memory_threshold": 0.8}, ["gc_threshold", "memory_threshold"]),
        ({"memory_threshold": 0.8, "memory": {"gc_threshold": 0.6}}, ["memory:", "top level"]),
        ({1: "x", "colour": "red"}, ["1", "colour"]),
    ],
    ids=[
        "unknown-top-level-key",
        "unknown-section-key",
        "unknown-memory-key",
        "integer-out-of-range",
        "ratio-out-of-range",
        "nan",
        "memory-out-of-range",
        "risk-out-of-range",
        "string-for-integer",
        "bool-for-integer",
        "float-for-integer",
        "string-for-memory-number",
        "float-for-risk-integer",
        "unknown-choice",
        "section-not-a-mapping",
        "memory-not-a-mapping",
        "risk-not-a-mapping",
        "risk-empty-list",
        "symbols-not-a-list",
        "symbols-repeated",
        "unknown-timeframe",
        "ema-order",
        "csv-without-directory",
        "threshold-order",
        "memory-in-both-places",
        "non-string-keys",
    ],
)
def test_an_invalid_config_raises_naming_the_key(raw: dict[Any, Any], fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(raw)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_a_config_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ConfigError, match="mapping of sections, got list"):
        parse_settings(["strategy"])


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("strategy: {batch_size: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml")
