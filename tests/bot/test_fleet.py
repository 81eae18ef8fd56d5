"""A fleet on a real redis-server: a feeder and three workers on the simulated market, and its faults."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crypto_bot.cli import main
from crypto_bot.fleet.feeder import warn_if_unbounded
from crypto_bot.fleet import (
    FleetKeys,
    RedisLink,
    RedisMarket,
    between_cycles,
    feed,
    feeder_heartbeat,
    fleet_lines,
    publish_heartbeat,
    read_fleet,
    sync_client,
)
from crypto_bot.market import AuthenticationFailed, ExchangeUnavailable, generated_symbols
from crypto_bot.settings import Settings, parse_settings
from tests.bot.fleet_support import Fleet
from tests.redis_server import (  # noqa: F401 - redis_server is a fixture
    RedisServer,
    redis_executable,
    redis_server,
    self_signed_certificate,
)

SYMBOLS = generated_symbols(12)
RECONNECT_STEPS = 60  # back-off pauses are at most 30 s: 60 half-second steps outlast the longest


@pytest.fixture
def fleet_config(config_dict: Callable[..., dict[str, Any]], redis_server: RedisServer) -> dict[str, Any]:
    return config_dict(
        symbols=SYMBOLS,
        market={"source": "redis", "redis": {"address": redis_server.address, "feeder_buffer_closes": 50}},
        strategy={"batch_size": 12},
        risk={"max_open_positions": 100, "max_position_ratio": 0.05},
    )


@pytest.fixture
def fleet_settings(fleet_config: dict[str, Any]) -> Settings:
    return parse_settings(fleet_config)


@pytest.fixture
def fleet(fleet_settings: Settings) -> Iterator[Fleet]:
    running = Fleet(fleet_settings, workers=3)
    yield running
    running.close()


def test_each_symbol_is_analysed_by_exactly_one_worker(fleet: Fleet) -> None:
    universes = [set(worker.bot.market.universe()) for worker in fleet.workers]
    assert set().union(*universes) == set(SYMBOLS)
    assert sum(map(len, universes)) == len(SYMBOLS)
    fleet.step()
    for worker, universe in zip(fleet.workers, universes, strict=True):
        assert set(worker.bot.ctx.current_batch) <= universe


def test_workers_read_the_candles_the_exchange_served_without_asking_it(fleet: Fleet, fleet_settings: Settings) -> None:
    for _ in range(3):
        fleet.step()
    worker = fleet.workers[0]
    symbol = worker.bot.market.universe()[0]
    held = worker.bot.ctx.df_cache["1m"][symbol]
    first_open_ms = int(held.index[0].timestamp() * 1000)
    served = fleet.run(fleet.feeder.upstream.fetch_ohlcv(symbol, "1m", since_ms=first_open_ms, limit=len(held)))
    assert len(held) == fleet_settings.strategy.history_candles
    assert held.equals(served)
    assert all(w.bot.market.stats()["rest_calls"] == 0 for w in fleet.workers)
    assert all(w.bot.market.stats()["l2_hits"] > 0 for w in fleet.workers)


def test_the_feeder_asks_the_exchange_once_per_close_for_the_whole_fleet(fleet: Fleet, fleet_settings: Settings) -> None:
    fleet.step()
    fleet.step()
    assert fleet.feeder.requests_last_cycle == len(SYMBOLS)  # the 1m candle of each symbol; 15m had not closed
    assert sum(w.bot.last_status.fetches for w in fleet.workers) == len(SYMBOLS)  # read from Redis, not the exchange


def test_a_fleet_of_three_workers_trades_with_a_journal_each(fleet: Fleet, fleet_settings: Settings) -> None:
    for _ in range(4):
        fleet.step()
    assert fleet.entries() > 0
    journals = {Path(w.bot.journal.path).name for w in fleet.workers}
    assert journals == {f"journal.shard-{n}-of-3.sqlite" for n in (1, 2, 3)}


def test_a_worker_waits_on_closes_instead_of_polling(fleet_settings: Settings) -> None:
    config = fleet_settings.market.redis
    fleet = Fleet(fleet_settings, workers=1)
    market = RedisMarket(config, symbols=SYMBOLS, timeframes=fleet_settings.timeframes)
    try:
        fleet.step()  # the stream exists

        async def scenario() -> tuple[int, int]:
            await market.wait_for_closes(0)  # positioned at the newest close
            calls_before = market.link.calls
            waiting = asyncio.ensure_future(market.wait_for_closes(30))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await fleet.feeder.run_cycle()
            return await waiting, market.link.calls - calls_before

        heard, calls = fleet.run(scenario())
        assert heard == len(SYMBOLS)
        assert calls <= 2  # one blocking XREAD (a second if its slice ended first), not a poll loop
    finally:
        fleet.run(market.close())
        fleet.close()


def test_bad_bytes_in_redis_are_refused_naming_the_key_and_the_window_is_kept(
    fleet: Fleet, fleet_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    fleet.step()
    worker = fleet.workers[0]
    symbol = worker.bot.market.universe()[0]
    before = worker.bot.ctx.df_cache["1m"][symbol]
    key = FleetKeys(fleet_settings.market.redis.key_prefix).window(symbol, "1m")
    fleet.clock.advance(0.5)
    fleet.run(fleet.feeder.run_cycle())
    sync_client(fleet_settings.market.redis).set(key, b'{"not": "candles"}')
    caplog.set_level(logging.WARNING)
    worker.loop.run_until_complete(worker.bot.market.wait_for_closes(0))
    worker.cycle()
    refused = [r.getMessage() for r in caplog.records if key in r.getMessage()]
    assert refused and "not a candle window" in refused[0]
    assert worker.bot.ctx.df_cache["1m"][symbol].equals(before)
    assert worker.bot.last_status.stale_series >= 1


def test_heartbeats_show_in_status_fleet(
    fleet: Fleet, fleet_config: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.step()
    for worker in fleet.workers:
        worker.loop.run_until_complete(between_cycles(worker.bot, worker.bot.market, asyncio.Event(), 0))
    config = fleet.settings.market.redis
    fleet.run(publish_heartbeat(fleet.feeder.link, FleetKeys(config.key_prefix), feeder_heartbeat(fleet.feeder, None), 60))
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet_config), encoding="utf-8")
    assert main(["status", "--fleet", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "maxmemory 32.0 MiB, policy volatile-ttl" in out
    for name in ("feeder", "worker 1/3", "worker 2/3", "worker 3/3"):
        assert f"    {name} " in out
    assert main(["status", "--fleet", "--json", "--config", str(path)]) == 0
    view = json.loads(capsys.readouterr().out)
    assert {p["name"] for p in view["processes"]} == {"feeder", "worker 1/3", "worker 2/3", "worker 3/3"}
    assert view["l2_hit_rate"] == 1.0
    assert 0 < view["redis"]["used_memory_bytes"] < view["redis"]["maxmemory_bytes"]


def test_redis_killed_and_restarted_mid_run_loses_no_worker_and_trading_resumes(
    fleet: Fleet, redis_server: RedisServer
) -> None:
    for _ in range(3):
        fleet.step()
    held = [len(w.bot.ctx.managed_caches["df_cache"]) for w in fleet.workers]
    redis_server.kill()
    for _ in range(8):
        fleet.step()  # no exception: every failure stays inside its series
    assert [len(w.bot.ctx.managed_caches["df_cache"]) for w in fleet.workers] == held  # L1 kept
    assert all(w.bot.last_status.stale_series > 0 for w in fleet.workers)
    assert all(not w.bot.market.stats()["connected"] for w in fleet.workers)
    assert 0 < fleet.feeder.buffered_closes <= 50
    assert fleet.feeder.dropped_closes > 0  # the buffer is bounded: the oldest went first

    redis_server.start()  # empty, as after a crash
    entries_before = fleet.entries()
    for _ in range(RECONNECT_STEPS):
        fleet.step()
        if all(w.bot.last_status.stale_series == 0 for w in fleet.workers) and fleet.entries() > entries_before:
            break
    assert fleet.feeder.buffered_closes == 0
    assert all(w.bot.market.stats()["connected"] for w in fleet.workers)
    assert all(w.bot.last_status.stale_series == 0 for w in fleet.workers)
    assert fleet.entries() > entries_before  # trading again


def test_a_password_from_the_environment_opens_redis_and_reaches_no_log(
    config_dict: Callable[..., dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    password = "fleet-pa55word-of-the-test"
    with RedisServer(redis_executable(), tmp_path, password=password) as server:
        settings = parse_settings(config_dict(
            symbols=SYMBOLS, market={"source": "redis", "redis": {"address": server.address, "password_env": "TEST_REDIS_PASSWORD"}},
        ))
        caplog.set_level(logging.DEBUG)
        monkeypatch.setenv("TEST_REDIS_PASSWORD", password)
        assert a_worker_reads_windows(settings)
        monkeypatch.setenv("TEST_REDIS_PASSWORD", "not-the-password")
        market = RedisMarket(settings.market.redis, symbols=SYMBOLS, timeframes=settings.timeframes)
        with pytest.raises(AuthenticationFailed, match=f"redis {server.address} db 0 refused the password"):
            asyncio.run(market.fetch_ohlcv(SYMBOLS[0], "1m"))
    assert password not in caplog.text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["feed"], "crypto-bot feed needs market.source: redis"),
        (["run", "--no-supervisor", "--shard", "1/3"], "--shard needs market.source: redis"),
        (["status", "--fleet"], "status --fleet needs market.source: redis"),
    ],
)
def test_fleet_commands_on_a_config_without_redis_say_what_is_missing(
    config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main([*argv, "--config", str(config_file())]) == 2
    assert message in capsys.readouterr().err


def test_status_fleet_without_redis_names_the_address(
    config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(market={"source": "redis", "redis": {"address": "127.0.0.1:1"}})
    assert main(["status", "--fleet", "--config", str(path)]) == 3
    assert "cannot read the fleet from 127.0.0.1:1" in capsys.readouterr().err


def test_a_restarted_simulated_feeder_goes_on_from_its_predecessors_clock(fleet_settings: Settings) -> None:
    config = fleet_settings.market.redis
    client = sync_client(config)

    def clock_after(cycles: int) -> int:
        asyncio.run(feed(fleet_settings, cycles=cycles, interval_seconds=0, stop=asyncio.Event()))
        return json.loads(client.get(FleetKeys(config.key_prefix).clock))["now_ms"]

    first = clock_after(3)
    assert clock_after(1) == first  # not the simulation's start again: the workers' clocks never run back


def test_crypto_bot_feed_writes_the_windows_and_prints_a_line_a_cycle(
    fleet_config: dict[str, Any], fleet_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet_config), encoding="utf-8")
    assert main(["feed", "--config", str(path), "--cycles", "2", "--interval", "0"]) == 0
    # Each line starts with the UTC time, as the bot's status lines do.
    lines = [line.partition(" UTC | ")[2] for line in capsys.readouterr().out.splitlines() if " UTC | cycle " in line]
    assert lines[0].startswith(f"cycle     1 | requests {len(SYMBOLS) * 2} | windows {len(SYMBOLS) * 2}")
    assert lines[1].startswith(f"cycle     2 | requests {len(SYMBOLS)} |")
    keys = FleetKeys(fleet_settings.market.redis.key_prefix)
    assert sync_client(fleet_settings.market.redis).exists(keys.window(SYMBOLS[0], "15m"), keys.closes, keys.clock) == 3


def test_a_heartbeat_that_is_not_one_is_named_by_its_key_and_skipped(fleet: Fleet) -> None:
    fleet.step()
    config = fleet.settings.market.redis
    worker = fleet.workers[0]
    worker.loop.run_until_complete(between_cycles(worker.bot, worker.bot.market, asyncio.Event(), 0))
    key = FleetKeys(config.key_prefix).heartbeat("intruder")
    sync_client(config).set(key, b"\x00garbage")
    view = read_fleet(config)
    assert [h.name for h in view.heartbeats] == ["worker 1/3"]
    assert view.problems and view.problems[0].startswith(f"redis key {key} is not a heartbeat")
    assert f"problem: redis key {key}" in "\n".join(fleet_lines(view))


def test_a_refused_read_of_the_closes_ends_the_wait_instead_of_repeating_it(fleet_settings: Settings) -> None:
    config = fleet_settings.market.redis
    sync_client(config).set(FleetKeys(config.key_prefix).closes, b"not a stream")  # XREAD: WRONGTYPE
    market = RedisMarket(config, symbols=SYMBOLS, timeframes=fleet_settings.timeframes)

    async def wait() -> tuple[int, int]:
        try:
            return await market.wait_for_closes(30), market.link.calls
        finally:
            await market.close()

    heard, calls = asyncio.run(wait())
    assert heard == 0
    assert calls <= 3  # XREVRANGE (refused) and nothing more: no loop of refusals until the timeout


@pytest.mark.parametrize(
    ("maxmemory_bytes", "warning"), [(0, "has no maxmemory: the shared tier is unbounded"), (32 * 2**20, None)]
)
def test_the_feeder_warns_when_redis_is_not_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, maxmemory_bytes: int, warning: str | None
) -> None:
    with RedisServer(redis_executable(), tmp_path, maxmemory_bytes=maxmemory_bytes) as server:
        link = RedisLink(parse_settings({"market": {"source": "redis", "redis": {"address": server.address}}}).market.redis)

        async def check() -> None:
            try:
                await warn_if_unbounded(link)
            finally:
                await link.close()

        caplog.set_level(logging.WARNING)
        asyncio.run(check())
    warnings = [record.getMessage() for record in caplog.records]
    assert (warning is None and not warnings) or (warnings and warning in warnings[0])


def test_a_fleet_over_tls_verifies_the_server_with_the_configured_ca(
    config_dict: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    certificate = self_signed_certificate(tmp_path)
    with RedisServer(redis_executable(), tmp_path, certificate=certificate) as server:
        redis = {"address": server.address, "tls": True, "tls_ca_file": str(certificate)}
        settings = parse_settings(config_dict(symbols=SYMBOLS, market={"source": "redis", "redis": redis}))
        assert a_worker_reads_windows(settings)
        unverified = parse_settings({"market": {"source": "redis", "redis": {**redis, "tls_ca_file": None}}})
        market = RedisMarket(unverified.market.redis, symbols=SYMBOLS, timeframes=settings.timeframes)
        with pytest.raises(ExchangeUnavailable, match="certificate verify failed"):
            asyncio.run(market.fetch_ohlcv(SYMBOLS[0], "1m"))


def a_worker_reads_windows(settings: Settings) -> bool:
    """A feeder and one worker over `settings`' Redis run a step: whether the worker read windows from Redis."""
    fleet = Fleet(settings, workers=1)
    try:
        fleet.step()
        return fleet.workers[0].bot.market.stats()["l2_hits"] > 0
    finally:
        fleet.close()
