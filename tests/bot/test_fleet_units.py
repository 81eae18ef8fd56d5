"""The fleet's pure parts: window bytes, shards, the market.redis section, a worker's clock."""

from __future__ import annotations

import asyncio
import struct

import pytest

from crypto_bot.fleet import FeedClock, Shard, decode_window, encode_window, shard_of
from crypto_bot.fleet.clock import SLACK_CANDLES
from crypto_bot.market import BadData, SimulatedMarket, generated_symbols
from crypto_bot.memory import ConfigError
from crypto_bot.settings import parse_settings
from tests.fakes import FakeClock

KEY = "crypto_bot:candles:1m:BTC/USDT"


@pytest.fixture(scope="module")
def window():
    market = SimulatedMarket(["BTC/USDT"], timeframes=["1m"], history_candles=300)
    return asyncio.run(market.fetch_ohlcv("BTC/USDT", "1m", limit=300))


def test_a_window_round_trips_through_its_bytes_exactly(window) -> None:
    data = encode_window(window)
    assert len(data) == 12 + 300 * 48
    decoded = decode_window(data, key=KEY)
    assert decoded.equals(window)
    assert decoded.index.equals(window.index)


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        (lambda data: data[:7], "shorter than the 12-byte header"),
        (lambda data: b"JSON" + data[4:], "not a candle window"),
        (lambda data: data[:3] + bytes([9]) + data[4:], "format version 9"),
        (lambda data: data[:-1], "bytes for 300 candles"),
        (lambda data: data[:12] + struct.pack("<q", 5) + data[20:], "not epoch milliseconds"),
        (lambda data: data[:-8] + struct.pack("<d", float("nan")), "non-finite value"),
        (lambda data: data[:12 + 300 * 8] + struct.pack("<d", -1.0) + data[12 + 300 * 8 + 8:], "non-positive price"),
    ],
    ids=["truncated header", "magic", "version", "length", "open time", "nan", "negative price"],
)
def test_bad_bytes_are_refused_naming_the_key(window, corrupt, problem: str) -> None:
    with pytest.raises(BadData, match=problem) as refused:
        decode_window(corrupt(encode_window(window)), key=KEY)
    assert f"redis key {KEY}" in str(refused.value)


def test_a_symbol_keeps_its_shard_in_every_process_and_version() -> None:
    # A fixed function of the name (blake2b, not the per-process hash()): pinned, so a change to it is seen here.
    assert [shard_of(symbol, 3) for symbol in generated_symbols(12)] == [2, 2, 3, 1, 1, 3, 1, 1, 1, 2, 3, 2]


def test_shards_split_the_universe_evenly_and_completely() -> None:
    symbols = generated_symbols(300)
    shards = [Shard(number, 3) for number in (1, 2, 3)]
    owned = [[symbol for symbol in symbols if shard.owns(symbol)] for shard in shards]
    assert sorted(sum(owned, [])) == sorted(symbols)
    assert all(80 <= len(part) <= 120 for part in owned)


def test_growing_the_fleet_moves_only_the_symbols_the_new_worker_takes() -> None:
    symbols = generated_symbols(600)
    moved = [symbol for symbol in symbols if shard_of(symbol, 3) != shard_of(symbol, 4)]
    assert all(shard_of(symbol, 4) == 4 for symbol in moved)
    assert 100 <= len(moved) <= 200  # about a quarter


@pytest.mark.parametrize(("text", "shard"), [("1/3", Shard(1, 3)), ("3/3", Shard(3, 3)), ("0/3", Shard(3, 3))])
def test_a_shard_is_written_i_of_n(text: str, shard: Shard) -> None:
    assert Shard.parse(text) == shard


@pytest.mark.parametrize("text", ["1", "4/3", "a/3", "1/0", "-1/3"])
def test_a_shard_that_is_not_i_of_n_is_refused_with_the_form(text: str) -> None:
    with pytest.raises(ValueError, match="i/N"):
        Shard.parse(text)


def test_each_shard_keeps_its_own_journal() -> None:
    assert Shard(2, 3).journal_path("data/journal.sqlite") == "data/journal.shard-2-of-3.sqlite"
    assert Shard().journal_path("data/journal.sqlite") == "data/journal.sqlite"


@pytest.mark.parametrize(
    ("redis", "message"),
    [
        ({"address": "10.1.2.3:6379"}, "market.redis.address='10.1.2.3:6379' is not on loopback: set market.redis.password_env"),
        ({"address": "localhost"}, "invalid market.redis.address='localhost': allowed host:port"),
        ({"db": 5000}, r"invalid market.redis.db=5000: allowed an integer in \[0, 1023\]"),
        ({"key_prefix": "my fleet:"}, "invalid market.redis.key_prefix='my fleet:'"),
        ({"upstream": "redis"}, "invalid market.redis.upstream='redis': allowed one of simulated, csv, ccxt"),
        ({"prefix": "x"}, "unknown key market.redis.prefix: did you mean market.redis.key_prefix?"),
    ],
)
def test_a_bad_redis_setting_is_named_with_its_allowed_values(redis: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings({"market": {"source": "redis", "redis": redis}})


def test_redis_off_loopback_is_accepted_with_a_password_variable() -> None:
    settings = parse_settings({"market": {"source": "redis", "redis": {"address": "10.1.2.3:6379", "password_env": "REDIS_PASSWORD"}}})
    assert settings.market.redis.password_env == "REDIS_PASSWORD"


def test_a_csv_upstream_needs_its_directory() -> None:
    with pytest.raises(ConfigError, match="market.csv_directory is required when market.redis.upstream is csv"):
        parse_settings({"market": {"source": "redis", "redis": {"upstream": "csv"}}})


def test_the_worker_clock_is_the_feeder_clock_while_closes_come() -> None:
    time_now = FakeClock()
    clock = FeedClock(60_000, monotonic=time_now)
    clock.hear(1_704_067_200_000, rate=120.0)  # a simulated minute every 0.5 s
    time_now.advance(0.5 * SLACK_CANDLES)  # a slow cycle: within the slack
    assert clock.now_ms() == 1_704_067_200_000
    assert not clock.running_alone


def test_the_worker_clock_runs_on_alone_when_closes_stop() -> None:
    time_now = FakeClock()
    clock = FeedClock(60_000, monotonic=time_now)
    clock.hear(1_704_067_200_000, rate=120.0)
    time_now.advance(0.5 * (SLACK_CANDLES + 2))
    assert clock.now_ms() == 1_704_067_200_000 + 2 * 60_000
    assert clock.running_alone


def test_the_worker_clock_never_runs_backwards() -> None:
    time_now = FakeClock()
    clock = FeedClock(60_000, monotonic=time_now)
    clock.hear(1_704_067_200_000, rate=120.0)
    time_now.advance(0.5 * (SLACK_CANDLES + 5))
    ahead = clock.now_ms()
    clock.hear(1_704_067_200_000 + 60_000, rate=120.0)  # the feeder is back, behind the clock that ran on
    assert clock.now_ms() == ahead
    assert clock.running_alone
