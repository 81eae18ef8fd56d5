"""TradingBot: the phase-based paper-trading cycle over a BotContext.

One cycle: fetch_candidates -> update_caches -> analyse_batch -> execute_signals -> handle_exits
-> monitor. OHLCV windows live in `df_cache` (`{timeframe: {symbol: frame}}`). The strategy is a
plugin (`strategy.plugin`, the built-in one by default) behind a `PluginHost`: analyse_batch asks
it for a score per symbol, fills go to its `on_fill`, and `on_cycle_end` ends the cycle; a plugin
that keeps failing is disabled while the bot goes on managing exits. The built-in strategy keeps
regimes in `regime_cache` and its signal model in the memory manager's ModelRegistry (loaded from
disk on demand, unloaded when idle or under pressure). Positions live in the paper broker and its
SQLite journal, outside every cache.

`TradingBot` is the composition root: it builds each component from its own section of the
settings (market, strategy, risk, paper, storage) and takes the `MemoryManager` (built from
`settings.memory` when not given), so one memory policy acts on the bot's caches and model.
`manage_memory=False` runs the same workload the way bots commonly do without us: plain dicts
never trimmed and a model held forever. The soak command compares the two.
Fills, memory levels, phase failures and exchange outages go to the `notifier` (`crypto_bot.notify`,
built from `settings.notify` when not given, and then closed with the bot).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from crypto_bot.execution import Fill, PaperBroker, RiskManager, TradeJournal
from crypto_bot.market import (
    CcxtMarket,
    CsvMarket,
    MarketDataError,
    MarketDataSource,
    SeriesUpdate,
    SimulatedMarket,
    generated_symbols,
    refresh_series,
    timeframe_ms,
)
from crypto_bot.market.simulated import DEFAULT_HISTORY_CANDLES, DEFAULT_START_MS
from crypto_bot.memory import MemoryManager
from crypto_bot.memory.units import MIB as _MIB
from crypto_bot.notify import Notifier
from crypto_bot.phase_runner import BotContext, PhaseRunner, notify
from crypto_bot.settings import Settings
from crypto_bot.strategy import PluginHost, Signal, StrategyRuntime, analysis_candles, atr, entry_signal

if TYPE_CHECKING:
    from crypto_bot.fleet import Shard

logger = logging.getLogger(__name__)


def build_market(
    settings: Settings, resume_at_ms: int | None = None, *, shard: Shard | None = None
) -> MarketDataSource:
    """The market data source the settings name (the simulated market by default).

    The simulated market starts with enough history to fill a whole window of the largest timeframe,
    at `resume_at_ms` (rounded up to a whole candle) when a journal says where the last run left it: the
    clock and the price path go on from there, so the journal's times only ever grow. A CSV replay keeps
    only the window of each file; a fleet worker (`market.source: redis`) reads `shard` of the symbols
    (default: all) from Redis.
    """
    market = settings.market
    if market.source == "redis":  # imports the fleet (and redis-py) on this path only
        from crypto_bot.fleet import RedisMarket, Shard

        return RedisMarket(
            market.redis, symbols=settings.symbols, timeframes=settings.timeframes, shard=shard or Shard()
        )
    if market.source == "csv":  # each file costs the bot's window, whatever its size
        return CsvMarket(
            market.csv_directory,  # type: ignore[arg-type]
            timeframes=settings.timeframes,
            window_candles=settings.strategy.history_candles,
        )
    if market.source == "ccxt":
        return CcxtMarket.from_config(market.ccxt, symbols=settings.symbols, timeframes=settings.timeframes)
    window = max(DEFAULT_HISTORY_CANDLES, settings.strategy.history_candles)
    history_candles = window * timeframe_ms(settings.timeframes[-1]) // timeframe_ms("1m")
    minute_ms = timeframe_ms("1m")  # the simulated market's base candle
    start_ms = DEFAULT_START_MS
    if resume_at_ms is not None:
        start_ms = max(start_ms, -(-resume_at_ms // minute_ms) * minute_ms)
    return SimulatedMarket(
        settings.symbols, timeframes=settings.timeframes, seed=market.seed, start_ms=start_ms,
        history_candles=history_candles,
    )


RECENT_FILLS = 20  # fills kept for the status page and /api/status


@dataclass(slots=True)
class CycleStatus:
    """The figures of the live status line."""

    cycle: int
    equity: float
    open_positions: int
    trades: int
    rss_bytes: int | None
    cache_bytes: int
    pressure_level: str
    fetches: int = 0  # series the bot asked the market source for this cycle (one per closed candle, not per series)
    stale_series: int = 0  # series of the batch missing a closed candle (a failed or gapped fetch)
    stale_seconds: float = 0.0  # how long ago the oldest stale series' newest candle closed
    ended_at_seconds: float = 0.0  # when the cycle ended, Unix time (the machine's clock)

    def line(self) -> str:
        rss = "n/a" if self.rss_bytes is None else f"{self.rss_bytes / _MIB:.0f} MiB"
        stale = f" | stale {self.stale_series} (oldest {self.stale_seconds:.0f} s)" if self.stale_series else ""
        ended_at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.ended_at_seconds))
        return (
            f"{ended_at} UTC | cycle {self.cycle:>5} | equity {self.equity:>11.2f} | open {self.open_positions} | "
            f"trades {self.trades} | rss {rss} | caches {self.cache_bytes / _MIB:.1f} MiB | {self.pressure_level} | "
            f"fetches {self.fetches}{stale}"
        )


class TradingBot:
    """Builds the components and phases from settings and runs cycles (the composition root).

    `memory` is the one MemoryManager of the bot's caches and model (default: one built from
    `settings.memory`, with no thread: the runner schedules maintenance). Whoever starts its
    maintenance thread stops it. `manage_memory=False` takes no manager at all. A notifier given is the
    caller's to close; one built here is closed by `close()`.
    """

    memory: MemoryManager | None

    def __init__(
        self,
        settings: Settings,
        *,
        memory: MemoryManager | None = None,
        market: MarketDataSource | None = None,
        manage_memory: bool = True,
        notifier: Any = None,
        on_status: Callable[[CycleStatus], None] | None = None,
        first_cycle: int = 0,
    ) -> None:
        if memory is not None and not manage_memory:
            raise ValueError("memory was given with manage_memory=False; an unmanaged bot takes no manager")
        self.settings = settings
        self.memory = (memory if memory is not None else MemoryManager(settings.memory)) if manage_memory else None
        self.journal = TradeJournal(settings.storage.journal_path)
        try:  # the journal first: it says where the simulated market's clock goes on from
            self.market = market if market is not None else build_market(settings, self.journal.market_clock_ms())
            self.broker = PaperBroker(self.journal, settings.paper, clock_ms=lambda: self.market.now_ms)
        except BaseException:
            self.journal.close()  # release the writer lock now, not when the bot is collected
            raise
        self.risk = RiskManager(settings.risk)
        self._own_notifier = notifier is None
        self.notifier = Notifier.from_config(settings.notify) if notifier is None else notifier
        strategy = settings.strategy
        self.strategy = PluginHost.load(
            strategy.plugin, strategy.params, base_dir=settings.config_dir, max_failures=strategy.plugin_max_failures
        )
        self.manage_memory = manage_memory
        self.on_status = on_status
        self.ctx = BotContext(
            positions=self.broker.positions,  # type: ignore[arg-type]
            df_cache={},
            regime_cache={},
            config=dict(settings.raw),
            exchange=self.market,
            risk_manager=self.risk,
            notifier=self.notifier,
            paper_wallet=self.broker,
            memory_manager=self.memory,
            manage_memory=manage_memory,
        )
        self.ctx.balance = self.broker.cash
        if self.memory is not None:
            self.memory.add_alert_callback(self._memory_alert)
        self.runner = PhaseRunner(
            [
                self.fetch_candidates,
                self.update_caches,
                self.analyse_batch,
                self.execute_signals,
                self.handle_exits,
                self.monitor,
            ],
            continue_on_error=True,
            monitor_memory=manage_memory,
        )
        self.first_cycle = self.cycle = first_cycle  # a recycled bot goes on counting where its predecessor stopped
        self._totals_at_start = (self.broker.trades_count, self.broker.realized_pnl)  # all-time, from the journal
        self.peak_equity = self.broker.cash
        self.last_status: CycleStatus | None = None
        self.recent_fills: deque[Fill] = deque(maxlen=RECENT_FILLS)
        self.exchange_down: str | None = None  # why the market source paused its requests, while it does
        self._market_errors = 0  # failed requests counted by the market source up to the last cycle's end
        self.market_errors_last_cycle = 0
        self._cursor = 0
        self._discovered = 0
        self._warned_budget = False
        self._stale: dict[tuple[str, str], SeriesUpdate] = {}  # series whose last refresh left a closed candle out
        self._fetches = 0  # requests to the market source this cycle
        self._atr_candles = analysis_candles(fast=strategy.ema_fast, slow=strategy.ema_slow)  # the built-in's window
        self._analysis_timeframe = settings.timeframes[0]

    def _memory_alert(self, message: str, details: dict[str, Any]) -> None:
        """The memory manager's alerts that the runner does not already report after each phase: a leak diagnosis
        (with the lines it names) and a thrashing budget. Called on the maintenance thread; the notifier is
        thread-safe."""
        kind = details.get("kind")
        if kind == "leak_diagnosis":
            sites = details.get("sites") or []
            subject = sites[0] if sites else str(details.get("verdict"))
            self.notifier.notify(message, event="leak", subject=subject, details=details)
        elif kind == "thrashing":
            self.notifier.notify(message, event="pressure", subject="thrashing", details=details)

    # ------------------------------------------------------------ set-up

    async def prepare_model(self) -> None:
        """Start the strategy plugin (its optional `on_start`): the built-in one loads its signal model, or trains
        it on simulated history at first start, and registers it with the memory manager."""
        await self.strategy.start(StrategyRuntime(self.settings, self.memory, self.ctx.regime_cache))

    # ------------------------------------------------------------ phases

    async def fetch_candidates(self, ctx: BotContext) -> None:
        """Choose this cycle's symbols: newly listed pairs, a rotating slice of the universe, open positions.

        With the strategy disabled, only the open positions: their exits are still managed.
        """
        held = sorted({p.symbol for p in self.broker.positions.values()})
        if not self.strategy.enabled:
            ctx.current_batch = held
            return
        discovered = self._discover_symbols()
        universe = self.market.universe()
        size = min(self.settings.strategy.batch_size, len(universe))
        rotation = [universe[(self._cursor + i) % len(universe)] for i in range(size)]
        self._cursor = (self._cursor + size) % max(len(universe), 1)
        ctx.current_batch = list(dict.fromkeys([*discovered, *rotation, *held]))

    def _discover_symbols(self) -> list[str]:
        """Scanner mode: list new pairs each cycle, rotating out the oldest beyond max_universe."""
        market_settings = self.settings.market
        new = market_settings.scanner_new_symbols_per_cycle
        if not new or not isinstance(self.market, SimulatedMarket):
            return []
        names = generated_symbols(new, first_number=self._discovered + 1)
        self._discovered += new
        held = {p.symbol for p in self.broker.positions.values()}
        universe = [*self.market.universe(), *names]
        excess = len(universe) - market_settings.max_universe
        if excess > 0:
            dropped = [s for s in universe if s not in held][:excess]
            universe = [s for s in universe if s not in set(dropped)]
        self.market.set_universe(universe)
        return names

    async def update_caches(self, ctx: BotContext) -> None:
        """Append new candles to each series of the batch (bounded window)."""
        jobs = [(symbol, tf) for symbol in ctx.current_batch for tf in self.settings.timeframes]
        batch = set(ctx.current_batch)  # staleness is kept for this batch only: the universe rotates
        self._stale = {series: update for series, update in self._stale.items() if series[0] in batch}
        await asyncio.gather(*(self._refresh_series(ctx, symbol, tf) for symbol, tf in jobs))

    async def _refresh_series(self, ctx: BotContext, symbol: str, timeframe: str) -> pd.DataFrame | None:
        """Bring one window up to date (`market.refresh_series`: only once a candle closed, only what closed).

        A failed request keeps the cached window and is logged; that series alone waits, marked stale.
        """
        series = ctx.df_cache.get(timeframe)
        if series is None:
            ctx.df_cache[timeframe] = {}
            series = ctx.df_cache[timeframe]
        update = await refresh_series(
            self.market, symbol, timeframe, series.get(symbol), self.settings.strategy.history_candles
        )
        self._fetches += update.requested
        if update.error is not None:
            logger.warning("no %s candles for %s: %s", timeframe, symbol, update.error)
        if update.changed:
            self._keep(series, symbol, update.frame)
        if update.stale:
            self._stale[(symbol, timeframe)] = update
        else:
            self._stale.pop((symbol, timeframe), None)
        return update.frame

    def _keep(self, cache: MutableMapping[Any, Any], key: Any, value: Any) -> None:
        """Cache `value`; one larger than the whole cache budget is used this cycle and not kept."""
        try:
            cache[key] = value
        except ValueError as error:
            log = logger.debug if self._warned_budget else logger.warning
            self._warned_budget = True
            log("%s: used this cycle, not cached (cache_size_limit_mb is smaller than one entry)", error)

    async def analyse_batch(self, ctx: BotContext) -> None:
        """The strategy's score for each symbol with candles on the analysis timeframe; the entries, best first."""
        signals = []
        series = [(timeframe, ctx.df_cache.get(timeframe)) for timeframe in self.settings.timeframes]
        for symbol in ctx.current_batch if self.strategy.enabled else ():
            candles = {}
            for timeframe, windows in series:
                frame = windows.get(symbol) if windows is not None else None
                if frame is not None and not frame.empty:
                    candles[timeframe] = frame
            frame = candles.get(self._analysis_timeframe)
            if frame is None or (symbol, self._analysis_timeframe) in self._stale:
                continue  # no signal from a window that misses a closed candle
            score = self.strategy.signal(symbol, candles)
            if score is not None and (signal := self._entry(symbol, score, frame)) is not None:
                signals.append(signal)
        ctx.analysis_results = sorted(signals, key=lambda s: s.score, reverse=True)

    def _entry(self, symbol: str, score: float, frame: pd.DataFrame) -> Signal | None:
        """The entry `score` asks for at the latest close, with the ATR that sizes it; None below min_score."""
        window = frame.iloc[-self._atr_candles :]
        price = float(window["close"].iloc[-1])
        average_true_range = float(atr(window).iloc[-1])
        if not average_true_range > 0:  # too few candles for an ATR (nan), or a flat window: nothing to size by
            logger.debug("no entry for %s: ATR %s over %d candles", symbol, average_true_range, len(window))
            return None
        try:
            return entry_signal(
                symbol, score, price=price, atr=average_true_range, min_score=self.settings.strategy.min_score
            )
        except ValueError as error:  # a price the broker cannot fill at
            logger.warning("no entry for %s: %s", symbol, error)
            return None

    async def execute_signals(self, ctx: BotContext) -> None:
        """Risk checks and sizing, then paper fills for the signals that pass."""
        equity = self._equity(ctx)
        self.peak_equity = max(self.peak_equity, equity)
        for signal in ctx.analysis_results:
            open_positions = list(self.broker.positions.values())
            decision = self.risk.check_entry(open_positions, equity, self.peak_equity, signal.symbol)
            if not decision.allowed:
                logger.debug("skip %s: %s", signal.symbol, decision.reason)
                continue
            if signal.atr <= 0:
                continue
            quantity = self.risk.position_size(equity, signal.price, signal.atr, cash=self.broker.cash)
            if quantity <= 0:
                continue
            try:  # an ATR too wide for the stop, or a fill the broker refuses, skips this signal only
                stop, target = self.risk.stop_and_target(signal.side, signal.price, signal.atr)
                position = self.broker.open_position(
                    signal, quantity, stop, target, self.settings.risk.trailing_stop_ratio
                )
            except ValueError as error:
                logger.info("order for %s refused: %s", signal.symbol, error)
                continue
            await self._filled(
                ctx,
                Fill.opening(position),
                f"opened {position.side} {position.symbol} {position.quantity:.6g} @ {position.entry_price:.6g}",
            )
        ctx.balance = self.broker.cash

    async def handle_exits(self, ctx: BotContext) -> None:
        """Stop loss, take profit and trailing stop on the latest candle; only triggered positions close."""
        for symbol in sorted({p.symbol for p in self.broker.positions.values()}):
            try:
                candle = await self._latest_candle(ctx, symbol)
            except MarketDataError as error:  # one symbol's missing data must not block the others' exits
                logger.warning("no %s candle for %s; its exits wait a cycle: %s", self._analysis_timeframe, symbol, error)
                continue
            if candle is None:
                continue
            at_ms = int(candle.name.timestamp() * 1000)
            for trade in self.broker.process_candle(symbol, candle["high"], candle["low"], candle["close"], at_ms):
                message = f"closed {trade.symbol} ({trade.exit_reason}): pnl {trade.pnl:.2f}"
                await self._filled(ctx, Fill.closing(trade), message)
        ctx.balance = self.broker.cash

    async def _filled(self, ctx: BotContext, fill: Fill, message: str) -> None:
        """Tell the strategy, keep the fill for the status page, notify."""
        self.strategy.on_fill(fill)
        self.recent_fills.append(fill)
        await notify(ctx, message, event="fill", subject=fill.symbol, details=asdict(fill))

    async def _latest_candle(self, ctx: BotContext, symbol: str) -> pd.Series | None:
        series = ctx.df_cache.get(self._analysis_timeframe) or {}
        frame = series.get(symbol)
        if frame is None or frame.empty:  # evicted under pressure: ask the market again
            frame = await self.market.fetch_ohlcv(symbol, self._analysis_timeframe, limit=1)
        return None if frame.empty else frame.iloc[-1]

    async def monitor(self, ctx: BotContext) -> None:
        """The strategy's on_cycle_end, the status line, then the market clock moves on by one candle."""
        self.strategy.on_cycle_end()
        self.cycle += 1
        manager = self.memory
        reading = manager.last_reading if manager is not None else None
        status = CycleStatus(
            cycle=self.cycle,
            equity=self._equity(ctx),
            open_positions=len(self.broker.positions),
            trades=self.broker.trades_count,
            rss_bytes=reading.rss_bytes if reading is not None else None,
            cache_bytes=manager.cache_bytes if manager is not None else 0,
            pressure_level=manager.policy.level.name if manager is not None else "unmanaged",
            fetches=self._fetches,
            stale_series=len(self._stale),
            stale_seconds=max((update.age_ms or 0 for update in self._stale.values()), default=0) / 1000,
            ended_at_seconds=time.time(),
        )
        self._fetches = 0
        self.last_status = status
        if self.on_status is not None:
            self.on_status(status)
        await self._watch_exchange(ctx)
        self.market.advance()
        self.journal.record_market_clock(self.market.now_ms)

    async def _watch_exchange(self, ctx: BotContext) -> None:
        """Count this cycle's failed requests; notify when the market source pauses (an outage) and resumes."""
        stats = self.market.stats()
        errors = sum(stats.get("errors", {}).values())
        self.market_errors_last_cycle, self._market_errors = errors - self._market_errors, errors
        down = (stats.get("pause_reason") or "requests paused after failures") if stats.get("paused") else None
        if down is not None and self.exchange_down is None:
            logger.warning("exchange outage: %s", down)
            await notify(ctx, f"exchange outage: {down}", event="exchange", subject="outage", details=stats)
        elif down is None and self.exchange_down is not None:
            logger.info("exchange recovered after: %s", self.exchange_down)
            await notify(ctx, f"exchange recovered after: {self.exchange_down}", event="exchange", subject="recovery")
        self.exchange_down = down

    def marks(self) -> dict[str, float]:
        """The latest close of each open position's symbol on the analysis timeframe (its entry price without one)."""
        series = self.ctx.df_cache.get(self._analysis_timeframe) or {}
        prices = {}
        for position in self.broker.positions.values():
            frame = series.get(position.symbol)
            prices[position.symbol] = float(frame["close"].iloc[-1]) if frame is not None and len(frame) else position.entry_price
        return prices

    def _equity(self, ctx: BotContext) -> float:
        return self.broker.equity(self.marks())

    def trading_status(self) -> dict[str, Any]:
        """Equity, cash, open positions with unrealised PnL at the latest close, closed trades, recent fills and
        the market source's requests and errors: the trading part of /api/status (JSON types)."""
        marks = self.marks()
        positions = []
        for position in self.broker.positions.values():
            mark = marks[position.symbol]
            direction = 1 if position.side == "long" else -1
            positions.append(
                {
                    "symbol": position.symbol,
                    "side": position.side,
                    "quantity": position.quantity,
                    "entry_price": position.entry_price,
                    "mark_price": mark,
                    "stop_price": position.stop_price,
                    "take_profit_price": position.take_profit_price,
                    "unrealised_pnl": direction * (mark - position.entry_price) * position.quantity,
                    "opened_at_ms": position.opened_at_ms,
                }
            )
        market = self.market.stats()
        return {
            "cycle": self.cycle,
            "equity": self.broker.equity(marks),
            "cash": self.broker.cash,
            "realized_pnl": self.broker.realized_pnl,
            "closed_trades": self.broker.trades_count,
            "open_positions": positions,
            "recent_fills": [asdict(fill) for fill in reversed(self.recent_fills)],
            "strategy_enabled": self.strategy.enabled,
            "market": {
                "source": self.settings.market.source,
                "rest_calls_last_cycle": market.get("rest_calls_last_cycle", 0),
                "rest_calls": market.get("rest_calls", 0),
                "errors_last_cycle": self.market_errors_last_cycle,
                "errors": market.get("errors", {}),
                "exchange_down": self.exchange_down,
                "stale_series": len(self._stale),
            },
        }

    # ----------------------------------------------------------- running

    async def run_cycle(self) -> dict[str, float]:
        return await self.runner.run(self.ctx)

    def request_stop(self) -> None:
        """Finish the current phase, then stop (signal handlers call this)."""
        self.runner.request_stop()

    @property
    def last_cycle_healthy(self) -> bool:
        """Whether every phase of the latest cycle ended without an error (what feeds systemd's watchdog)."""
        return all(report.error is None for report in self.runner.last_report)

    @property
    def stopping(self) -> bool:
        return self.runner.stop_requested

    async def close(self) -> None:
        """Close the strategy plugin and the exchange, flush and close the journal; idempotent."""
        await self.runner.drain()
        self.strategy.close()
        await self.market.close()
        self.journal.close()
        if self._own_notifier:
            self.notifier.close()

    def summary(self) -> dict[str, Any]:
        """Final figures: this run's cycles, trades and PnL apart from the journal's all-time ones, equity and the
        memory report (`cycles` counts a recycled bot's predecessors too)."""
        trades_at_start, pnl_at_start = self._totals_at_start
        return {
            "cycles": self.cycle,
            "run": {
                "cycles": self.cycle - self.first_cycle,
                "trades": self.broker.trades_count - trades_at_start,
                "realized_pnl": round(self.broker.realized_pnl - pnl_at_start, 2),
            },
            "trades": self.broker.trades_count,
            "realized_pnl": round(self.broker.realized_pnl, 2),
            "starting_balance": self.settings.paper.starting_balance,
            "equity": round(self._equity(self.ctx), 2),
            "open_positions": len(self.broker.positions),
            "market": {
                **self.market.stats(),
                "stale_series": {
                    f"{symbol} {timeframe}": (update.age_ms or 0) / 1000 for (symbol, timeframe), update in self._stale.items()
                },
            },
            "memory": self.ctx.get_memory_stats() if self.memory is not None else {"managed": False},
        }
