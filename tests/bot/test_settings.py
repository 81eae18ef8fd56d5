"""Settings: the repository config loads, both memory layouts work, every problem is reported at once naming its key,
and the rules that keep `config check` from accepting configs the bot would refuse or never trade on."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crypto_bot.execution.broker import PaperConfig
from crypto_bot.market import MarketConfig, exchange_ids, offered_timeframes
from crypto_bot.market.source import ohlcv_frame
from crypto_bot.memory import ConfigError, sizeof
from crypto_bot.settings import (
    DEFAULT_SYMBOLS,
    DEFAULT_TIMEFRAMES,
    SECTIONS,
    TIMEFRAMES,
    Settings,
    StrategyConfig,
    load_settings,
    parse_settings,
)
from crypto_bot.working_set import minimum_working_set, window_bytes, working_set_bound_bytes
from tests.bot.conftest import REPOSITORY_CONFIG


def problems_of(raw: Any) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as error:
        parse_settings(raw)
    return error.value.problems


def test_the_repository_config_loads() -> None:
    settings = load_settings(REPOSITORY_CONFIG)
    assert settings.market.source == "simulated"
    assert settings.symbols[:2] == ("BTC/USDT", "ETH/USDT") and len(settings.symbols) == 6
    assert settings.timeframes == ("1m", "5m", "1h")
    assert settings.memory.cache_size_limit_mb == 256 and settings.memory.memory_threshold == 0.8
    assert settings.risk.max_open_positions == 4
    assert settings.storage.journal_path == "data/journal.sqlite"


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    settings = load_settings(path)
    assert settings == Settings()
    assert settings.symbols == DEFAULT_SYMBOLS and settings.timeframes == DEFAULT_TIMEFRAMES
    assert settings.strategy.batch_size == 6 and settings.paper.starting_balance == 10_000.0
    assert settings.memory.memory_threshold == 0.8 and settings.server.enabled is False


def test_every_section_is_a_frozen_typed_object() -> None:
    settings = parse_settings({})
    for name, section in SECTIONS.items():
        assert type(getattr(settings, name)) is section
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(getattr(settings, name), next(iter(section.__dataclass_fields__)), None)


def test_a_section_built_in_code_is_validated_like_one_from_a_file() -> None:
    with pytest.raises(ConfigError, match=r"invalid paper.fee_rate=0.1: allowed a number in \[0, 0.1\)"):
        PaperConfig(fee_rate=0.1)
    with pytest.raises(ConfigError, match="strategy.min_score"):
        dataclasses.replace(StrategyConfig(), min_score=0.5)


def test_a_nested_memory_section_works() -> None:
    settings = parse_settings({"memory": {"memory_threshold": 0.85, "cache_size_limit_mb": 64}})
    assert settings.memory.memory_threshold == 0.85 and settings.memory.cache_size_limit_mb == 64


def test_top_level_memory_keys_work() -> None:
    assert parse_settings({"gc_threshold": 0.65}).memory.gc_threshold == 0.65


def test_timeframes_are_sorted_and_deduplicated() -> None:
    assert parse_settings({"timeframes": ["1h", "1m", "1h"]}).timeframes == ("1m", "1h")


def test_raw_keeps_the_file_as_given() -> None:
    raw = {"memory_threshold": 0.85, "strategy": {"batch_size": 2}}
    assert parse_settings(raw).raw == raw


def test_numbers_in_range_are_accepted_at_the_closed_ends() -> None:
    settings = parse_settings({"paper": {"fee_rate": 0.0, "slippage_bps": 1000}, "strategy": {"min_score": 1}})
    assert (settings.paper.fee_rate, settings.paper.slippage_bps, settings.strategy.min_score) == (0.0, 1000, 1)


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        ({"colour": "red"}, ["unknown key colour", "allowed:", "strategy", "memory_threshold"]),
        ({"strategy": {"batch": 3}}, ["unknown key strategy.batch: did you mean strategy.batch_size?"]),
        ({"memory": {"memory_treshold": 0.8}}, ["unknown key memory_treshold: did you mean memory_threshold?"]),
        ({"fee_rate": 0.001}, ["unknown key fee_rate: did you mean paper.fee_rate?"]),
        ({"strategy": {"fee_rate": 0.001}}, ["unknown key strategy.fee_rate: did you mean paper.fee_rate?"]),
        ({"max_open_trades": 3}, ["max_open_trades is not a key of this version: use risk.max_open_positions"]),
        ({"dry_run": True}, ["dry_run", "paper trading is the only mode"]),
        ({"strategy": {"batch_size": 0}}, ["strategy.batch_size=0", "an integer in [1, 1000]"]),
        ({"paper": {"fee_rate": 0.5}}, ["paper.fee_rate=0.5", "[0, 0.1)"]),
        ({"strategy": {"min_score": float("nan")}}, ["strategy.min_score", "(0.5, 1]"]),
        ({"memory_threshold": 1.5}, ["memory_threshold=1.5", "(0, 1]"]),
        ({"risk": {"risk_per_trade_ratio": 0.5}}, ["risk.risk_per_trade_ratio=0.5", "(0, 0.1]"]),
        ({"strategy": {"batch_size": "six"}}, ["strategy.batch_size='six'", "an integer"]),
        ({"strategy": {"batch_size": True}}, ["strategy.batch_size=True", "an integer"]),
        ({"server": {"port": 9108.5}}, ["server.port", "an integer in [0, 65535]"]),
        ({"memory": {"cache_size_limit_mb": "lots"}}, ["cache_size_limit_mb", "a number in (0, 268435456]"]),
        ({"risk": {"max_open_positions": 2.5}}, ["risk.max_open_positions", "[1, 1000]"]),
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
        "misspelt-section-key",
        "misspelt-memory-key",
        "key-of-a-section-at-the-top-level",
        "key-of-another-section",
        "freqtrade-key",
        "freqtrade-dry-run",
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
    message = "\n".join(problems_of(raw))
    for fragment in fragments:
        assert fragment in message


def test_every_problem_is_reported_at_once_one_per_key() -> None:
    problems = problems_of(
        {
            "colour": "red",
            "memory_threshold": 2,
            "strategy": {"batch_size": 0, "min_score": 0.4},
            "risk": {"max_open_positions": 0},
            "paper": {"fee_rate": 0.1},
            "symbols": [],
        }
    )
    keys = ["colour", "memory_threshold", "strategy.batch_size", "strategy.min_score", "risk.max_open_positions",
            "paper.fee_rate", "symbols"]
    assert len(problems) == len(keys)
    for key, problem in zip(keys, problems):
        assert key in problem


# ------------------------------------------------------------------ configs the bot would refuse or never trade on


def test_a_fee_rate_of_exactly_the_brokers_bound_is_refused() -> None:
    assert problems_of({"paper": {"fee_rate": 0.1}}) == ("invalid paper.fee_rate=0.1: allowed a number in [0, 0.1)",)


@pytest.mark.parametrize("min_score", [0.4, 0.5])
def test_a_min_score_scoring_would_reject_is_refused(min_score: float) -> None:
    assert problems_of({"strategy": {"min_score": min_score}}) == (
        f"invalid strategy.min_score={min_score}: allowed a number in (0.5, 1]",
    )


def test_a_window_longer_than_one_fetch_is_refused() -> None:
    assert problems_of({"strategy": {"history_candles": 6000}}) == (
        "invalid strategy.history_candles=6000: allowed an integer in [60, 5000]",
    )


def test_a_window_too_short_for_the_ema_spans_is_refused() -> None:
    (problem,) = problems_of({"strategy": {"history_candles": 300, "ema_fast": 100, "ema_slow": 400}})
    assert problem.startswith("invalid strategy.history_candles=300: allowed an integer >= 400")


def test_training_settings_that_leave_too_few_labelled_candles_are_refused() -> None:
    (problem,) = problems_of(
        {"strategy": {"model_training_symbols": 1, "model_training_candles": 500, "model_horizon": 400}}
    )
    assert "strategy.model_training_candles" in problem and "at least 200" in problem


def test_a_training_fetch_beyond_the_fetch_limit_is_refused() -> None:
    (problem,) = problems_of({"strategy": {"model_training_candles": 200_000}})
    assert problem == "invalid strategy.model_training_candles=200000: allowed an integer in [500, 5000]"


def test_a_csv_directory_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    assert problems_of({"market": {"source": "csv", "csv_directory": str(missing)}}) == (
        f"invalid market.csv_directory={str(missing)!r}: allowed an existing directory",
    )


def test_a_csv_directory_without_candles_for_the_base_timeframe_is_refused(tmp_path: Path) -> None:
    (tmp_path / "BTC_USDT-1h.csv").write_text("", encoding="utf-8")
    (problem,) = problems_of({"market": {"source": "csv", "csv_directory": str(tmp_path)}, "timeframes": ["1m", "1h"]})
    assert "no candle files for timeframe 1m" in problem and "BTC_USDT-1m.csv" in problem


def test_a_csv_directory_with_candles_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "BTC_USDT-1m.csv").write_text("", encoding="utf-8")
    settings = parse_settings({"market": {"source": "csv", "csv_directory": str(tmp_path)}, "timeframes": ["1m"]})
    assert settings.market == MarketConfig(source="csv", csv_directory=str(tmp_path))


def test_an_exchange_ccxt_does_not_know_is_refused_with_a_suggestion() -> None:
    pytest.importorskip("ccxt")
    (problem,) = problems_of({"market": {"source": "ccxt", "exchange": "binanse"}})
    assert problem.startswith("invalid market.ccxt.exchange='binanse': allowed a ccxt exchange id")
    assert "did you mean binance" in problem


def test_a_timeframe_the_exchange_does_not_offer_is_refused() -> None:
    pytest.importorskip("ccxt")
    exchange, missing = next(
        (exchange, missing)
        for exchange in exchange_ids()
        if (missing := [timeframe for timeframe in TIMEFRAMES if timeframe not in offered_timeframes(exchange)])
    )
    (problem,) = problems_of({"market": {"source": "ccxt", "exchange": exchange}, "timeframes": [missing[0]]})
    assert problem.startswith(f"timeframes {missing[0]} are not offered by {exchange}; it offers ")


def test_without_ccxt_installed_a_ccxt_source_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ccxt", None)  # import ccxt raises ImportError
    monkeypatch.setitem(sys.modules, "ccxt.async_support", None)
    assert problems_of({"market": {"source": "ccxt"}}) == (
        "market.source=ccxt needs the optional dependency ccxt: pip install 'crypto-bot[ccxt]'",
    )


def test_ccxt_is_not_imported_for_another_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ccxt", None)
    monkeypatch.setitem(sys.modules, "ccxt.async_support", None)
    assert parse_settings({"market": {"exchange": "no-such-exchange"}}).market.exchange == "no-such-exchange"


def test_a_journal_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    assert problems_of({"storage": {"journal_path": str(tmp_path)}}) == (
        f"invalid storage.journal_path={str(tmp_path)!r}: allowed a file path, not a directory",
    )


def test_a_model_path_under_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    (problem,) = problems_of({"strategy": {"model_path": str(blocker / "model.npz")}})
    assert problem.startswith("invalid strategy.model_path=") and "is a file" in problem


def test_a_journal_path_the_os_cannot_use_is_refused_not_raised(tmp_path: Path) -> None:
    path = tmp_path / ("j" * 300 + ".sqlite")  # longer than any file name may be
    (problem,) = problems_of({"storage": {"journal_path": str(path)}})
    assert problem.startswith("invalid storage.journal_path=") and "a path the operating system can use" in problem


def test_a_cache_budget_below_the_working_set_is_refused_naming_both_figures() -> None:
    working_set = minimum_working_set(6, 3, 300)  # the defaults: 6 symbols, batch 6, 1m/5m/1h, 300 candles
    (problem,) = problems_of({"cache_size_limit_mb": 0.000001})
    assert problem == (
        f"cache_size_limit_mb=1e-06 (1 B) cannot hold the working set: {working_set.describe()}; "
        f"allowed >= {math.ceil(working_set.total_bytes / 2**20 * 100) / 100:g}"
    )
    assert "6 symbols per cycle x 3 timeframes x 300 candles x " in problem


def test_a_cache_budget_of_the_working_set_is_accepted() -> None:
    working_set_mb = minimum_working_set(6, 3, 300).total_bytes / 2**20
    assert parse_settings({"cache_size_limit_mb": working_set_mb}).memory.cache_size_limit_mb == working_set_mb
    problems_of({"cache_size_limit_mb": working_set_mb * 0.99})


def test_the_working_set_counts_the_symbols_of_one_cycle() -> None:
    (problem,) = problems_of({"cache_size_limit_mb": 0.001, "strategy": {"batch_size": 2}, "timeframes": ["1m"]})
    assert f"{minimum_working_set(2, 1, 300).describe()}" in problem  # batch_size of the six symbols, one timeframe


def test_a_replays_working_set_counts_its_files(tmp_path: Path) -> None:
    for symbol in ("BTC_USDT", "ETH_USDT"):
        (tmp_path / f"{symbol}-1m.csv").write_text("", encoding="utf-8")
    market = {"source": "csv", "csv_directory": str(tmp_path)}
    (problem,) = problems_of({"cache_size_limit_mb": 0.001, "market": market, "timeframes": ["1m"]})
    assert "2 symbols per cycle x 1 timeframe x 300 candles" in problem


def test_a_window_is_measured_as_the_cache_sizes_it() -> None:
    frame = ohlcv_frame(np.arange(300, dtype=np.int64) * 60_000, np.zeros((300, 5)))
    assert window_bytes(300) == sizeof(frame) and 40 * 300 < window_bytes(300) < 100 * 300


@pytest.mark.parametrize("candles", [60, 300, 1000, 5000])
@pytest.mark.parametrize(("symbols", "timeframes"), [(1, 1), (6, 3), (50, 5)])
def test_the_pandas_free_bound_holds_the_measured_working_set(symbols: int, timeframes: int, candles: int) -> None:
    measured_bytes = minimum_working_set(symbols, timeframes, candles).total_bytes
    assert measured_bytes <= working_set_bound_bytes(symbols, timeframes, candles)


def test_a_budget_between_the_working_set_and_its_bound_is_measured_and_accepted() -> None:
    measured_bytes = minimum_working_set(6, 3, 300).total_bytes
    assert measured_bytes < working_set_bound_bytes(6, 3, 300)
    parse_settings({"cache_size_limit_mb": (measured_bytes + 1) / 2**20})
    (problem,) = problems_of({"cache_size_limit_mb": (measured_bytes - 1) / 2**20})
    assert "cannot hold the working set" in problem


def test_metrics_without_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None)
    assert problems_of({"server": {"enabled": True}}) == (
        "server.enabled=true needs the optional dependency prometheus_client (for /metrics): "
        "pip install 'crypto-bot[metrics]'",
    )


def test_rules_across_sections_run_alongside_other_sections_problems(tmp_path: Path) -> None:
    problems = problems_of({"paper": {"fee_rate": 0.1}, "storage": {"journal_path": str(tmp_path)}})
    assert [problem.split("=")[0] for problem in problems] == ["invalid paper.fee_rate", "invalid storage.journal_path"]


# ------------------------------------------------------------------ files


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


def test_a_window_the_exchange_cannot_serve_is_refused_naming_the_limit() -> None:
    pytest.importorskip("ccxt")
    problems = problems_of(
        {"market": {"source": "ccxt", "ccxt": {"exchange": "okx"}}, "strategy": {"history_candles": 5000}}
    )
    assert any("strategy.history_candles" in problem and "at most" in problem for problem in problems), problems
