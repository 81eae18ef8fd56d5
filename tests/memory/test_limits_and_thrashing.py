"""MemoryManager against limits that mean what they say (issue 11, sections 3 and 6).

Each limit is compared with the memory it bounds, the stats show the figures a level came from,
and a budget too small for the work (every pass clears what the process loads again) is reported
once with the limit that would stop it. Readings come from BoundProbe, whose RSS follows what the
manager holds on top of a fixed floor, so clearing caches and unloading models shows in the next
reading as it does in a real process; time comes from FakeClock.
"""

from __future__ import annotations

import logging

import pytest

from crypto_bot.memory import manager as manager_module
from crypto_bot.memory.manager import MemoryManager
from crypto_bot.memory.pressure import PressureLevel
from crypto_bot.memory.probe import MemoryReading, limit_usages
from tests.fakes import FakeClock
from tests.memory.support import MIB, ManagerFactory, Payload

FLOOR_BYTES = 120 * MIB  # what the process needs without caches and models
CACHE_BYTES_PER_CYCLE = 2 * MIB
MODEL_BYTES = MIB
HOST_TOTAL_BYTES = 64 * 1024 * MIB


class BoundProbe:
    """A probe whose RSS is `floor_bytes` plus the manager's caches and loaded models.

    `process_limit_bytes`, `cgroup_limit_bytes` and `host_percent` are the test's to set; the
    cgroup's working set is the RSS plus `cgroup_others_bytes` (other processes, page cache).
    """

    def __init__(self) -> None:
        self.manager: MemoryManager | None = None
        self.floor_bytes = FLOOR_BYTES
        self.process_limit_bytes: int | None = 50 * MIB
        self.cgroup_limit_bytes: int | None = None
        self.cgroup_others_bytes = 0
        self.host_percent = 10.0
        self.reads = 0

    def rss_bytes(self) -> int:
        held_bytes = 0 if self.manager is None else self.manager.cache_bytes + self.manager.models.loaded_bytes
        return self.floor_bytes + held_bytes

    def read(self) -> MemoryReading:
        self.reads += 1
        rss_bytes = self.rss_bytes()
        working_set_bytes = rss_bytes + self.cgroup_others_bytes
        usages = limit_usages(
            rss_bytes=rss_bytes,
            process_limit_bytes=self.process_limit_bytes,
            cgroup_used_bytes=working_set_bytes,
            cgroup_limit_bytes=self.cgroup_limit_bytes,
            system_total_bytes=HOST_TOTAL_BYTES,
            system_available_bytes=None,
            system_percent=self.host_percent,
        )
        limiting = max(usages, key=lambda usage: usage.ratio)
        limits = [limit for limit in (self.process_limit_bytes, self.cgroup_limit_bytes, HOST_TOTAL_BYTES) if limit]
        return MemoryReading(
            rss_bytes=rss_bytes,
            system_total_bytes=HOST_TOTAL_BYTES,
            system_available_bytes=None,
            system_percent=self.host_percent,
            cgroup_limit_bytes=self.cgroup_limit_bytes,
            cgroup_high_bytes=None,
            cgroup_usage_bytes=working_set_bytes,
            working_set_bytes=working_set_bytes,
            oom_kills=None,
            psi_some_avg10=None,
            limit_bytes=min(limits),
            usage_ratio=limiting.ratio,
            cgroup_version=2,
            process_limit_bytes=self.process_limit_bytes,
            usages=usages,
            limiting=limiting,
        )


@pytest.fixture
def probe() -> BoundProbe:
    """Replaces the shared FakeProbe for this module's make_manager."""
    return BoundProbe()


@pytest.fixture
def manager(make_manager: ManagerFactory, probe: BoundProbe) -> MemoryManager:
    manager = make_manager()
    probe.manager = manager
    manager.register_cache("candles")
    manager.models.register("signal", loader=Payload, size_bytes=MODEL_BYTES)
    return manager


class Bot:
    """One trading cycle as the manager sees it: the candle window cached again (same key, same
    size, as a bot refreshing its window), the model used, then maintenance."""

    def __init__(self, manager: MemoryManager, clock: FakeClock) -> None:
        self.manager = manager
        self.clock = clock
        self.cycles = 0

    def cycle(self, *, passes: int = 1, new_symbol_bytes: int = 0) -> list[PressureLevel]:
        """One cycle; `new_symbol_bytes` adds a symbol of that size (a scanner growing its list)."""
        self.cycles += 1
        self.clock.advance(1)
        candles = self.manager.get_cache("candles")
        candles.put("BTC/USDT", Payload(), size_bytes=CACHE_BYTES_PER_CYCLE)
        if new_symbol_bytes:
            candles.put(f"NEW{self.cycles}/USDT", Payload(), size_bytes=new_symbol_bytes)
        self.manager.models.get("signal")
        return [self.manager.perform_maintenance().level for _ in range(passes)]


@pytest.fixture
def bot(manager: MemoryManager, clock: FakeClock) -> Bot:
    return Bot(manager, clock)


def thrash_alerts(alerts: list) -> list[tuple[str, dict]]:
    return [alert for alert in alerts if alert[1].get("kind") == "thrashing"]


# ------------------------------------------------------------------ each limit against its own memory


def test_process_limit_is_compared_with_the_process_rss_not_the_cgroup(
    manager: MemoryManager, probe: BoundProbe
) -> None:
    # The reported case: RSS 197 MiB, process limit 700 MiB, a cgroup crowded by others.
    probe.floor_bytes, probe.process_limit_bytes = 197 * MIB - MODEL_BYTES, 700 * MIB
    probe.cgroup_limit_bytes, probe.cgroup_others_bytes = 4096 * MIB, 500 * MIB
    manager.models.get("signal")
    report = manager.perform_maintenance()
    assert report.usage_ratio == pytest.approx(197 / 700)
    assert report.level is PressureLevel.NORMAL


def test_cgroup_limit_is_compared_with_the_cgroups_working_set(manager: MemoryManager, probe: BoundProbe) -> None:
    probe.process_limit_bytes, probe.cgroup_limit_bytes, probe.cgroup_others_bytes = 700 * MIB, 1000 * MIB, 800 * MIB
    report = manager.perform_maintenance()
    assert report.usage_ratio == pytest.approx(920 / 1000)
    assert report.level is PressureLevel.CRITICAL


def test_stats_show_process_and_cgroup_figures_and_which_set_the_level(
    manager: MemoryManager, probe: BoundProbe
) -> None:
    probe.process_limit_bytes, probe.cgroup_limit_bytes, probe.cgroup_others_bytes = 700 * MIB, 1000 * MIB, 800 * MIB
    manager.perform_maintenance()
    limits = manager.get_memory_stats()["limits"]
    assert limits["process"] == {
        "measure": "rss", "used_bytes": 120 * MIB, "limit_bytes": 700 * MIB, "ratio": pytest.approx(120 / 700)
    }
    assert limits["cgroup"] == {
        "measure": "working_set", "used_bytes": 920 * MIB, "limit_bytes": 1000 * MIB, "ratio": pytest.approx(0.92)
    }
    assert limits["limiting"] == "cgroup"
    assert manager.get_memory_stats()["pressure"]["decided_by"]["limiting"] == "cgroup"


def test_stats_show_the_process_rss_without_a_process_limit(manager: MemoryManager, probe: BoundProbe) -> None:
    probe.process_limit_bytes = None
    process = manager.get_memory_stats()["limits"]["process"]
    assert process == {"measure": "rss", "used_bytes": FLOOR_BYTES, "limit_bytes": None, "ratio": None}


def test_pressure_sheds_against_the_limit_that_set_the_ratio(manager: MemoryManager, probe: BoundProbe) -> None:
    # The cgroup is limiting at 0.85 of 1000 MiB: shed (0.85 - 0.6) * 1000 MiB, capped at what is held,
    # not a share of the 700 MiB process limit.
    cache = manager.get_cache("candles")
    for index in range(100):
        cache.put(index, Payload(), size_bytes=4 * MIB)
    probe.floor_bytes = 50 * MIB
    probe.process_limit_bytes, probe.cgroup_limit_bytes = 700 * MIB, 1000 * MIB
    probe.cgroup_others_bytes = 850 * MIB - probe.rss_bytes()
    report = manager.perform_maintenance()
    assert report.level is PressureLevel.PRESSURE
    assert report.cache_bytes_freed == 252 * MIB  # 250 MiB in whole 4 MiB entries


def test_critical_alert_names_the_limit_that_set_the_level(manager: MemoryManager, alerts: list) -> None:
    manager.perform_maintenance()
    [(message, details)] = alerts
    assert "of the process limit" in message and "limit 50.0 MiB" in message
    assert (details["limiting"], details["limit_bytes"]) == ("process", 50 * MIB)


# ------------------------------------------------------------------ the figures a level came from


def test_stats_show_the_ratio_and_thresholds_the_level_was_decided_on(
    manager: MemoryManager, probe: BoundProbe, clock: FakeClock
) -> None:
    probe.process_limit_bytes = 150 * MIB  # 120 / 150 = 0.8: PRESSURE
    manager.perform_maintenance()
    clock.advance(7)
    pressure = manager.get_memory_stats()["pressure"]
    assert pressure["level"] == "PRESSURE"
    assert pressure["decided_by"] == {
        "usage_ratio": pytest.approx(0.8),
        "limiting": "process",
        "used_bytes": 120 * MIB,
        "limit_bytes": 150 * MIB,
        "seconds_ago": 7,
    }
    assert pressure["thresholds"] == {"GC": 0.7, "PRESSURE": 0.8, "CRITICAL": 0.9}
    assert (pressure["held_by_hysteresis"], pressure["held_until_below_ratio"]) == (False, None)


def test_stats_show_the_margin_when_hysteresis_held_the_level(manager: MemoryManager, probe: BoundProbe) -> None:
    probe.process_limit_bytes = 150 * MIB  # 0.8: PRESSURE
    manager.perform_maintenance()
    probe.process_limit_bytes = 155 * MIB  # 0.774: below 0.8, within the 0.05 margin
    manager.perform_maintenance()
    pressure = manager.get_memory_stats()["pressure"]
    assert pressure["level"] == "PRESSURE"
    assert pressure["decided_by"]["usage_ratio"] == pytest.approx(120 / 155)
    assert pressure["held_by_hysteresis"] is True
    assert (pressure["hysteresis_margin_ratio"], pressure["held_until_below_ratio"]) == (0.05, pytest.approx(0.75))


def test_stats_say_what_level_a_newer_reading_leads_to(manager: MemoryManager, probe: BoundProbe) -> None:
    # The level shown is the last pass's; the reading beside it is newer and calls for another.
    probe.process_limit_bytes = 1000 * MIB
    manager.perform_maintenance()
    probe.process_limit_bytes = 125 * MIB  # 0.96
    stats = manager.get_memory_stats()
    assert (stats["pressure_level"], stats["usage_ratio"]) == ("NORMAL", pytest.approx(0.96))
    assert stats["pressure"]["level_of_this_reading"] == "CRITICAL"
    assert stats["pressure"]["decided_by"]["usage_ratio"] == pytest.approx(0.12)


def test_stats_before_any_pass_have_no_deciding_reading(manager: MemoryManager) -> None:
    pressure = manager.get_memory_stats()["pressure"]
    assert (pressure["level"], pressure["decided_by"], pressure["level_of_this_reading"]) == (
        "NORMAL", None, "CRITICAL"
    )


# ------------------------------------------------------------------ a thrashing budget


def test_a_limit_below_what_the_process_needs_is_reported_as_thrashing_once(
    bot: Bot, alerts: list, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=manager_module.__name__):
        for _ in range(10):
            assert bot.cycle() == [PressureLevel.CRITICAL]
    warnings = [record.getMessage() for record in caplog.records if "thrashing" in record.getMessage()]
    assert len(warnings) == 1 and len(thrash_alerts(alerts)) == 1
    assert thrash_alerts(alerts)[0][0] == warnings[0]


def test_thrashing_is_reported_on_the_fourth_clear(bot: Bot, alerts: list) -> None:
    # The first clear starts the run; three more that clear what came back make it thrashing.
    counts = []
    for _ in range(4):
        bot.cycle()
        counts.append(len(thrash_alerts(alerts)))
    assert counts == [0, 0, 0, 1]


def test_thrash_report_carries_limit_floor_reloaded_bytes_and_the_limit_that_stops_it(
    bot: Bot, alerts: list
) -> None:
    for _ in range(4):
        bot.cycle()
    [(message, details)] = thrash_alerts(alerts)
    assert details == {
        "kind": "thrashing",
        "level": "CRITICAL",
        "passes": 3,
        "limiting": "process",
        "limit_bytes": 50 * MIB,
        "floor_bytes": FLOOR_BYTES,
        "cache_reloaded_bytes": CACHE_BYTES_PER_CYCLE,
        "model_reloaded_bytes": MODEL_BYTES,
        "needed_bytes": 123 * MIB,
        "stopping_limit_bytes": 165 * MIB,  # 123 MiB / 0.75 = 164 MiB exactly, and it must stay below
        "memory_threshold": 0.8,
        "leave_ratio": 0.75,
    }
    for figure in ("50.0 MiB", "RSS after clearing 120.0 MiB", "2.0 MiB of caches", "1.0 MiB of models"):
        assert figure in message
    assert "process_memory_limit_mb: 165 or more" in message


def test_the_limit_it_names_stops_the_thrashing(bot: Bot, probe: BoundProbe, alerts: list) -> None:
    for _ in range(4):
        bot.cycle()
    probe.process_limit_bytes = thrash_alerts(alerts)[0][1]["stopping_limit_bytes"]
    levels = [level for _ in range(10) for level in bot.cycle()]
    assert max(levels) < PressureLevel.PRESSURE
    assert bot.manager.thrash_watch.thrashing is None


def test_thrashing_that_stops_and_starts_again_is_reported_again(
    bot: Bot, probe: BoundProbe, alerts: list, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(6):
        bot.cycle()
    probe.process_limit_bytes = 1024 * MIB
    with caplog.at_level(logging.INFO, logger=manager_module.__name__):
        bot.cycle()
    assert any("no longer thrashing" in record.getMessage() for record in caplog.records)
    probe.process_limit_bytes = 50 * MIB
    for _ in range(6):
        bot.cycle()
    assert len(thrash_alerts(alerts)) == 2


def test_several_passes_a_cycle_still_show_the_thrashing(bot: Bot, alerts: list) -> None:
    # Passes that find nothing reloaded yet (maintenance after every phase) neither count nor hide it.
    for _ in range(4):
        bot.cycle(passes=3)
    assert len(thrash_alerts(alerts)) == 1


def test_pressure_that_brings_usage_back_down_is_not_thrashing(
    bot: Bot, probe: BoundProbe, alerts: list
) -> None:
    # A 200 MiB limit with a 100 MiB floor: caches grow into PRESSURE, shrinking brings usage back below it.
    probe.process_limit_bytes, probe.floor_bytes = 200 * MIB, 100 * MIB
    levels = [level for _ in range(60) for level in bot.cycle(new_symbol_bytes=4 * MIB)]
    assert PressureLevel.PRESSURE in levels
    assert thrash_alerts(alerts) == [] and bot.manager.thrash_watch.thrashing is None


def test_stats_show_the_thrashing_figures_while_it_lasts(bot: Bot) -> None:
    assert bot.manager.get_memory_stats()["thrashing"] is None
    for _ in range(5):
        bot.cycle()
    thrashing = bot.manager.get_memory_stats()["thrashing"]
    assert (thrashing["passes"], thrashing["limiting"], thrashing["stopping_limit_bytes"]) == (4, "process", 165 * MIB)


def test_apply_config_starts_a_fresh_count(bot: Bot, alerts: list) -> None:
    for _ in range(4):
        bot.cycle()
    bot.manager.apply_config(bot.manager.config)
    assert bot.manager.thrash_watch.thrashing is None
    for _ in range(4):
        bot.cycle()
    assert len(thrash_alerts(alerts)) == 2
