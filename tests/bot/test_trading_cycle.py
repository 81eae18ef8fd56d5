"""The six-phase paper-trading cycle end to end, with real parts: simulated market, model, SQLite journal, memory manager."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crypto_bot.bot import TradingBot, build_market
from crypto_bot.cache_views import CacheView
from crypto_bot.market import ExchangeUnavailable, MarketDataSource, UnknownSymbol
from crypto_bot.memory import MemoryConfig, MemoryManager, PressureLevel
from crypto_bot.settings import Settings, parse_settings
from crypto_bot.strategy.builtin import MODEL_NAME
from crypto_bot.working_set import minimum_working_set
from tests.bot.conftest import RecordingNotifier
from tests.bot.support import Session

PHASES = ["fetch_candidates", "update_caches", "analyse_batch", "execute_signals", "handle_exits", "monitor"]


def journal_rows(path: Path, query: str) -> list[tuple]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def test_a_cycle_runs_all_phases_and_writes_positions_to_sqlite(
    start: Callable[..., Session], bot_settings: Settings
) -> None:
    session = start(bot_settings)
    session.until_a_position_opens()
    bot = session.bot
    assert [report.name for report in bot.runner.last_report] == PHASES
    assert all(report.error is None for report in bot.runner.last_report)
    journal = Path(bot_settings.storage.journal_path)
    rows = journal_rows(journal, "SELECT id, symbol, quantity FROM positions")
    assert sorted(rows) == sorted((p.id, p.symbol, p.quantity) for p in bot.broker.positions.values())
    assert journal_rows(journal, "SELECT cash FROM account") == [(pytest.approx(bot.broker.cash),)]
    assert journal_rows(journal, "PRAGMA integrity_check") == [("ok",)]


def test_closed_trades_are_written_to_sqlite(start: Callable[..., Session], bot_settings: Settings) -> None:
    session = start(bot_settings)
    bot = session.bot
    for _ in range(40):
        session.cycle()
        if bot.broker.trades_count:
            break
    else:
        pytest.fail("no trade closed in 40 cycles")
    journal = Path(bot_settings.storage.journal_path)
    trades = journal_rows(journal, "SELECT position_id, pnl, exit_reason FROM trades")
    assert len(trades) == bot.broker.trades_count
    assert sum(pnl for _, pnl, _ in trades) == pytest.approx(bot.broker.realized_pnl)
    assert {position_id for position_id, _, _ in trades}.isdisjoint(bot.broker.positions)
    assert all(reason for *_, reason in trades)


def test_a_cycle_fills_the_managed_caches(start: Callable[..., Session], bot_settings: Settings) -> None:
    session = start(bot_settings)
    session.cycle()
    ctx = session.bot.ctx
    assert isinstance(ctx.df_cache, CacheView) and isinstance(ctx.regime_cache, CacheView)
    expected = {(tf, symbol) for tf in bot_settings.timeframes for symbol in ctx.current_batch}
    assert set(ctx.get_managed_cache("df_cache").keys()) == expected
    assert set(ctx.regime_cache) == set(ctx.current_batch)
    caches = ctx.get_memory_stats()["caches"]
    assert caches["df_cache"]["entries"] == len(expected) and caches["df_cache"]["total_bytes"] > 0


def test_the_measured_working_set_is_what_a_cycles_caches_hold(start: Callable[..., Session], bot_settings: Settings) -> None:
    session = start(bot_settings)
    session.cycle()
    caches = session.bot.ctx.get_memory_stats()["caches"]
    strategy = bot_settings.strategy
    working_set = minimum_working_set(strategy.batch_size, len(bot_settings.timeframes), strategy.history_candles)
    assert caches["df_cache"]["total_bytes"] + caches["regime_cache"]["total_bytes"] == working_set.total_bytes


def test_a_budget_of_exactly_the_working_set_keeps_a_whole_cycle(
    start: Callable[..., Session], config_dict: Callable[..., dict[str, Any]]
) -> None:
    candles = config_dict()["strategy"]["history_candles"]
    working_set_bytes = minimum_working_set(4, 2, candles).total_bytes
    settings = parse_settings(config_dict(cache_size_limit_mb=working_set_bytes / 2**20))
    session = start(settings)
    session.cycle()
    caches = session.bot.ctx.get_memory_stats()["caches"]
    assert caches["df_cache"]["entries"] == 4 * 2 and caches["regime_cache"]["entries"] == 4
    assert caches["df_cache"]["evictions"]["size"] == 0 and session.bot.runner.last_report[2].error is None


def test_the_model_is_registered_in_the_manager_and_used(start: Callable[..., Session], bot_settings: Settings) -> None:
    session = start(bot_settings)
    models = session.bot.ctx.memory_manager.models
    assert MODEL_NAME in models and models.record(MODEL_NAME).loaded
    registered_at = models.record(MODEL_NAME).last_used
    session.cycle()
    record = models.record(MODEL_NAME)
    assert record.last_used > registered_at and record.in_use == 0


def test_an_unloaded_model_is_reloaded_through_its_loader(start: Callable[..., Session], bot_settings: Settings) -> None:
    session = start(bot_settings)
    session.cycle()
    models = session.bot.ctx.memory_manager.models
    assert models.unload_all() > 0
    assert not models.record(MODEL_NAME).loaded
    session.cycle()
    record = models.record(MODEL_NAME)
    assert record.loaded and record.loads == 1
    assert session.bot.runner.last_report[2].error is None


def test_pressure_during_trading_keeps_trading_and_never_drops_a_position(
    start: Callable[..., Session],
    bot_settings: Settings,
    notifier: RecordingNotifier,
    system_memory_used: Callable[[float], None],
) -> None:
    session = start(bot_settings, notifier=notifier)
    session.until_a_position_opens()
    bot = session.bot
    held_before = set(bot.broker.positions)
    system_memory_used(95.0)
    for _ in range(40):  # the runner reuses a reading for up to ~0.1 s (its cost bound), then sees the pressure
        session.cycle()
        assert [r.error for r in bot.runner.last_report] == [None] * 6
        if any(r.pressure_level is PressureLevel.CRITICAL for r in bot.runner.last_report):
            break
    for _ in range(3):
        session.cycle()
        assert [r.error for r in bot.runner.last_report] == [None] * 6
        assert [r.pressure_level for r in bot.runner.last_report] == [PressureLevel.CRITICAL] * 6
    session.loop.run_until_complete(bot.runner.drain())
    journal = Path(bot_settings.storage.journal_path)
    closed = {row[0] for row in journal_rows(journal, "SELECT position_id FROM trades")}
    assert held_before <= set(bot.broker.positions) | closed
    assert set(bot.ctx.positions) == {row[0] for row in journal_rows(journal, "SELECT id FROM positions")}
    assert bot.last_status.pressure_level == "CRITICAL"
    df_stats = bot.ctx.get_managed_cache("df_cache").stats()
    assert df_stats["evictions"]["pressure"] > 0
    assert any("CRITICAL" in message for message in notifier.messages)


def test_cache_cleanup_keeps_df_cache_within_its_limits_with_a_rotating_universe(
    start: Callable[..., Session], config_dict: Callable[..., dict[str, Any]]
) -> None:
    max_entries = 16
    settings = parse_settings(
        config_dict(
            max_cache_entries=max_entries,
            market={"scanner_new_symbols_per_cycle": 3, "max_universe": 8},
            strategy={"batch_size": 3},
        )
    )
    session = start(settings)
    cache = session.bot.ctx.get_managed_cache("df_cache")
    position_ids: set[str] = set()
    for _ in range(12):
        session.cycle()
        assert len(cache) <= max_entries and len(session.bot.ctx.regime_cache) <= max_entries
        assert all(report.error is None for report in session.bot.runner.last_report)
        position_ids |= set(session.bot.broker.positions)
    assert cache.stats()["evictions"]["size"] > 0
    assert len(session.bot.market.universe()) <= 8
    journal = Path(settings.storage.journal_path)
    closed = {row[0] for row in journal_rows(journal, "SELECT position_id FROM trades")}
    assert position_ids <= set(session.bot.broker.positions) | closed


def test_a_restarted_bot_resumes_the_open_positions(start: Callable[..., Session], bot_settings: Settings) -> None:
    first = start(bot_settings)
    first.until_a_position_opens()
    positions = dict(first.bot.broker.positions)
    cash = first.bot.broker.cash
    first.close()
    second = start(bot_settings)
    assert dict(second.bot.broker.positions) == positions
    assert second.bot.broker.cash == pytest.approx(cash)
    assert second.bot.ctx.get_position_count() == len(positions)
    second.cycle()
    journal = Path(bot_settings.storage.journal_path)
    closed = {row[0] for row in journal_rows(journal, "SELECT position_id FROM trades")}
    assert set(positions) <= set(second.bot.broker.positions) | closed


class DelistingMarket:
    """A market whose data for the symbols in `missing` is gone (UnknownSymbol, as the sources raise)."""

    def __init__(self, market: MarketDataSource) -> None:
        self.market = market
        self.missing: set[str] = set()

    async def fetch_ohlcv(self, symbol: str, *args: Any, **kwargs: Any) -> Any:
        if symbol in self.missing:
            raise UnknownSymbol(f"unknown symbol {symbol!r}")
        return await self.market.fetch_ohlcv(symbol, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.market, name)


def test_missing_data_for_one_symbol_does_not_block_the_other_exits(
    start: Callable[..., Session], bot_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    market = DelistingMarket(build_market(bot_settings))
    session = start(bot_settings, market=market)
    bot = session.bot
    session.until_a_position_opens()
    while len({p.symbol for p in bot.broker.positions.values()}) < 2:
        session.cycle()
    held = sorted({p.symbol for p in bot.broker.positions.values()})
    market.missing.add(held[0])
    checked: list[str] = []
    real_process = bot.broker.process_candle
    monkeypatch.setattr(bot.broker, "process_candle", lambda symbol, *a: checked.append(symbol) or real_process(symbol, *a))
    bot.ctx.df_cache.clear()  # as after eviction: the exits phase asks the market for the latest candle
    session.loop.run_until_complete(bot.handle_exits(bot.ctx))
    assert held[0] not in checked and set(held[1:]) <= set(checked)


class FailingMarket(DelistingMarket):
    """A market whose every fetch fails while `down` (an exchange outage), as the ccxt source reports one."""

    down = False
    requests_while_down = 0

    async def fetch_ohlcv(self, symbol: str, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            self.requests_while_down += 1
            raise ExchangeUnavailable("exchange under maintenance (503)")
        return await self.market.fetch_ohlcv(symbol, *args, **kwargs)


def test_an_outage_keeps_the_bot_cycling_on_stale_windows_and_trading_resumes_after(
    start: Callable[..., Session], bot_settings: Settings
) -> None:
    market = FailingMarket(build_market(bot_settings))
    session = start(bot_settings, market=market)
    bot = session.bot
    session.cycle()
    market.down = True
    for _ in range(5):
        session.cycle()
        assert [report.error for report in bot.runner.last_report if report.error] == []  # no phase failed
        assert bot.last_status is not None and bot.last_status.stale_series > 0
        assert bot.last_status.stale_seconds > 0 and "stale" in bot.last_status.line()
        assert bot.summary()["market"]["stale_series"]
        assert bot.ctx.analysis_results == []  # no signal from a window that misses a closed candle
    assert market.requests_while_down <= 5 * len(bot.ctx.current_batch) * len(bot_settings.timeframes)
    market.down = False
    opened_before = bot.broker.trades_count + len(bot.broker.positions)
    for _ in range(30):
        session.cycle()
        if bot.broker.trades_count + len(bot.broker.positions) > opened_before:
            break
    assert bot.last_status.stale_series == 0
    assert bot.broker.trades_count + len(bot.broker.positions) > opened_before


def test_a_held_symbol_stays_in_the_batch(start: Callable[..., Session], config_dict: Callable[..., dict[str, Any]]) -> None:
    settings = parse_settings(config_dict(strategy={"batch_size": 1}))
    session = start(settings)
    session.until_a_position_opens()
    session.cycle()
    held = {p.symbol for p in session.bot.broker.positions.values()}
    assert held <= set(session.bot.ctx.current_batch)


def test_the_bot_builds_its_manager_from_the_memory_settings(
    start: Callable[..., Session], bot_settings: Settings
) -> None:
    bot = start(bot_settings).bot
    assert type(bot.memory) is MemoryManager and bot.ctx.memory_manager is bot.memory
    assert bot.memory.config is bot_settings.memory and not bot.memory.running


def test_an_injected_manager_holds_the_bots_caches_and_model(
    start: Callable[..., Session], bot_settings: Settings
) -> None:
    memory = MemoryManager(MemoryConfig(enable_background_cleanup=False, cache_size_limit_mb=64))
    session = start(bot_settings, memory=memory)
    session.cycle()
    assert session.bot.ctx.memory_manager is memory and session.bot.memory is memory
    assert set(memory.caches) == {"df_cache", "regime_cache"} and MODEL_NAME in memory.models
    assert memory.budget.max_bytes == 64 * 1024 * 1024


def test_an_unmanaged_bot_refuses_a_manager(bot_settings: Settings) -> None:
    with pytest.raises(ValueError, match="manage_memory=False"):
        TradingBot(bot_settings, memory=MemoryManager(), manage_memory=False)


def test_unmanaged_mode_trades_without_a_manager(start: Callable[..., Session], bot_settings: Settings) -> None:
    session = start(bot_settings, manage_memory=False)
    session.until_a_position_opens()
    bot = session.bot
    assert bot.ctx.memory_manager is None and isinstance(bot.ctx.df_cache, dict)
    assert bot.summary()["memory"] == {"managed": False}
    assert bot.last_status.pressure_level == "unmanaged"


def test_summary_reports_trading_and_memory(start: Callable[..., Session], bot_settings: Settings) -> None:
    session = start(bot_settings)
    for _ in range(2):
        session.cycle()
    summary = session.bot.summary()
    assert summary["cycles"] == 2
    assert summary["open_positions"] == len(session.bot.broker.positions)
    assert set(summary["memory"]["caches"]) == {"df_cache", "regime_cache"}
