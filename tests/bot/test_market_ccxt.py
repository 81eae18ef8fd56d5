"""CcxtMarket against a real HTTP server on 127.0.0.1 that speaks Binance's spot REST API.

A real ccxt client sends real requests over a socket; every API URL of the exchange is pointed at
the loopback server, and name resolution of any other host fails the test (no internet).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("ccxt")

from crypto_bot import cli, redaction
from crypto_bot.market import CcxtMarket, MarketDataSource
from tests.bot.exchange_stub import HOUR_MS, LOOPBACK_CONFIG, SERVER_NOW_MS, LoopbackBinance, point_at, running_server

CLIENT_NOW_MS = SERVER_NOW_MS + 30 * 60_000


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if anything tries to resolve a host other than the loopback server."""
    resolve = socket.getaddrinfo

    def loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", b"127.0.0.1"):
            raise OSError(f"test tried to reach {host!r}: no network in tests")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


@pytest.fixture
def server() -> Iterator[LoopbackBinance]:
    with running_server() as httpd:
        yield httpd


@asynccontextmanager
async def loopback_market(
    server: LoopbackBinance, *, options: dict[str, Any] | None = None, **kwargs: Any
) -> AsyncIterator[CcxtMarket]:
    """A CcxtMarket whose every Binance API URL points at `server`, closed on exit."""
    config = {**LOOPBACK_CONFIG, "options": {**LOOPBACK_CONFIG["options"], **(options or {})}}
    market = CcxtMarket("binance", config=config, clock_ms=lambda: CLIENT_NOW_MS, **kwargs)
    point_at(market, server)
    try:
        yield market
    finally:
        await market.close()


def run_with_market(server: LoopbackBinance, scenario, **kwargs: Any) -> Any:
    async def main() -> Any:
        async with loopback_market(server, **kwargs) as market:
            return await scenario(market)

    return asyncio.run(main())


def test_satisfies_the_market_data_source_protocol(server):
    async def scenario(market: CcxtMarket) -> bool:
        return isinstance(market, MarketDataSource)

    assert run_with_market(server, scenario)


def test_fetch_sends_symbol_interval_and_limit_to_the_exchange(server):
    async def scenario(market: CcxtMarket) -> pd.DataFrame:
        return await market.fetch_ohlcv("BTC/USDT", "1h", limit=3)

    run_with_market(server, scenario)
    assert server.klines_requests() == [{"symbol": "BTCUSDT", "interval": "1h", "limit": "4"}]


def test_fetch_converts_klines_to_the_ohlcv_frame_without_the_open_candle(server):
    async def scenario(market: CcxtMarket) -> pd.DataFrame:
        return await market.fetch_ohlcv("BTC/USDT", "1h", limit=3)

    frame = run_with_market(server, scenario)
    expected_index = pd.DatetimeIndex(
        ["2024-01-01 07:00", "2024-01-01 08:00", "2024-01-01 09:00"], tz="UTC", name="timestamp"
    )
    pd.testing.assert_index_equal(frame.index, expected_index, check_exact=True, exact=False)
    assert frame.loc["2024-01-01 09:00"].tolist() == [10.5, 11.0, 10.0, 10.75, 12.5]
    assert list(frame.dtypes) == ["float64"] * 5


def test_since_is_sent_as_start_time_and_pages_forward(server):
    async def scenario(market: CcxtMarket) -> pd.DataFrame:
        return await market.fetch_ohlcv("BTC/USDT", "1h", since_ms=SERVER_NOW_MS - 2 * HOUR_MS, limit=5)

    frame = run_with_market(server, scenario)
    assert server.klines_requests() == [
        {"symbol": "BTCUSDT", "interval": "1h", "startTime": str(SERVER_NOW_MS - 2 * HOUR_MS), "limit": "5"}
    ]
    assert frame["close"].tolist() == [9.75, 10.75]


def test_markets_are_loaded_from_exchange_info_once_and_the_clock_sampled_once(server):
    async def scenario(market: CcxtMarket) -> None:
        await market.fetch_ohlcv("BTC/USDT", "1h", limit=1)
        await market.fetch_ohlcv("BTC/USDT", "1h", limit=1)

    run_with_market(server, scenario)
    assert server.paths() == ["/api/v3/time", "/api/v3/exchangeInfo", "/api/v3/klines", "/api/v3/klines"]


def test_universe_is_active_spot_markets_in_the_quote_currency(server):
    async def scenario(market: CcxtMarket) -> tuple[list[str], list[str]]:
        before = market.universe()
        await market.load_markets()
        return before, market.universe()

    before, after = run_with_market(server, scenario)
    assert before == []
    assert after == ["BTC/USDT"]


def test_configured_symbols_fix_the_universe(server):
    async def scenario(market: CcxtMarket) -> list[str]:
        return market.universe()

    assert run_with_market(server, scenario, symbols=["ETH/BTC", "BTC/USDT"]) == ["ETH/BTC", "BTC/USDT"]


def test_unknown_symbol_raises_key_error_without_requesting_candles(server):
    async def scenario(market: CcxtMarket) -> None:
        await market.fetch_ohlcv("DOGE/USDT", "1h")

    with pytest.raises(KeyError, match="unknown symbol 'DOGE/USDT' on binance"):
        run_with_market(server, scenario)
    assert server.klines_requests() == []


def test_advance_does_not_move_the_injected_clock(server):
    async def scenario(market: CcxtMarket) -> int:
        market.advance()
        return market.now_ms

    assert run_with_market(server, scenario) == CLIENT_NOW_MS


def test_rate_limiting_is_enabled_with_the_exchange_default_interval():
    exchange = CcxtMarket("binance").exchange
    assert exchange.enableRateLimit is True
    assert exchange.rateLimit == 50


def test_verbose_mode_is_rejected_as_it_prints_keys():
    with pytest.raises(ValueError, match=r"config\['verbose'\] must be false"):
        CcxtMarket("binance", config={"verbose": True})


def test_timeframes_default_to_the_allowed_ones_the_exchange_offers():
    assert CcxtMarket("binance").timeframes == ("1m", "5m", "15m", "1h", "4h", "1d")


def test_config_disabling_rate_limiting_is_rejected():
    with pytest.raises(ValueError, match=r"config\['enableRateLimit'\] must be True"):
        CcxtMarket("binance", config={"enableRateLimit": False})


def test_close_closes_the_session_and_is_idempotent(server):
    async def scenario() -> tuple[Any, CcxtMarket]:
        market = CcxtMarket("binance", config=LOOPBACK_CONFIG, clock_ms=lambda: CLIENT_NOW_MS)
        point_at(market, server)
        await market.fetch_ohlcv("BTC/USDT", "1h", limit=1)
        session = market.exchange.session
        await market.close()
        await market.close()
        return session, market

    session, market = asyncio.run(scenario())
    assert session.closed
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(market.fetch_ohlcv("BTC/USDT", "1h"))


def test_credentials_come_from_named_environment_variables_and_stay_out_of_repr_and_logs(monkeypatch, caplog, server):
    monkeypatch.setenv("TEST_BINANCE_KEY", "key-1234-secret-looking")
    monkeypatch.setenv("TEST_BINANCE_SECRET", "s3cr3t-value-9876")
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(redaction.RedactingFilter())  # what redaction.install() puts on the command's handlers

    async def scenario(market: CcxtMarket) -> tuple[str, str, str]:
        await market.load_markets()  # with margin pairs: signed requests carrying the key header
        return market.exchange.apiKey, market.exchange.secret, repr(market)

    api_key, secret, text = run_with_market(
        server,
        scenario,
        options={"fetchMargins": True},
        api_key_env="TEST_BINANCE_KEY",
        secret_env="TEST_BINANCE_SECRET",
    )
    assert (api_key, secret) == ("key-1234-secret-looking", "s3cr3t-value-9876")
    assert "authenticated=True" in text
    assert "X-MBX-APIKEY" in caplog.text  # ccxt did log the request headers
    for value in (api_key, secret):
        assert value not in text
        assert value not in caplog.text


def test_credentials_are_registered_for_redaction_as_they_are_read(monkeypatch):
    monkeypatch.setenv("TEST_BINANCE_KEY", "key-registered-when-read")
    CcxtMarket("binance", api_key_env="TEST_BINANCE_KEY")
    assert redaction.redact("echo key-registered-when-read") == "echo ***"


def test_a_credential_too_short_to_redact_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("TEST_SHORT_PASSWORD", "abc")
    with pytest.raises(ValueError, match="password_env names environment variable 'TEST_SHORT_PASSWORD', whose value is too short"):
        CcxtMarket("binance", password_env="TEST_SHORT_PASSWORD")


def test_an_exchange_error_echoing_the_key_and_signature_reaches_no_log_of_the_command(
    monkeypatch, caplog, capsys, server, config_file
):
    """End to end: `crypto-bot run` on a ccxt market whose exchange answers a signed request with the key and
    the signed URL; the refusal is logged and the bot carries on; nothing it logs or prints holds either."""
    api_key = "k3y-echoed-by-the-exchange"
    monkeypatch.setenv("TEST_ECHO_KEY", api_key)
    monkeypatch.setenv("TEST_ECHO_SECRET", "s3cr3t-that-signs-requests")
    server.echo_credentials = True

    def loopback_source(settings, resume_at_ms=None):  # build_market with credentials, every API URL on the loopback stub
        config = {**LOOPBACK_CONFIG, "options": {**LOOPBACK_CONFIG["options"], "fetchMargins": True}}
        market = CcxtMarket(
            "binance", config=config, api_key_env="TEST_ECHO_KEY", secret_env="TEST_ECHO_SECRET",
            symbols=settings.symbols, timeframes=settings.timeframes, clock_ms=lambda: CLIENT_NOW_MS,
        )
        point_at(market, server)
        return market

    monkeypatch.setattr("crypto_bot.bot.build_market", loopback_source)
    caplog.set_level(logging.DEBUG)
    config = config_file(market={"source": "ccxt", "exchange": "binance"}, symbols=["BTC/USDT"], timeframes=["1h"])
    assert cli.main(["run", "--no-supervisor", "--config", str(config), "--cycles", "1", "--interval", "0", "--verbose"]) == 0

    signatures = [query["signature"] for path, query in server.requests if "signature" in query]
    assert signatures, "the stub saw no signed request"
    # The refusal is logged (by the source, once, and by the bot as the failed phase or series), redacted.
    refusals = [record.getMessage() for record in caplog.records if "Invalid API-key" in record.getMessage()]
    assert refusals and all("Invalid API-key ***" in message and "signature=***" in message for message in refusals)
    captured = capsys.readouterr()
    for text in (caplog.text, captured.out, captured.err):
        assert api_key not in text
        for signature in signatures:
            assert signature not in text


def test_missing_environment_variable_raises_naming_the_variable(monkeypatch):
    monkeypatch.delenv("TEST_ABSENT_KEY", raising=False)
    with pytest.raises(ValueError, match="api_key_env names environment variable 'TEST_ABSENT_KEY'"):
        CcxtMarket("binance", api_key_env="TEST_ABSENT_KEY")


@pytest.mark.parametrize("field", ["apiKey", "secret", "password"])
def test_credentials_in_config_are_rejected(field):
    with pytest.raises(ValueError, match=f"config must not carry credentials \\['{field}'\\]"):
        CcxtMarket("binance", config={field: "literal"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exchange_id": "no-such-exchange"}, "exchange_id must be a ccxt exchange id"),
        ({"timeframes": ("1m", "2m")}, "timeframe must be one of"),
        ({"timeframes": ()}, "timeframes must name at least one timeframe"),
        ({"exchange_id": "coinbase", "timeframes": ("4h",)}, r"timeframes \['4h'\] are not offered by coinbase"),
    ],
)
def test_invalid_constructor_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CcxtMarket(**kwargs)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.fetch_ohlcv("BTC/USDT", "3m"), "timeframe must be one of"),
        (lambda m: m.fetch_ohlcv("BTC/USDT", "1h", limit=0), "limit must be an int in 1..5000"),
        (lambda m: m.fetch_ohlcv("BTC/USDT", "1h", since_ms=-1), "since_ms must be None or an int >= 0"),
    ],
)
def test_invalid_fetch_arguments_raise_before_any_request(server, call, message):
    async def scenario(market: CcxtMarket) -> None:
        await call(market)

    with pytest.raises(ValueError, match=message):
        run_with_market(server, scenario)
    assert server.requests == []


def test_missing_ccxt_raises_import_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ccxt", None)
    monkeypatch.setitem(sys.modules, "ccxt.async_support", None)
    with pytest.raises(ImportError, match=r"crypto-bot\[ccxt\]"):
        CcxtMarket("binance")


def test_from_config_builds_the_market_the_ccxt_section_describes(monkeypatch):
    from crypto_bot.market import CcxtConfig

    monkeypatch.setenv("TEST_CONFIG_KEY", "key-from-the-ccxt-section")
    config = CcxtConfig(
        exchange="binance", api_key_env="TEST_CONFIG_KEY", sandbox=True, default_type="swap", timeout_ms=2500,
        ohlcv_limit=250,
    )
    market = CcxtMarket.from_config(config, symbols=["BTC/USDT"], timeframes=["1m"])
    assert market.exchange.apiKey == "key-from-the-ccxt-section"
    assert market.exchange.options["defaultType"] == "swap"
    assert market.exchange.timeout == 2500
    assert market.exchange.isSandboxModeEnabled
    assert market.ohlcv_limit == 250
    assert market.timeframes == ("1m",)


def test_the_page_size_comes_from_ccxt_metadata_per_exchange():
    assert CcxtMarket("binance").ohlcv_limit == 1000
    assert CcxtMarket("okx").ohlcv_limit == 300
    assert CcxtMarket("kraken").ohlcv_limit == 720


def test_a_sandbox_the_exchange_lacks_is_refused():
    with pytest.raises(ValueError, match="sandbox: kraken has no test network"):
        CcxtMarket("kraken", sandbox=True)


def test_stats_count_rest_calls_per_cycle(server):
    async def scenario(market: CcxtMarket) -> tuple[dict[str, Any], dict[str, Any]]:
        await market.fetch_ohlcv("BTC/USDT", "1h", limit=3)
        during = market.stats()
        market.advance()
        return during, market.stats()

    during, after = run_with_market(server, scenario)
    assert (during["rest_calls"], during["rest_calls_cycle"]) == (3, 3)  # time, exchangeInfo, klines
    assert (after["rest_calls"], after["rest_calls_cycle"], after["rest_calls_last_cycle"]) == (3, 0, 3)
    assert after["clock_synced"] and after["clock_offset_ms"] == pytest.approx(-30 * 60_000, abs=1000)
    assert not after["paused"] and after["dropped_symbols"] == {} and after["ohlcv_limit"] == 1000


def test_the_universe_follows_the_market_type(server):
    server.symbols[0] = {**server.symbols[0], "isMarginTradingAllowed": True, "permissions": ["SPOT", "MARGIN"]}
    server.symbols.append({**server.symbols[0], "symbol": "SOLUSDT", "baseAsset": "SOL", "isMarginTradingAllowed": False})

    async def scenario(market: CcxtMarket) -> list[str]:
        await market.load_markets()
        return market.universe()

    assert run_with_market(server, scenario) == ["BTC/USDT", "SOL/USDT"]
    assert run_with_market(server, scenario, default_type="margin") == ["BTC/USDT"]
