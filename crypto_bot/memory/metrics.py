"""Prometheus metrics for a MemoryManager: cache counters and gauges, models, memory readings.

Covers a custom collector that reads the manager's state at scrape time (cache counters come
from each cache's O(1) `stats()`, so nothing is incremented on the hot path), its registration,
and a small HTTP endpoint (`/metrics` only) that binds 127.0.0.1 unless told otherwise. Names follow Micrometer's
cache conventions: `cache_gets_total{cache,result}`, `cache_puts_total{cache}`,
`cache_evictions_total{cache,cause}`, `cache_size_bytes{cache}`, `cache_entries{cache}`,
`model_loaded{model}`, `model_size_bytes{model}`, `memory_working_set_bytes`,
`memory_rss_bytes`, `memory_limit_bytes`, `memory_usage_ratio{limit}` (each limit against the memory it bounds),
`memory_oom_kills_total`, `memory_psi_some_avg10_ratio`,
`memory_pressure_level`, `memory_budget_thrashing`, `memory_unmanaged_bytes`, and the leak
diagnosis: `memory_leak_suspected`, `memory_leak_diagnosis_window_open`,
`memory_leak_diagnoses_total{verdict}`, and from the last diagnosis
`memory_leak_site_bytes_per_cycle{rank,site}` and `memory_leak_type_objects_per_cycle{rank,type}`
(the top 5 each, so the label sets stay bounded) and `memory_leak_unexplained_bytes_per_cycle`.
Not covered: the bot's trading metrics and its HTTP server (`crypto_bot.status`, which serves these
under the `crypto_bot` namespace), or acting on these numbers (`manager.py` does).

prometheus_client is an optional dependency (the `metrics` extra), imported only when a
collector is built, so importing this module never needs it.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import TYPE_CHECKING, Self

from . import validation
from .diagnosis import Verdict
from .pressure import PressureLevel

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from .manager import MemoryManager

logger = logging.getLogger(__name__)

__all__ = [
    "BackgroundHTTPServer",
    "HostHTTPServer",
    "MemoryCollector",
    "MetricsServer",
    "register_collector",
    "start_metrics_server",
]

_LEVELS_HELP = ", ".join(f"{level.value} {level.name.lower()}" for level in PressureLevel)
# Sites and types of the last diagnosis exported: a bounded label set, replaced by each diagnosis.
TOP_EXPORTED = 5
_VERDICTS = (Verdict.PYTHON, Verdict.UNEXPLAINED, Verdict.NO_GROWTH)


def _prometheus() -> ModuleType:
    """prometheus_client, or an ImportError that says which extra provides it."""
    try:
        import prometheus_client.core
    except ImportError as error:
        raise ImportError(
            "crypto_bot.memory.metrics needs prometheus_client, which is not installed; "
            "install the 'metrics' extra: pip install 'crypto-bot[metrics]'"
        ) from error
    return prometheus_client


def _empty_families(namespace: str = "") -> dict[str, Metric]:
    """Every family this collector exports, without samples, keyed by family name without the namespace."""
    core = _prometheus().core
    prefix = f"{namespace}_" if namespace else ""

    def counter(name: str, documentation: str, labels: tuple[str, ...]) -> Metric:
        return core.CounterMetricFamily(prefix + name, documentation, labels=labels)

    def gauge(name: str, documentation: str, labels: tuple[str, ...]) -> Metric:
        return core.GaugeMetricFamily(prefix + name, documentation, labels=labels)

    families = (
        counter("cache_gets", "Cache lookups by result (hit or miss).", labels=("cache", "result")),
        counter("cache_puts", "Values stored in the cache.", labels=("cache",)),
        counter("cache_evictions", "Entries that left the cache, by removal cause.", labels=("cache", "cause")),
        gauge("cache_size_bytes", "Bytes held by the cache (its own size accounting).", labels=("cache",)),
        gauge("cache_entries", "Entries held by the cache.", labels=("cache",)),
        gauge("model_loaded", "1 while the model is loaded, 0 once unloaded.", labels=("model",)),
        gauge("model_size_bytes", "Measured or declared size of the model.", labels=("model",)),
        gauge(
            "memory_working_set_bytes",
            "Memory the limit is enforced against: the cgroup working set, or the process RSS outside a cgroup.",
            labels=(),
        ),
        gauge("memory_rss_bytes", "Resident set size of this process.", labels=()),
        gauge("memory_limit_bytes", "Effective memory limit: the smallest of process, cgroup and host.", labels=()),
        gauge(
            "memory_usage_ratio",
            "Each limit against the memory it bounds: process (RSS), cgroup (working set), host (usage).",
            labels=("limit",),
        ),
        counter(
            "memory_oom_kills",
            "Processes the kernel's OOM killer ended in this process's memory cgroup (memory.events oom_kill).",
            labels=(),
        ),
        gauge(
            "memory_psi_some_avg10_ratio",
            "Share of the last 10 s in which some task of the cgroup stalled on memory (pressure stall information).",
            labels=(),
        ),
        gauge("memory_pressure_level", f"Pressure tier of the last maintenance pass: {_LEVELS_HELP}.", labels=()),
        gauge(
            "memory_budget_thrashing",
            "1 while maintenance passes keep clearing caches and models the process loads again, else 0.",
            labels=(),
        ),
        gauge(
            "memory_unmanaged_bytes", "RSS not explained by caches, loaded models or the start-up baseline.", labels=()
        ),
        gauge("memory_leak_suspected", "1 while the leak detector sees unmanaged memory growing, else 0.", labels=()),
        gauge("memory_leak_diagnosis_window_open", "1 while a leak diagnosis traces allocations, else 0.", labels=()),
        counter(
            "memory_leak_diagnoses",
            "Leak diagnoses by verdict: python (lines named), unexplained (not Python allocations), no_growth.",
            labels=("verdict",),
        ),
        gauge(
            "memory_leak_site_bytes_per_cycle",
            f"Growth per cycle of the top {TOP_EXPORTED} lines of the last diagnosis that named lines (path:line).",
            labels=("rank", "site"),
        ),
        gauge(
            "memory_leak_type_objects_per_cycle",
            f"Instances per cycle of the top {TOP_EXPORTED} growing types of the last diagnosis.",
            labels=("rank", "type"),
        ),
        gauge(
            "memory_leak_unexplained_bytes_per_cycle",
            "Unmanaged growth per cycle the last diagnosis found not explained by Python allocations.",
            labels=(),
        ),
    )
    return {family.name.removeprefix(prefix): family for family in families}


class MemoryCollector:
    """A prometheus_client custom collector: every scrape reads the manager's current state.

    `namespace` prefixes every name (`crypto_bot` gives `crypto_bot_cache_gets_total`), as
    prometheus_client's own `namespace=` does.
    """

    manager: MemoryManager
    namespace: str

    def __init__(self, manager: MemoryManager, namespace: str = "") -> None:
        _prometheus()  # fail at construction, not at the first scrape
        self.manager = manager
        self.namespace = namespace

    def describe(self) -> Iterator[Metric]:
        """The families without samples, so registering checks names without taking a reading."""
        return iter(_empty_families(self.namespace).values())

    def collect(self) -> Iterator[Metric]:
        """The families with samples; O(caches + models), one probe reading, no heap walk."""
        manager = self.manager
        families = _empty_families(self.namespace)
        for name, cache in manager.caches.items():
            stats = cache.stats()
            families["cache_gets"].add_metric((name, "hit"), stats["hits"])
            families["cache_gets"].add_metric((name, "miss"), stats["misses"])
            families["cache_puts"].add_metric((name,), stats["puts"])
            for cause, count in stats["evictions"].items():
                families["cache_evictions"].add_metric((name, cause), count)
            families["cache_size_bytes"].add_metric((name,), stats["total_bytes"])
            families["cache_entries"].add_metric((name,), stats["entries"])
        for record in manager.models.records():
            families["model_loaded"].add_metric((record.name,), 1 if record.loaded else 0)
            families["model_size_bytes"].add_metric((record.name,), record.size_bytes)
        reading = manager.read_memory()
        working_set_bytes = reading.working_set_bytes if reading.working_set_bytes is not None else reading.rss_bytes
        families["memory_pressure_level"].add_metric((), int(manager.policy.level))
        families["memory_budget_thrashing"].add_metric((), 0 if manager.thrash_watch.thrashing is None else 1)
        for usage in reading.usages:
            families["memory_usage_ratio"].add_metric((usage.source,), usage.ratio)
        # An unreadable source leaves its family without a sample: absent, never a made-up zero.
        for name, value in (
            ("memory_working_set_bytes", working_set_bytes),
            ("memory_rss_bytes", reading.rss_bytes),
            ("memory_oom_kills", reading.oom_kills),
            ("memory_psi_some_avg10_ratio", None if reading.psi_some_avg10 is None else reading.psi_some_avg10 / 100),
            ("memory_limit_bytes", reading.limit_bytes),
            ("memory_unmanaged_bytes", manager.unmanaged_bytes(reading)),
        ):
            if value is not None:
                families[name].add_metric((), value)
        self._collect_leak(families)
        return iter(families.values())

    def _collect_leak(self, families: dict[str, Metric]) -> None:
        manager = self.manager
        diagnoser = manager.diagnoser
        families["memory_leak_suspected"].add_metric((), 1 if manager.leaks.report().suspected else 0)
        families["memory_leak_diagnosis_window_open"].add_metric((), 1 if diagnoser.window_open else 0)
        by_verdict = diagnoser.diagnoses_by_verdict
        for verdict in _VERDICTS:
            families["memory_leak_diagnoses"].add_metric((verdict,), by_verdict.get(verdict, 0))
        last = diagnoser.last
        if last is None:
            return
        if last.verdict == Verdict.PYTHON:
            for rank, site in enumerate(last.sites[:TOP_EXPORTED], start=1):
                families["memory_leak_site_bytes_per_cycle"].add_metric((str(rank), site.site), site.bytes_per_cycle)
        for rank, grown in enumerate(last.types[:TOP_EXPORTED], start=1):
            families["memory_leak_type_objects_per_cycle"].add_metric((str(rank), grown.name), grown.per_cycle)
        families["memory_leak_unexplained_bytes_per_cycle"].add_metric((), last.unexplained_bytes_per_cycle)


def register_collector(
    manager: MemoryManager, registry: CollectorRegistry | None = None, namespace: str = ""
) -> MemoryCollector:
    """Register a MemoryCollector for `manager` on `registry` (default: prometheus_client's global REGISTRY)."""
    collector = MemoryCollector(manager, namespace)
    (registry if registry is not None else _prometheus().REGISTRY).register(collector)
    return collector


# serve_forever() checks for shutdown() once per poll interval; this bounds how long a stop takes.
_POLL_INTERVAL_SECONDS = 0.05


class HostHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer on the address family of its host (IPv4 or IPv6)."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)[0][0]
        super().__init__(address, handler)


class BackgroundHTTPServer:
    """An HTTP server serving from a daemon thread: the address and port it is bound to, and `shutdown()`."""

    address: str
    port: int

    def __init__(self, httpd: ThreadingHTTPServer, *, name: str) -> None:
        self.address, self.port = httpd.server_address[:2]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_SECONDS},
            name=f"{name}-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def serving(self) -> bool:
        return self._thread.is_alive()

    def shutdown(self) -> None:
        """Stop serving, close the socket and wait for the serving thread; safe to call twice."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


class MetricsServer(BackgroundHTTPServer):
    """A running metrics endpoint (`start_metrics_server`)."""

    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        super().__init__(httpd, name="memory-metrics")

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/metrics"


def _metrics_path_only(handler: type[BaseHTTPRequestHandler]) -> type[BaseHTTPRequestHandler]:
    """prometheus_client's handler, answering 404 on every path but /metrics (it serves the metrics on any)."""

    class MetricsPathOnly(handler):  # type: ignore[valid-type, misc]
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            super().do_GET()

    return MetricsPathOnly


def start_metrics_server(
    manager: MemoryManager,
    port: int,
    addr: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """Serve the manager's metrics over HTTP from a daemon thread; `port=0` picks a free port.

    Without `registry` the endpoint serves a dedicated registry holding only this manager's
    collector; with one, the collector is added to it and the whole registry is served.
    """
    port = validation.integer("port", port, minimum=0, maximum=65535)
    validation.text("addr", addr)
    prometheus_client = _prometheus()
    served = registry if registry is not None else prometheus_client.CollectorRegistry()
    collector = register_collector(manager, served)
    try:
        httpd = HostHTTPServer((addr, port), _metrics_path_only(prometheus_client.MetricsHandler.factory(served)))
    except OSError:
        served.unregister(collector)
        raise
    server = MetricsServer(httpd)
    logger.info("serving memory metrics on %s", server.url)
    return server
