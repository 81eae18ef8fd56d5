"""The bot's Prometheus registry: trading and cycle metrics, the memory collector, process and Python.

Every name of ours starts with `crypto_bot_` (units as suffixes, `_total` on counters):
`cycle_duration_seconds` (histogram), `last_cycle_timestamp_seconds`, `cycles_total`, `equity`,
`cash`, `realized_pnl`, `open_positions`, `trades_total`, `exchange_rest_calls_total`,
`exchange_errors_total{kind}`, `exchange_down`, `recycles_total`, `healthy`, `stall_after_seconds`,
`notifications_delivered_total{target}`, `notifications_failed_total{target}`,
`notifications_dropped_total{target}`, and the memory collector's (`crypto_bot_memory_*`,
`crypto_bot_cache_*`, `crypto_bot_model_*`; see `crypto_bot.memory.metrics`). prometheus_client's
standard collectors add `process_*` and `python_*`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from crypto_bot.memory.metrics import register_collector

from .board import StatusBoard

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

NAMESPACE = "crypto_bot"


class BotCollector:
    """Reads the StatusBoard at each scrape (nothing is counted on the trading path)."""

    def __init__(self, board: StatusBoard) -> None:
        self.board = board

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        board = self.board
        prefix = f"{NAMESPACE}_"
        buckets, seconds_sum = board.cycle_histogram()
        yield HistogramMetricFamily(
            prefix + "cycle_duration_seconds", "Duration of the bot's trading cycles in this process.",
            buckets=buckets, sum_value=seconds_sum,
        )
        bot, trading = board.bot_status(), board.trading_status()
        market = trading.get("market", {})

        def gauge(name: str, documentation: str, value: float | None) -> Iterator[Metric]:
            if value is not None:  # unknown yet (before the first cycle): absent, never a made-up zero
                yield GaugeMetricFamily(prefix + name, documentation, value=value)

        def counter(name: str, documentation: str, value: float | None) -> Iterator[Metric]:
            if value is not None:
                yield CounterMetricFamily(prefix + name, documentation, value=value)

        yield from gauge("last_cycle_timestamp_seconds", "When the last cycle ended (Unix time).", bot["last_cycle_at"])
        yield from counter("cycles", "Cycles run, the recycled processes' before this one included.", bot["cycle"])
        yield from counter(
            "recycles", "Times the supervisor started a fresh bot process on the bot's request.", bot["recycles"]
        )
        health = board.health()
        yield from gauge("healthy", "1 while /health answers 200, else 0.", 1 if health.healthy else 0)
        yield from gauge(
            "stall_after_seconds",
            "Seconds without a cycle after which /health calls the loop stalled (server.stall_intervals periods).",
            health.details["stall_after_seconds"],
        )
        yield from gauge("equity", "Paper account equity at the latest closes (quote currency).", trading.get("equity"))
        yield from gauge("cash", "Paper account cash (quote currency).", trading.get("cash"))
        yield from gauge(
            "realized_pnl", "Realised profit and loss, net of fees (quote currency).", trading.get("realized_pnl")
        )
        positions = trading.get("open_positions")
        yield from gauge("open_positions", "Open paper positions.", None if positions is None else len(positions))
        yield from counter("trades", "Closed paper trades.", trading.get("closed_trades"))
        yield from counter("exchange_rest_calls", "REST requests sent to the exchange.", market.get("rest_calls"))
        if market:
            down = 1 if market.get("exchange_down") else 0
            yield from gauge("exchange_down", "1 while the market source pauses its requests after failures.", down)
            errors = CounterMetricFamily(
                prefix + "exchange_errors", "Failed market data requests, by kind.", labels=("kind",)
            )
            for kind, count in sorted(market.get("errors", {}).items()):
                errors.add_metric((kind,), count)
            yield errors
        if board.notifier is not None:
            targets = board.notifier.stats()["targets"]
            for name, documentation in (
                ("delivered", "Events a notifier delivered."),
                ("failed", "Events a notifier could not deliver (the log says why)."),
                ("dropped", "Events dropped because a notifier's queue was full."),
            ):
                family = CounterMetricFamily(prefix + f"notifications_{name}", documentation, labels=("target",))
                for target, figures in targets.items():
                    family.add_metric((target,), figures[name])
                yield family


def build_registry(board: StatusBoard) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one): the bot's, the memory manager's, process and
    Python collectors."""
    import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    registry.register(BotCollector(board))
    if board.memory is not None:
        register_collector(board.memory, registry, namespace=NAMESPACE)
    prometheus_client.ProcessCollector(registry=registry)
    prometheus_client.PlatformCollector(registry=registry)
    prometheus_client.GCCollector(registry=registry)
    return registry
