"""BotContext (caches under the memory manager, seed API) and PhaseRunner (timing, memory, pressure alerts)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from crypto_bot.cache_views import CacheView
from crypto_bot.memory import MemoryConfig, MemoryManager, MemoryReading, PressureLevel
from crypto_bot.memory.probe import LimitUsage
from crypto_bot.memory.units import MIB
from crypto_bot.phase_runner import READING_COST_RATIO, BotContext, PhaseReport, PhaseRunner
from tests.bot.conftest import RecordingNotifier

SEED_FIELDS = [
    "positions",
    "df_cache",
    "regime_cache",
    "config",
    "exchange",
    "ws_client",
    "risk_manager",
    "notifier",
    "paper_wallet",
    "position_guard",
    "trade_manager",
    "balance",
    "current_batch",
    "analysis_results",
    "timing",
    "volatility_factor",
    "memory_manager",
    "managed_caches",
]


def frame(seed: int = 0, rows: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 + rng.standard_normal(rows).cumsum()
    index = pd.date_range("2024-01-01", periods=rows, freq="1min", tz="UTC")
    return pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0}, index=index)


@pytest.fixture
def memory() -> MemoryManager:
    """The test's memory manager (no thread: the runner schedules maintenance)."""
    return MemoryManager(MemoryConfig(enable_background_cleanup=False))


@pytest.fixture
def make_context(memory: MemoryManager) -> Callable[..., BotContext]:
    """`make_context(**fields)`: a context whose caches are under the test's manager unless told otherwise."""

    def build(**fields: Any) -> BotContext:
        fields.setdefault("positions", {})
        fields.setdefault("df_cache", {})
        fields.setdefault("regime_cache", {})
        fields.setdefault("config", {})
        fields.setdefault("memory_manager", memory)
        return BotContext(**fields)

    return build


@pytest.fixture
def ctx(make_context: Callable[..., BotContext]) -> BotContext:
    return make_context()


def run(runner: PhaseRunner, context: BotContext) -> dict[str, float]:
    """One cycle on a fresh event loop, waiting for any maintenance the runner handed to a thread."""

    async def cycle() -> dict[str, float]:
        try:
            return await runner.run(context)
        finally:
            await runner.drain()

    return asyncio.run(cycle())


def recorder(calls: list[str], name: str) -> Callable[[BotContext], Any]:
    async def phase(context: BotContext) -> None:
        calls.append(name)

    phase.__name__ = name
    return phase


# ------------------------------------------------------------------- BotContext


def test_context_has_the_seeds_fields_in_order() -> None:
    assert [f.name for f in dataclasses.fields(BotContext)][: len(SEED_FIELDS)] == SEED_FIELDS


def test_context_requires_positions_caches_and_config() -> None:
    with pytest.raises(TypeError):
        BotContext(positions={}, df_cache={}, regime_cache={})  # type: ignore[call-arg]


def test_optional_fields_have_the_seeds_defaults(ctx: BotContext) -> None:
    for name in ("exchange", "ws_client", "risk_manager", "notifier", "paper_wallet", "position_guard", "trade_manager"):
        assert getattr(ctx, name) is None, name
    assert (ctx.balance, ctx.volatility_factor) == (0.0, 1.0)
    assert (ctx.current_batch, ctx.analysis_results, ctx.timing) == ([], [], {})


def test_mutable_defaults_are_not_shared(make_context: Callable[..., BotContext]) -> None:
    first, second = make_context(), make_context()
    first.current_batch.append("BTC/USDT")
    first.timing["x"] = 1.0
    assert second.current_batch == [] and second.timing == {}


def test_the_context_uses_the_manager_it_is_given(ctx: BotContext, memory: MemoryManager) -> None:
    assert ctx.memory_manager is memory


def test_a_context_never_creates_a_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("BotContext built a memory manager")

    monkeypatch.setattr(MemoryManager, "__init__", forbidden)
    cache = {"BTC/USDT": frame(1)}
    context = BotContext(positions={}, df_cache=cache, regime_cache={}, config={"memory_threshold": 0.8})
    assert context.memory_manager is None and context.df_cache is cache and context.managed_caches == {}


def test_caches_are_registered_with_the_seeds_limits(ctx: BotContext) -> None:
    df_cache, regime_cache = ctx.get_managed_cache("df_cache"), ctx.get_managed_cache("regime_cache")
    assert (df_cache.max_size, df_cache.ttl_seconds) == (1000, 3600)
    assert (regime_cache.max_size, regime_cache.ttl_seconds) == (500, 1800)
    assert ctx.memory_manager.get_cache("df_cache") is df_cache
    assert ctx.memory_manager.get_cache("regime_cache") is regime_cache
    assert ctx.managed_caches == {"df_cache": df_cache, "regime_cache": regime_cache}


def test_unknown_managed_cache_is_none(ctx: BotContext) -> None:
    assert ctx.get_managed_cache("orders") is None


def test_max_cache_entries_caps_the_managed_caches(make_context: Callable[..., BotContext]) -> None:
    context = make_context(memory_manager=MemoryManager(MemoryConfig(max_cache_entries=40)))
    assert context.get_managed_cache("df_cache").max_size == 40
    assert context.get_managed_cache("regime_cache").max_size == 40


def test_flat_cache_entries_move_into_the_managed_cache(make_context: Callable[..., BotContext]) -> None:
    btc, eth = frame(1), frame(2)
    original = {"BTC/USDT": btc, "ETH/USDT": eth}
    context = make_context(df_cache=original)
    assert isinstance(context.df_cache, CacheView)
    assert len(context.df_cache) == 2
    assert "BTC/USDT" in context.df_cache and "SOL/USDT" not in context.df_cache
    assert context.df_cache["ETH/USDT"] is eth
    assert sorted(context.df_cache) == ["BTC/USDT", "ETH/USDT"]
    assert context.get_managed_cache("df_cache").get("BTC/USDT") is btc
    assert original == {}


def test_nested_cache_entries_move_into_the_managed_cache(make_context: Callable[..., BotContext]) -> None:
    btc = frame(1)
    context = make_context(df_cache={"1h": {"BTC/USDT": btc}, "5m": {"ETH/USDT": frame(2)}})
    assert sorted(context.df_cache) == ["1h", "5m"]
    assert "1h" in context.df_cache and len(context.df_cache) == 2
    assert context.df_cache["1h"]["BTC/USDT"] is btc
    assert list(context.df_cache["1h"]) == ["BTC/USDT"] and len(context.df_cache["5m"]) == 1
    assert context.get_managed_cache("df_cache").get(("1h", "BTC/USDT")) is btc


def test_a_moved_frame_is_held_only_by_the_managed_cache(make_context: Callable[..., BotContext]) -> None:
    btc = frame(1)
    alive = weakref.ref(btc)
    inner = {"BTC/USDT": btc}
    original = {"1h": inner}
    context = make_context(df_cache=original)
    del btc
    assert original == {} and inner == {}
    context.get_managed_cache("df_cache").clear()
    gc.collect()
    assert alive() is None


def test_assigning_a_dict_replaces_the_cache_contents(ctx: BotContext) -> None:
    ctx.df_cache = {"BTC/USDT": frame(1)}
    view = ctx.df_cache
    eth = frame(2)
    replacement = {"ETH/USDT": eth}
    ctx.df_cache = replacement
    assert ctx.df_cache is view
    assert list(ctx.df_cache) == ["ETH/USDT"] and ctx.df_cache["ETH/USDT"] is eth
    assert ctx.get_managed_cache("df_cache").keys() == ["ETH/USDT"]
    assert replacement == {}


def test_item_assignment_and_deletion_go_through_the_managed_cache(ctx: BotContext) -> None:
    ctx.regime_cache["BTC/USDT"] = "trending"
    ctx.df_cache["1h"] = {}
    ctx.df_cache["1h"]["BTC/USDT"] = frame(1)
    assert ctx.get_managed_cache("regime_cache").get("BTC/USDT") == "trending"
    assert ("1h", "BTC/USDT") in ctx.get_managed_cache("df_cache")
    del ctx.df_cache["1h"]["BTC/USDT"]
    del ctx.regime_cache["BTC/USDT"]
    assert len(ctx.get_managed_cache("df_cache")) == 0 and len(ctx.regime_cache) == 0


def test_setdefault_of_a_timeframe_writes_into_the_managed_cache(ctx: BotContext) -> None:
    ctx.df_cache.setdefault("1h", {})["BTC/USDT"] = frame(1)
    ctx.df_cache.setdefault("1h", {})["ETH/USDT"] = frame(2)
    assert sorted(ctx.df_cache["1h"]) == ["BTC/USDT", "ETH/USDT"]
    assert len(ctx.get_managed_cache("df_cache")) == 2


def test_popping_a_timeframe_returns_its_frames(ctx: BotContext) -> None:
    btc = frame(1)
    ctx.df_cache = {"1h": {"BTC/USDT": btc}}
    assert ctx.df_cache.pop("1h") == {"BTC/USDT": btc}
    assert "1h" not in ctx.df_cache and len(ctx.get_managed_cache("df_cache")) == 0


def test_two_contexts_keep_separate_caches(make_context: Callable[..., BotContext]) -> None:
    first = make_context(df_cache={"BTC/USDT": frame(1)})
    second = make_context(df_cache={"ETH/USDT": frame(2)})
    second.df_cache = {"SOL/USDT": frame(3)}
    assert list(first.df_cache) == ["BTC/USDT"] and list(second.df_cache) == ["SOL/USDT"]
    assert first.get_managed_cache("df_cache") is not second.get_managed_cache("df_cache")
    assert first.memory_manager is second.memory_manager


def test_memory_stats_list_the_contexts_caches_by_attribute(make_context: Callable[..., BotContext]) -> None:
    first = make_context(df_cache={"BTC/USDT": frame(1)})
    second = make_context(df_cache={"ETH/USDT": frame(2), "SOL/USDT": frame(3)}, regime_cache={"ETH/USDT": "ranging"})
    caches = second.get_memory_stats()["caches"]
    assert set(caches) == {"df_cache", "regime_cache"}
    assert (caches["df_cache"]["entries"], caches["regime_cache"]["entries"]) == (2, 1)
    assert first.get_memory_stats()["caches"]["df_cache"]["entries"] == 1


def test_a_dropped_context_unregisters_its_caches(make_context: Callable[..., BotContext]) -> None:
    context = make_context()
    manager = context.memory_manager
    del context
    gc.collect()
    assert manager.caches == {}


def test_register_ml_model_holds_it_pinned_in_the_managers_registry(ctx: BotContext) -> None:
    model = object()
    ctx.register_ml_model("scorer", model, size_estimate_mb=12)
    models = ctx.memory_manager.models
    assert models.get("scorer") is model
    assert (models.record("scorer").size_bytes, models.record("scorer").pinned) == (12 * MIB, True)
    assert ctx.get_memory_stats()["models"]["scorer"]["loaded"] is True


def test_register_ml_model_defaults_to_100_mb(ctx: BotContext) -> None:
    ctx.register_ml_model("scorer", object())
    assert ctx.memory_manager.models.record("scorer").size_bytes == 100 * MIB


def test_update_ml_model_usage_refreshes_last_used(make_context: Callable[..., BotContext]) -> None:
    clock = FakeClock()
    context = make_context(memory_manager=MemoryManager(MemoryConfig(), clock=clock))
    context.register_ml_model("scorer", object())
    clock.now += 5
    context.update_ml_model_usage("scorer")
    context.update_ml_model_usage("unknown")
    assert context.memory_manager.models.record("scorer").last_used == clock.now


def test_perform_memory_maintenance_returns_the_report_with_the_seeds_keys(ctx: BotContext) -> None:
    report = ctx.perform_memory_maintenance()
    assert {"timestamp", "cache_cleanup", "ml_cleanup", "gc_collected", "memory_pressure"} <= set(report)
    assert {"level", "usage_ratio", "cache_bytes_freed", "expired_entries"} <= set(report)
    assert "error" not in report


def test_without_a_manager_memory_methods_report_an_error() -> None:
    context = BotContext(positions={}, df_cache={}, regime_cache={}, config={}, manage_memory=False)
    context.register_ml_model("scorer", object())
    context.update_ml_model_usage("scorer")
    assert context.memory_manager is None
    assert "error" in context.perform_memory_maintenance()
    assert "error" in context.get_memory_stats()


def test_unmanaged_context_keeps_plain_dict_caches() -> None:
    cache = {"BTC/USDT": frame(1)}
    context = BotContext(positions={}, df_cache=cache, regime_cache={}, config={}, manage_memory=False)
    assert context.df_cache is cache and context.managed_caches == {}


def test_an_unmanaged_context_ignores_a_manager_given(memory: MemoryManager) -> None:
    context = BotContext(
        positions={}, df_cache={}, regime_cache={}, config={}, memory_manager=memory, manage_memory=False
    )
    assert context.memory_manager is None and memory.caches == {}


def test_position_count_and_symbols(make_context: Callable[..., BotContext]) -> None:
    class Held:
        symbol = "SOL/USDT"

    positions = {"p1": Held(), "p2": {"symbol": "ETH/USDT", "side": "buy"}, "BTC/USDT": {"side": "buy", "amount": 1}}
    context = make_context(positions=positions)
    assert context.get_position_count() == 3
    assert context.get_position_symbols() == ["SOL/USDT", "ETH/USDT", "BTC/USDT"]


def test_memory_pressure_clears_caches_but_never_positions(
    make_context: Callable[..., BotContext], system_memory_used: Callable[[float], None]
) -> None:
    positions = {"p1": {"symbol": "BTC/USDT", "side": "buy", "amount": 0.1}}
    context = make_context(positions=positions, df_cache={"1h": {"BTC/USDT": frame(1), "ETH/USDT": frame(2)}})
    system_memory_used(95.0)
    report = context.perform_memory_maintenance()
    assert report["memory_pressure"] is True
    assert len(context.get_managed_cache("df_cache")) == 0
    assert context.positions == {"p1": {"symbol": "BTC/USDT", "side": "buy", "amount": 0.1}}
    assert context.get_position_symbols() == ["BTC/USDT"]


# ------------------------------------------------------------------ PhaseRunner


def test_run_calls_phases_in_order_and_returns_seconds_by_name(ctx: BotContext) -> None:
    calls: list[str] = []
    timings = run(PhaseRunner([recorder(calls, "fetch"), recorder(calls, "analyse"), recorder(calls, "execute")]), ctx)
    assert calls == ["fetch", "analyse", "execute"]
    assert list(timings) == ["fetch", "analyse", "execute"]
    assert all(isinstance(s, float) and s >= 0 for s in timings.values())
    assert all(ctx.timing[name] == seconds for name, seconds in timings.items())


def test_timing_is_recorded_when_a_phase_raises(ctx: BotContext) -> None:
    calls: list[str] = []

    async def explode(context: BotContext) -> None:
        raise ValueError("exchange down")

    runner = PhaseRunner([recorder(calls, "fetch"), explode, recorder(calls, "execute")])
    with pytest.raises(ValueError, match="exchange down"):
        run(runner, ctx)
    assert calls == ["fetch"]
    assert "explode" in ctx.timing and ctx.timing["explode"] >= 0
    assert [r.name for r in runner.last_report] == ["fetch", "explode"]
    assert "exchange down" in runner.last_report[-1].error


def test_continue_on_error_runs_the_remaining_phases(ctx: BotContext) -> None:
    calls: list[str] = []

    async def explode(context: BotContext) -> None:
        raise ValueError("exchange down")

    runner = PhaseRunner([explode, recorder(calls, "execute")], continue_on_error=True)
    timings = run(runner, ctx)
    assert calls == ["execute"] and list(timings) == ["explode", "execute"]
    assert runner.last_report[0].error is not None and runner.last_report[1].error is None


def test_an_error_of_a_stop_on_type_ends_the_run_even_when_continuing_on_error(ctx: BotContext) -> None:
    calls: list[str] = []

    class BadInput(ValueError):
        pass

    async def explode(context: BotContext) -> None:
        raise BadInput("data.csv:7: negative volume")

    runner = PhaseRunner([explode, recorder(calls, "execute")], continue_on_error=True, stop_on=(BadInput,))
    with pytest.raises(BadInput, match="data.csv:7"):
        run(runner, ctx)
    assert calls == [] and [report.name for report in runner.last_report] == ["explode"]


def test_each_phase_records_its_memory_delta_and_pressure_level(ctx: BotContext) -> None:
    size_bytes = 64 * 1024 * 1024

    async def allocate(context: BotContext) -> None:
        context.current_batch.append(b"\x01" * size_bytes)

    runner = PhaseRunner([recorder([], "fetch"), allocate])
    run(runner, ctx)
    fetch, allocated = runner.last_report
    assert ctx.timing["phases"] is runner.last_report
    assert all(isinstance(r, PhaseReport) for r in runner.last_report)
    assert allocated.rss_delta_bytes >= size_bytes // 2
    assert abs(fetch.rss_delta_bytes) < size_bytes // 2
    assert allocated.pressure_level is PressureLevel.NORMAL and 0 < allocated.usage_ratio < 1


def test_maintenance_runs_in_a_worker_thread(ctx: BotContext, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    real = ctx.memory_manager.perform_maintenance

    def maintain() -> dict[str, Any]:
        threads.append(threading.current_thread())
        return real()

    monkeypatch.setattr(ctx.memory_manager, "perform_maintenance", maintain)
    run(PhaseRunner([recorder([], "fetch"), recorder([], "execute")]), ctx)
    assert len(threads) == 1 and threads[0] is not threading.main_thread()


def test_maintenance_waits_for_its_interval_between_cycles(ctx: BotContext, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    monkeypatch.setattr(ctx.memory_manager, "perform_maintenance", lambda: calls.append(time.monotonic()) or {})
    runner = PhaseRunner([recorder([], "fetch"), recorder([], "execute")])
    for _ in range(3):
        run(runner, ctx)
    assert len(calls) == 1  # maintenance_interval_seconds is 30 s


def test_maintenance_is_left_to_the_background_thread_when_it_runs(
    ctx: BotContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    manager = ctx.memory_manager
    monkeypatch.setattr(type(manager), "running", property(lambda self: True))
    monkeypatch.setattr(manager, "perform_maintenance", lambda: calls.append("maintenance") or {})
    run(PhaseRunner([recorder([], "fetch")]), ctx)
    assert calls == []


def test_monitoring_off_records_timing_only(ctx: BotContext, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(ctx.memory_manager, "perform_maintenance", lambda: calls.append("maintenance") or {})
    runner = PhaseRunner([recorder([], "fetch")], monitor_memory=False)
    run(runner, ctx)
    (report,) = runner.last_report
    assert calls == [] and report.usage_ratio is None and report.rss_delta_bytes == 0
    assert "fetch" in ctx.timing


def test_pressure_alerts_the_notifier_the_callback_and_the_log(
    make_context: Callable[..., BotContext],
    notifier: RecordingNotifier,
    system_memory_used: Callable[[float], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    context = make_context(notifier=notifier)
    alerts: list[tuple[BotContext, PhaseReport]] = []
    runner = PhaseRunner([recorder([], "fetch"), recorder([], "execute")], on_pressure=lambda c, r: alerts.append((c, r)))
    system_memory_used(95.0)
    with caplog.at_level(logging.WARNING, logger="crypto_bot.phase_runner"):
        run(runner, context)
    assert len(notifier.messages) == 1 and "after phase fetch" in notifier.messages[0]
    assert len(alerts) == 1 and alerts[0][0] is context
    assert alerts[0][1].pressure_level is PressureLevel.CRITICAL and alerts[0][1].usage_ratio == pytest.approx(0.95)
    logged = [r.getMessage() for r in caplog.records if r.name == "crypto_bot.phase_runner"]
    assert any("CRITICAL" in m and "95%" in m and "MiB" in m for m in logged)


def test_pressure_between_gc_and_memory_threshold_does_not_alert(
    make_context: Callable[..., BotContext], notifier: RecordingNotifier, system_memory_used: Callable[[float], None]
) -> None:
    context = make_context(notifier=notifier)
    runner = PhaseRunner([recorder([], "fetch")])
    system_memory_used(75.0)
    run(runner, context)
    assert runner.last_report[0].pressure_level is PressureLevel.GC
    assert notifier.messages == []


def test_sustained_pressure_alerts_once(
    make_context: Callable[..., BotContext], notifier: RecordingNotifier, system_memory_used: Callable[[float], None]
) -> None:
    context = make_context(notifier=notifier)
    runner = PhaseRunner([recorder([], "fetch"), recorder([], "execute")])
    system_memory_used(85.0)
    for _ in range(3):
        run(runner, context)
    assert len(notifier.messages) == 1 and "PRESSURE" in notifier.messages[0]


def test_an_async_notifier_is_awaited(
    make_context: Callable[..., BotContext], system_memory_used: Callable[[float], None]
) -> None:
    messages: list[str] = []

    class AsyncNotifier:
        async def notify(self, message: str, **event: Any) -> None:
            await asyncio.sleep(0)
            messages.append(message)

    context = make_context(notifier=AsyncNotifier())
    system_memory_used(95.0)
    run(PhaseRunner([recorder([], "fetch")]), context)
    assert len(messages) == 1


def test_a_failing_alert_target_does_not_stop_the_cycle(
    ctx: BotContext, system_memory_used: Callable[[float], None]
) -> None:
    calls: list[str] = []

    def broken(context: BotContext, report: PhaseReport) -> None:
        raise RuntimeError("pager down")

    system_memory_used(95.0)
    run(PhaseRunner([recorder(calls, "fetch"), recorder(calls, "execute")], on_pressure=broken), ctx)
    assert calls == ["fetch", "execute"]


class UnreadableProbe:
    """A probe whose every source failed: the reading is all None."""

    def read(self) -> MemoryReading:
        return MemoryReading(*([None] * len(dataclasses.fields(MemoryReading))))

    def rss_bytes(self) -> None:
        return None


def test_unreadable_memory_keeps_the_cycle_running(ctx: BotContext, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(ctx.memory_manager, "probe", UnreadableProbe())
    runner = PhaseRunner([recorder(calls, "fetch"), recorder(calls, "execute")])
    run(runner, ctx)
    assert calls == ["fetch", "execute"]
    assert [(r.usage_ratio, r.pressure_level, r.rss_delta_bytes) for r in runner.last_report] == [
        (None, PressureLevel.NORMAL, 0)
    ] * 2


class FakeClock:
    """Seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedProbe:
    """A probe over a 1 GiB cgroup limit whose RSS and usage the test sets; each full reading takes 1 ms of `clock`.

    `usages` (source, limit bytes, ratio) replace the one cgroup usage when a test sets them.
    """

    limit_bytes = 1024 * 1024 * 1024

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock if clock is not None else FakeClock()
        self.rss_bytes_now = 100 * 1024 * 1024
        self.usage_ratio = 0.5
        self.usages: list[tuple[str, int, float]] | None = None
        self.reads = 0

    def rss_bytes(self) -> int:
        return self.rss_bytes_now

    def read(self) -> MemoryReading:
        self.reads += 1
        self.clock.now += 0.001
        scripted = self.usages if self.usages is not None else [("cgroup", self.limit_bytes, self.usage_ratio)]
        usages = tuple(LimitUsage(source, int(limit * ratio), limit, ratio) for source, limit, ratio in scripted)
        limiting = max(usages, key=lambda usage: usage.ratio)
        fields = dict.fromkeys(f.name for f in dataclasses.fields(MemoryReading))
        fields.update(
            rss_bytes=self.rss_bytes_now,
            limit_bytes=min(usage.limit_bytes for usage in usages),
            usage_ratio=limiting.ratio,
            usages=usages,
            limiting=limiting,
        )
        return MemoryReading(**fields)


@pytest.fixture
def no_maintenance(ctx: BotContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """Maintenance passes do nothing (they would take readings of their own)."""
    monkeypatch.setattr(ctx.memory_manager, "perform_maintenance", lambda: {})


def test_full_readings_take_a_bounded_share_of_the_runners_time(
    ctx: BotContext, monkeypatch: pytest.MonkeyPatch, no_maintenance: None
) -> None:
    clock = FakeClock()
    probe = ScriptedProbe(clock)
    monkeypatch.setattr(ctx.memory_manager, "probe", probe)

    async def work(context: BotContext) -> None:
        clock.now += 0.05

    runner = PhaseRunner([work] * 40, clock=clock)
    run(runner, ctx)
    reading_seconds = probe.reads * 0.001
    assert probe.reads > 1
    assert reading_seconds - 0.001 <= READING_COST_RATIO * clock.now
    assert all(r.usage_ratio == 0.5 for r in runner.last_report)


def test_rss_growth_that_reaches_a_threshold_forces_a_full_reading(
    ctx: BotContext, monkeypatch: pytest.MonkeyPatch, no_maintenance: None
) -> None:
    clock = FakeClock()
    probe = ScriptedProbe(clock)
    monkeypatch.setattr(ctx.memory_manager, "probe", probe)
    reads_after: list[int] = []

    async def idle(context: BotContext) -> None:
        reads_after.append(probe.reads)

    async def allocate(context: BotContext) -> None:
        reads_after.append(probe.reads)
        probe.rss_bytes_now += int(0.3 * probe.limit_bytes)
        probe.usage_ratio = 0.8

    runner = PhaseRunner([idle, idle, allocate, idle], clock=clock)
    run(runner, ctx)
    assert reads_after == [0, 1, 1, 2] and probe.reads == 2
    levels = [r.pressure_level for r in runner.last_report]
    assert levels == [PressureLevel.NORMAL, PressureLevel.NORMAL, PressureLevel.PRESSURE, PressureLevel.PRESSURE]
    assert runner.last_report[2].rss_delta_bytes == int(0.3 * probe.limit_bytes)


def test_pressure_alert_names_the_limit_that_set_the_ratio_not_the_smallest(
    ctx: BotContext, monkeypatch: pytest.MonkeyPatch, no_maintenance: None, caplog: pytest.LogCaptureFixture
) -> None:
    probe = ScriptedProbe()
    # The process limit (700 MiB) is the smallest, but the cgroup's working set set the ratio.
    probe.usages = [("process", 700 * MIB, 0.3), ("cgroup", 1024 * MIB, 0.85)]
    monkeypatch.setattr(ctx.memory_manager, "probe", probe)
    with caplog.at_level(logging.WARNING, logger="crypto_bot.phase_runner"):
        run(PhaseRunner([recorder([], "fetch")]), ctx)
    (message,) = [r.getMessage() for r in caplog.records if r.name == "crypto_bot.phase_runner"]
    assert "PRESSURE after phase fetch: 85% of the cgroup limit 1024.0 MiB (cgroup working set 870.4 MiB)" in message
    assert "700" not in message


@pytest.mark.parametrize(("growth_mib", "reads"), [(50, [0, 1, 1, 1]), (100, [0, 1, 1, 2])], ids=["below", "reaching"])
def test_rss_growth_forces_a_reading_when_any_limit_would_reach_the_next_threshold(
    ctx: BotContext, monkeypatch: pytest.MonkeyPatch, no_maintenance: None, growth_mib: int, reads: list[int]
) -> None:
    clock = FakeClock()
    probe = ScriptedProbe(clock)
    # The cgroup sets the ratio (0.5, 205 MiB from 0.7), but the 200 MiB process limit goes from 0.4 to 0.7
    # with 60 MiB more RSS: 50 MiB reaches neither threshold, 100 MiB reaches the process limit's.
    probe.usages = [("process", 200 * MIB, 0.4), ("cgroup", 1024 * MIB, 0.5)]
    monkeypatch.setattr(ctx.memory_manager, "probe", probe)
    reads_after: list[int] = []

    async def idle(context: BotContext) -> None:
        reads_after.append(probe.reads)

    async def allocate(context: BotContext) -> None:
        reads_after.append(probe.reads)
        probe.rss_bytes_now += growth_mib * MIB

    run(PhaseRunner([idle, idle, allocate, idle], clock=clock), ctx)
    assert reads_after == reads


def test_request_stop_finishes_the_running_phase_and_skips_the_rest(ctx: BotContext) -> None:
    calls: list[str] = []
    runner: PhaseRunner

    async def stopping(context: BotContext) -> None:
        runner.request_stop()
        calls.append("stopping")

    runner = PhaseRunner([recorder(calls, "fetch"), stopping, recorder(calls, "execute")])
    timings = run(runner, ctx)
    assert calls == ["fetch", "stopping"] and list(timings) == ["fetch", "stopping"]
    assert run(runner, ctx) == {}


def test_phases_may_be_given_as_an_iterator(ctx: BotContext) -> None:
    calls: list[str] = []
    run(PhaseRunner(recorder(calls, name) for name in ("fetch", "execute")), ctx)
    assert calls == ["fetch", "execute"]


@pytest.mark.parametrize("phases", [[], ["fetch"], iter([])], ids=["empty", "not-callable", "empty-iterator"])
def test_phases_must_be_a_non_empty_sequence_of_callables(phases: Any) -> None:
    with pytest.raises(ValueError, match="phases"):
        PhaseRunner(phases)


def test_a_context_without_a_manager_runs_unmonitored() -> None:
    calls: list[str] = []
    context = BotContext(positions={}, df_cache={}, regime_cache={}, config={}, manage_memory=False)
    runner = PhaseRunner([recorder(calls, "fetch")])
    run(runner, context)
    assert calls == ["fetch"] and runner.last_report[0].usage_ratio is None


@pytest.fixture(autouse=True)
def _no_thread_left_behind() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    leftover = [t for t in threading.enumerate() if t.ident not in before and t.name == "memory-maintenance"]
    assert leftover == []
