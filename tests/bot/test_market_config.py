"""The market.ccxt section, the old market.exchange key, and the checks config check runs for a ccxt source."""

from __future__ import annotations

import pytest

from crypto_bot.market import MAX_OHLCV_PAGES, CcxtConfig, MarketConfig, ccxt_source_problems, max_candles_per_fetch
from crypto_bot.memory.config import ConfigError

CANDLES = {"strategy.history_candles": 300}


def problems_of(values: dict) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as error:
        MarketConfig.from_mapping(values)
    return error.value.problems


def test_the_ccxt_section_defaults_to_binance_spot_with_the_exchange_page_size():
    config = MarketConfig().ccxt
    assert config == CcxtConfig()
    assert (config.exchange, config.default_type, config.sandbox, config.timeout_ms, config.ohlcv_limit) == (
        "binance", "spot", False, 10_000, None
    )


def test_the_ccxt_section_is_read_from_a_mapping():
    market = MarketConfig.from_mapping(
        {"source": "ccxt", "ccxt": {"exchange": "kraken", "api_key_env": "KRAKEN_KEY", "ohlcv_limit": 500, "sandbox": True}}
    )
    assert market.ccxt == CcxtConfig(exchange="kraken", api_key_env="KRAKEN_KEY", ohlcv_limit=500, sandbox=True)
    assert market.exchange == "kraken"


def test_the_old_exchange_key_still_names_the_exchange():
    market = MarketConfig.from_mapping({"exchange": "okx"})
    assert market.ccxt.exchange == "okx" and market.exchange == "okx"


def test_the_old_and_new_exchange_keys_must_agree():
    assert problems_of({"exchange": "okx", "ccxt": {"exchange": "kraken"}}) == (
        "market.exchange='okx' (the old key) and market.ccxt.exchange='kraken' disagree; keep market.ccxt.exchange only",
    )
    assert MarketConfig.from_mapping({"exchange": "okx", "ccxt": {"exchange": "okx"}}).exchange == "okx"


def test_problems_inside_the_ccxt_section_name_their_dotted_keys_with_the_others():
    assert problems_of({"seed": -1, "ccxt": {"exchang": "okx", "timeout_ms": 5, "default_type": "options"}}) == (
        "unknown key market.ccxt.exchang: did you mean market.ccxt.exchange?",
        "invalid market.ccxt.default_type='options': allowed one of spot, margin, swap, future",
        "invalid market.ccxt.timeout_ms=5: allowed an integer in [100, 300000]",
        "invalid market.seed=-1: allowed an integer in [0, 4294967295]",
    )


def test_a_ccxt_section_that_is_not_a_mapping_is_refused_listing_its_keys():
    (problem,) = problems_of({"ccxt": ["binance"]})
    assert problem.startswith("invalid market.ccxt=['binance']: allowed a mapping with keys exchange, api_key_env,")


def test_an_empty_ccxt_section_is_the_defaults():
    assert MarketConfig.from_mapping({"ccxt": None}).ccxt == CcxtConfig()


def test_other_sources_need_no_ccxt_checks():
    assert ccxt_source_problems(MarketConfig(), ("1m",), {"strategy.history_candles": 5000}) == []


def test_a_valid_ccxt_source_has_no_problems():
    assert ccxt_source_problems(MarketConfig(source="ccxt"), ("1m", "5m", "1h"), CANDLES) == []


def test_an_unknown_exchange_is_named_with_suggestions():
    (problem,) = ccxt_source_problems(MarketConfig(source="ccxt", ccxt={"exchange": "binanse"}), ("1m",), CANDLES)
    assert problem.startswith("invalid market.ccxt.exchange='binanse': allowed a ccxt exchange id")
    assert "did you mean binance" in problem


def test_timeframes_the_exchange_does_not_offer_are_named():
    (problem,) = ccxt_source_problems(MarketConfig(source="ccxt", ccxt={"exchange": "coinbase"}), ("4h",), CANDLES)
    assert problem.startswith("timeframes 4h are not offered by coinbase")


def test_a_window_longer_than_one_fetch_can_serve_is_refused_naming_the_limit():
    market = MarketConfig(source="ccxt", ccxt={"exchange": "okx"})  # 300 candles a request in ccxt's metadata
    (problem,) = ccxt_source_problems(market, ("1m",), {"strategy.history_candles": 5000})
    assert problem == (
        f"invalid strategy.history_candles=5000: allowed at most {300 * MAX_OHLCV_PAGES}, what one fetch from okx "
        f"returns ({MAX_OHLCV_PAGES} requests of 300 candles, okx's limit in ccxt)"
    )
    assert ccxt_source_problems(market, ("1m",), {"strategy.history_candles": 3000}) == []


def test_the_ohlcv_limit_override_sets_what_one_fetch_can_serve():
    market = MarketConfig(source="ccxt", ccxt={"ohlcv_limit": 20})
    (problem,) = ccxt_source_problems(market, ("1m",), {"strategy.history_candles": 300, "strategy.fetch_limit": 200})
    assert problem.startswith("invalid strategy.history_candles=300: allowed at most 200")
    assert "market.ccxt.ohlcv_limit" in problem
    assert max_candles_per_fetch(market.ccxt) == 200


def test_credential_variables_must_be_set(monkeypatch):
    monkeypatch.delenv("TEST_UNSET_KEY", raising=False)
    monkeypatch.setenv("TEST_SET_SECRET", "s3cr3t-value")
    market = MarketConfig(source="ccxt", ccxt={"api_key_env": "TEST_UNSET_KEY", "secret_env": "TEST_SET_SECRET"})
    assert ccxt_source_problems(market, ("1m",), CANDLES) == [
        "market.ccxt.api_key_env names environment variable 'TEST_UNSET_KEY', which is unset or empty"
    ]


def test_a_sandbox_the_exchange_lacks_is_refused():
    market = MarketConfig(source="ccxt", ccxt={"exchange": "kraken", "sandbox": True})
    assert ccxt_source_problems(market, ("1m",), CANDLES) == [
        "market.ccxt.sandbox=true: kraken has no test network in ccxt; set it to false"
    ]


def test_a_missing_ccxt_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ccxt", None)
    monkeypatch.setitem(sys.modules, "ccxt.async_support", None)
    assert ccxt_source_problems(MarketConfig(source="ccxt"), ("1m",), CANDLES) == [
        "market.source=ccxt needs the optional dependency ccxt: pip install 'crypto-bot[ccxt]'"
    ]
