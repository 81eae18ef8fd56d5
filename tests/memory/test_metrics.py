"""The Prometheus endpoint of a MemoryManager, scraped over real HTTP on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from crypto_bot.memory import MemoryConfig, MemoryManager, MemoryReading
from crypto_bot.memory.diagnosis import GrowingSite, GrowingType, LeakDiagnosis
from crypto_bot.memory.metrics import MemoryCollector, MetricsServer, register_collector, start_metrics_server
from crypto_bot.memory.probe import limit_usages
from crypto_bot.utils.enhanced_memory_manager import EnhancedMemoryManager
from tests.fakes import FakeClock

MIB = 1024 * 1024
# Scrapes never go through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FakeProbe:
    """Returns `reading`, which tests replace; `rss_bytes()` follows it."""

    def __init__(self) -> None:
        self.reading = reading(rss_bytes=100 * MIB, working_set_bytes=120 * MIB, limit_bytes=1000 * MIB)

    def read(self) -> MemoryReading:
        return self.reading

    def rss_bytes(self) -> int | None:
        return self.reading.rss_bytes


def reading(*, rss_bytes: int | None, working_set_bytes: int | None, limit_bytes: int | None) -> MemoryReading:
    used_bytes = working_set_bytes if working_set_bytes is not None else rss_bytes
    usage_ratio = None if used_bytes is None or limit_bytes is None else used_bytes / limit_bytes
    return MemoryReading(
        rss_bytes=rss_bytes,
        system_total_bytes=limit_bytes,
        system_available_bytes=None,
        system_percent=None,
        cgroup_limit_bytes=None,
        cgroup_high_bytes=None,
        cgroup_usage_bytes=working_set_bytes,
        working_set_bytes=working_set_bytes,
        oom_kills=None,
        psi_some_avg10=None,
        limit_bytes=limit_bytes,
        usage_ratio=usage_ratio,
        cgroup_version=None if working_set_bytes is None else 2,
    )


class Model:
    def __init__(self) -> None:
        self.weights = bytes(1000)


class Scrape:
    """One exposition, parsed; `value(sample, **labels)` is None when the sample is absent."""

    def __init__(self, text: str) -> None:
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, sample_name: str, **labels: str) -> float | None:
        return self.samples.get((sample_name, frozenset(labels.items())))


def scrape(server: MetricsServer) -> Scrape:
    with OPENER.open(server.url, timeout=5) as response:
        return Scrape(response.read().decode("utf-8"))


@pytest.fixture
def probe() -> FakeProbe:
    return FakeProbe()


@pytest.fixture
def manager(probe: FakeProbe, clock: FakeClock) -> MemoryManager:
    return MemoryManager(MemoryConfig(enable_background_cleanup=False), probe=probe, clock=clock)


@pytest.fixture
def server(manager: MemoryManager) -> Iterator[MetricsServer]:
    with start_metrics_server(manager, 0) as running:
        yield running


# caches


def test_cache_gets_are_counted_by_result(manager: MemoryManager, server: MetricsServer) -> None:
    cache = manager.register_cache("tickers")
    cache.put("BTC/USDT", 1.0)
    cache.get("BTC/USDT")
    cache.get("BTC/USDT")
    cache.get("ETH/USDT")

    metrics = scrape(server)

    assert metrics.value("cache_gets_total", cache="tickers", result="hit") == 2
    assert metrics.value("cache_gets_total", cache="tickers", result="miss") == 1


def test_cache_puts_are_counted(manager: MemoryManager, server: MetricsServer) -> None:
    cache = manager.register_cache("tickers")
    for symbol in ("BTC/USDT", "ETH/USDT", "BTC/USDT"):
        cache.put(symbol, 1.0)

    assert scrape(server).value("cache_puts_total", cache="tickers") == 3


def test_cache_evictions_are_counted_by_cause(manager: MemoryManager, clock: FakeClock, server: MetricsServer) -> None:
    cache = manager.register_cache("candles", max_size=2, ttl_seconds=60)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)  # over max_size: "a" goes
    cache.delete("b")
    clock.now += 61
    cache.get("c")  # expired on read

    metrics = scrape(server)

    assert metrics.value("cache_evictions_total", cache="candles", cause="size") == 1
    assert metrics.value("cache_evictions_total", cache="candles", cause="explicit") == 1
    assert metrics.value("cache_evictions_total", cache="candles", cause="expired") == 1
    assert metrics.value("cache_evictions_total", cache="candles", cause="pressure") == 0


def test_cache_size_and_entries_follow_the_current_contents(manager: MemoryManager, server: MetricsServer) -> None:
    cache = manager.register_cache("books")
    cache.put("BTC/USDT", object(), size_bytes=3000)
    cache.put("ETH/USDT", object(), size_bytes=2000)
    before = scrape(server)
    cache.delete("BTC/USDT")
    after = scrape(server)

    assert (before.value("cache_size_bytes", cache="books"), before.value("cache_entries", cache="books")) == (5000, 2)
    assert (after.value("cache_size_bytes", cache="books"), after.value("cache_entries", cache="books")) == (2000, 1)


# models


def test_models_report_loaded_state_and_size(manager: MemoryManager, server: MetricsServer) -> None:
    manager.models.register("regime", Model(), size_bytes=4096)
    manager.models.register("signal", Model(), size_bytes=8192)
    manager.models.unload("signal")

    metrics = scrape(server)

    assert metrics.value("model_loaded", model="regime") == 1
    assert metrics.value("model_loaded", model="signal") == 0
    assert metrics.value("model_size_bytes", model="regime") == 4096
    assert metrics.value("model_size_bytes", model="signal") == 8192


# memory readings


def test_memory_gauges_come_from_the_probe_reading(server: MetricsServer) -> None:
    metrics = scrape(server)

    assert metrics.value("memory_working_set_bytes") == 120 * MIB
    assert metrics.value("memory_limit_bytes") == 1000 * MIB


def test_working_set_falls_back_to_rss_outside_a_cgroup(probe: FakeProbe, server: MetricsServer) -> None:
    probe.reading = reading(rss_bytes=90 * MIB, working_set_bytes=None, limit_bytes=1000 * MIB)

    assert scrape(server).value("memory_working_set_bytes") == 90 * MIB


def test_unreadable_memory_sources_are_absent_not_zero(probe: FakeProbe, server: MetricsServer) -> None:
    probe.reading = reading(rss_bytes=None, working_set_bytes=None, limit_bytes=None)

    metrics = scrape(server)

    assert metrics.value("memory_working_set_bytes") is None
    assert metrics.value("memory_limit_bytes") is None
    assert metrics.value("memory_unmanaged_bytes") is None
    assert metrics.value("memory_pressure_level") == 0


def test_unmanaged_bytes_exclude_caches_models_and_the_baseline(
    manager: MemoryManager, probe: FakeProbe, server: MetricsServer
) -> None:
    manager.read_memory()  # baseline: 100 MiB with nothing managed
    manager.register_cache("books").put("BTC/USDT", object(), size_bytes=3000)
    manager.models.register("regime", Model(), size_bytes=5000)
    probe.reading = dataclasses.replace(probe.reading, rss_bytes=100 * MIB + 3000 + 5000 + 777)

    assert scrape(server).value("memory_unmanaged_bytes") == 777


def test_pressure_level_follows_the_last_maintenance_pass(
    manager: MemoryManager, probe: FakeProbe, server: MetricsServer
) -> None:
    probe.reading = reading(rss_bytes=800 * MIB, working_set_bytes=850 * MIB, limit_bytes=1000 * MIB)
    manager.perform_maintenance()

    assert scrape(server).value("memory_pressure_level") == 2


def test_usage_ratio_is_exported_per_limit(probe: FakeProbe, server: MetricsServer) -> None:
    usages = limit_usages(
        rss_bytes=100 * MIB,
        process_limit_bytes=400 * MIB,
        cgroup_used_bytes=600 * MIB,
        cgroup_limit_bytes=1000 * MIB,
        system_total_bytes=None,
        system_available_bytes=None,
        system_percent=None,
    )
    probe.reading = dataclasses.replace(probe.reading, usages=usages, limiting=usages[1])

    metrics = scrape(server)

    assert metrics.value("memory_usage_ratio", limit="process") == 0.25
    assert metrics.value("memory_usage_ratio", limit="cgroup") == 0.6
    assert metrics.value("memory_usage_ratio", limit="host") is None


def test_budget_thrashing_is_zero_until_passes_keep_clearing_what_comes_back(
    manager: MemoryManager, probe: FakeProbe, server: MetricsServer
) -> None:
    assert scrape(server).value("memory_budget_thrashing") == 0
    probe.reading = reading(rss_bytes=800 * MIB, working_set_bytes=950 * MIB, limit_bytes=1000 * MIB)
    cache = manager.register_cache("books")
    for _ in range(4):
        cache.put("BTC/USDT", object(), size_bytes=3000)
        manager.perform_maintenance()

    assert scrape(server).value("memory_budget_thrashing") == 1


def test_facade_manager_is_collected_like_the_core_manager() -> None:
    facade = EnhancedMemoryManager(MemoryConfig(enable_background_cleanup=False))
    facade.register_ml_model("regime", Model(), size_estimate_mb=2)
    facade.register_cache("tickers").get("BTC/USDT")

    with start_metrics_server(facade, 0) as running:
        metrics = scrape(running)

    assert metrics.value("model_size_bytes", model="regime") == 2 * MIB
    assert metrics.value("cache_gets_total", cache="tickers", result="miss") == 1


# server


def test_only_the_metrics_path_is_served(server: MetricsServer) -> None:
    other = server.url.removesuffix("/metrics") + "/anything"
    with pytest.raises(urllib.error.HTTPError) as refused:
        OPENER.open(other, timeout=5)
    assert refused.value.code == 404


def test_server_binds_loopback_by_default(server: MetricsServer) -> None:
    assert server.address == "127.0.0.1"
    assert server.port > 0


def test_an_ipv6_address_is_served(manager: MemoryManager) -> None:
    try:
        running = start_metrics_server(manager, 0, addr="::1")
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    with running:
        assert (running.address, scrape(running).value("memory_pressure_level")) == ("::1", 0)


def test_shutdown_stops_the_thread_and_closes_the_port(manager: MemoryManager) -> None:
    running = start_metrics_server(manager, 0)
    scrape(running)

    running.shutdown()

    assert not running.serving
    with pytest.raises(urllib.error.URLError):
        scrape(running)


def test_shutdown_twice_is_harmless(manager: MemoryManager) -> None:
    running = start_metrics_server(manager, 0)
    running.shutdown()

    running.shutdown()

    assert not running.serving


def test_a_given_registry_is_served_with_its_other_metrics(manager: MemoryManager) -> None:
    registry = CollectorRegistry()
    Counter("orders_placed", "Orders placed.", registry=registry).inc(3)
    manager.register_cache("tickers")

    with start_metrics_server(manager, 0, registry=registry) as running:
        metrics = scrape(running)

    assert metrics.value("orders_placed_total") == 3
    assert metrics.value("cache_entries", cache="tickers") == 0


def test_a_busy_port_raises_and_leaves_the_registry_unchanged(manager: MemoryManager, server: MetricsServer) -> None:
    registry = CollectorRegistry()

    with pytest.raises(OSError):
        start_metrics_server(manager, server.port, registry=registry)

    assert list(registry.collect()) == []


@pytest.mark.parametrize("port", [-1, 65536, True, "9100", 80.0])
def test_invalid_port_is_rejected_naming_the_range(manager: MemoryManager, port: object) -> None:
    with pytest.raises(ValueError, match=r"port must be an integer in \[0, 65535\]"):
        start_metrics_server(manager, port)  # type: ignore[arg-type]


@pytest.mark.parametrize("addr", ["", None])
def test_empty_address_is_rejected(manager: MemoryManager, addr: object) -> None:
    with pytest.raises(ValueError, match="addr must be a non-empty string"):
        start_metrics_server(manager, 0, addr=addr)  # type: ignore[arg-type]


# registration


def test_register_collector_defaults_to_the_global_registry(manager: MemoryManager) -> None:
    manager.register_cache("global-registry-test").put("k", 1, size_bytes=10)
    collector = register_collector(manager)
    try:
        assert REGISTRY.get_sample_value("cache_size_bytes", {"cache": "global-registry-test"}) == 10
    finally:
        REGISTRY.unregister(collector)


def test_registering_takes_no_memory_reading(manager: MemoryManager) -> None:
    register_collector(manager, CollectorRegistry(auto_describe=True))

    assert manager.last_reading is None


def test_missing_prometheus_client_names_the_metrics_extra(
    manager: MemoryManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)

    with pytest.raises(ImportError, match=r"crypto-bot\[metrics\]"):
        MemoryCollector(manager)


# leak diagnosis


def diagnosis(verdict: str, sites: int, unmanaged_bytes_per_cycle: float, traced_growth_bytes: int) -> LeakDiagnosis:
    return LeakDiagnosis(
        verdict=verdict,
        started_at=0.0,
        seconds=180.0,
        passes=3,
        cycles=3,
        cycle_unit="cycle",
        unmanaged_bytes_per_cycle=unmanaged_bytes_per_cycle,
        traced_growth_bytes=traced_growth_bytes,
        explained_ratio=traced_growth_bytes / 3 / unmanaged_bytes_per_cycle,
        window_unmanaged_growth_bytes=None,
        sites=tuple(
            GrowingSite(f"/srv/strategy.py:{10 + rank}", True, "/srv/strategy.py:1", 3000 * (sites - rank), 3, 1000.0 * (sites - rank), 1.0, ())
            for rank in range(sites)
        ),
        types=tuple(GrowingType(f"pkg.Type{rank}", 100, 30 - rank, 10.0 - rank) for rank in range(7)),
        frames=32,
        tracing_started_here=True,
        gc_enabled=True,
        trace_memory_bytes=0,
    )


def test_leak_families_without_a_leak(server: MetricsServer) -> None:
    metrics = scrape(server)
    assert metrics.value("memory_leak_suspected") == 0
    assert metrics.value("memory_leak_diagnosis_window_open") == 0
    assert metrics.value("memory_leak_diagnoses_total", verdict="python") == 0
    assert not any(name == "memory_leak_site_bytes_per_cycle" for name, _ in metrics.samples)


def test_the_last_diagnosis_exports_its_top_five_sites_and_types(manager: MemoryManager, server: MetricsServer) -> None:
    manager.diagnoser.last = diagnosis("python", sites=7, unmanaged_bytes_per_cycle=8000.0, traced_growth_bytes=21000)
    manager.diagnoser.diagnoses_by_verdict["python"] += 1

    metrics = scrape(server)

    assert metrics.value("memory_leak_diagnoses_total", verdict="python") == 1
    assert metrics.value("memory_leak_site_bytes_per_cycle", rank="1", site="/srv/strategy.py:10") == 7000.0
    assert metrics.value("memory_leak_site_bytes_per_cycle", rank="5", site="/srv/strategy.py:14") == 3000.0
    exported = [labels for name, labels in metrics.samples if name == "memory_leak_site_bytes_per_cycle"]
    assert len(exported) == 5
    assert metrics.value("memory_leak_type_objects_per_cycle", rank="1", type="pkg.Type0") == 10.0
    assert len([1 for name, _ in metrics.samples if name == "memory_leak_type_objects_per_cycle"]) == 5
    assert metrics.value("memory_leak_unexplained_bytes_per_cycle") == 1000.0


def test_an_unexplained_diagnosis_exports_no_sites(manager: MemoryManager, server: MetricsServer) -> None:
    manager.diagnoser.last = diagnosis("unexplained", sites=2, unmanaged_bytes_per_cycle=300_000.0, traced_growth_bytes=3000)
    manager.diagnoser.diagnoses_by_verdict["unexplained"] += 1

    metrics = scrape(server)

    assert metrics.value("memory_leak_diagnoses_total", verdict="unexplained") == 1
    assert not any(name == "memory_leak_site_bytes_per_cycle" for name, _ in metrics.samples)
    assert metrics.value("memory_leak_unexplained_bytes_per_cycle") == 299_000.0
