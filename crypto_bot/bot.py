"""TradingBot: the phase-based paper-trading cycle over a BotContext.

One cycle: fetch_candidates -> update_caches -> analyse_batch -> execute_signals -> handle_exits
-> monitor. OHLCV windows live in `df_cache` (`{timeframe: {symbol: frame}}`), regimes in
`regime_cache`, the signal model in the memory manager's ModelRegistry (loaded from disk on demand,
unloaded when idle or under pressure). Positions live in the paper broker and its SQLite
journal, outside every cache.

`TradingBot` is the composition root: it builds each component from its own section of the
settings (market, strategy, risk, paper, storage) and takes the `MemoryManager` (built from
`settings.memory` when not given), so one memory policy acts on the bot's caches and model.
`manage_memory=False` runs the same workload the way bots commonly do without us: plain dicts
never trimmed and a model held forever. The soak command compares the two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crypto_bot.execution import PaperBroker, RiskManager, TradeJournal
from crypto_bot.market import (
    CcxtMarket,
    CsvFileError,
    CsvMarket,
    MarketDataSource,
    SimulatedMarket,
    generated_symbols,
    timeframe_ms,
)
from crypto_bot.market.simulated import DEFAULT_HISTORY_CANDLES
from crypto_bot.memory import MemoryManager
from crypto_bot.memory.units import MIB as _MIB
from crypto_bot.phase_runner import BotContext, PhaseRunner, notify
from crypto_bot.settings import Settings
from crypto_bot.strategy import (
    ModelLoadError,
    analyse_latest,
    classify_regime,
    compute_indicators,
    load_model,
    required_candles,
    save_model,
    score_signal,
    train_signal_model,
    up_probabilities,
)
from crypto_bot.working_set import RegimeResult

logger = logging.getLogger(__name__)

MODEL_NAME = "signal_model"
ANALYSIS_CANDLES = 300  # indicators and the model look at this many recent candles (more if the EMA spans need them)


def build_market(settings: Settings) -> MarketDataSource:
    """The market data source the settings name (the simulated market by default).

    The simulated market starts with enough history to fill a whole window of the largest timeframe;
    a CSV replay keeps only the window of each file.
    """
    market = settings.market
    if market.source == "csv":  # each file costs the bot's window, whatever its size
        return CsvMarket(
            market.csv_directory,  # type: ignore[arg-type]
            timeframes=settings.timeframes,
            window_candles=settings.strategy.history_candles,
        )
    if market.source == "ccxt":
        return CcxtMarket(market.exchange, symbols=settings.symbols, timeframes=settings.timeframes)
    window = max(DEFAULT_HISTORY_CANDLES, settings.strategy.history_candles)
    history_candles = window * timeframe_ms(settings.timeframes[-1]) // timeframe_ms("1m")
    return SimulatedMarket(
        settings.symbols, timeframes=settings.timeframes, seed=market.seed, history_candles=history_candles
    )


class ModelFileError(OSError):
    """The signal model's file cannot be written; names the path and the key that sets it."""


class LogNotifier:
    """Notifications to the debug log: the broker and the runner already log fills and alerts.

    A Telegram or Slack notifier would have the same `notify(message)`.
    """

    def notify(self, message: str) -> None:
        logger.debug("notify: %s", message)


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

    def line(self) -> str:
        rss = "n/a" if self.rss_bytes is None else f"{self.rss_bytes / _MIB:.0f} MiB"
        return (
            f"cycle {self.cycle:>5} | equity {self.equity:>11.2f} | open {self.open_positions} | "
            f"trades {self.trades} | rss {rss} | caches {self.cache_bytes / _MIB:.1f} MiB | {self.pressure_level}"
        )


class TradingBot:
    """Builds the components and phases from settings and runs cycles (the composition root).

    `memory` is the one MemoryManager of the bot's caches and model (default: one built from
    `settings.memory`, with no thread: the runner schedules maintenance). Whoever starts its
    maintenance thread stops it. `manage_memory=False` takes no manager at all.
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
    ) -> None:
        if memory is not None and not manage_memory:
            raise ValueError("memory was given with manage_memory=False; an unmanaged bot takes no manager")
        self.settings = settings
        self.memory = (memory if memory is not None else MemoryManager(settings.memory)) if manage_memory else None
        self.market = market if market is not None else build_market(settings)
        self.journal = TradeJournal(settings.storage.journal_path)
        try:
            self.broker = PaperBroker(self.journal, settings.paper, clock_ms=lambda: self.market.now_ms)
        except BaseException:
            self.journal.close()  # release the writer lock now, not when the bot is collected
            raise
        self.risk = RiskManager(settings.risk)
        self.manage_memory = manage_memory
        self.on_status = on_status
        self.ctx = BotContext(
            positions=self.broker.positions,  # type: ignore[arg-type]
            df_cache={},
            regime_cache={},
            config=dict(settings.raw),
            exchange=self.market,
            risk_manager=self.risk,
            notifier=notifier if notifier is not None else LogNotifier(),
            paper_wallet=self.broker,
            memory_manager=self.memory,
            manage_memory=manage_memory,
        )
        self.ctx.balance = self.broker.cash
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
            stop_on=(CsvFileError,),  # a replay with a broken file is not a cycle to skip: the run ends naming it
            monitor_memory=manage_memory,
        )
        self.cycle = 0
        self.peak_equity = self.broker.cash
        self.last_status: CycleStatus | None = None
        self._cursor = 0
        self._discovered = 0
        self._model: Any = None  # only held here in unmanaged mode
        self._warned_budget = False
        strategy = settings.strategy
        self._min_candles = required_candles(fast=strategy.ema_fast, slow=strategy.ema_slow)
        self._analysis_candles = max(ANALYSIS_CANDLES, self._min_candles)
        self._analysis_timeframe = settings.timeframes[0]
        self._regime_timeframe = settings.timeframes[-1]

    # ------------------------------------------------------------ set-up

    async def prepare_model(self) -> None:
        """Load the signal model, or train it on simulated history at first start; register it with a loader."""
        path = self.settings.strategy.model_path
        model = None
        if Path(path).exists():
            try:
                model = load_model(path)
            except ModelLoadError as error:
                logger.warning("%s; retraining", error)
        if model is None:
            logger.info("training the signal model on simulated history (first start)")
            frames = await self._training_frames()
            horizon = self.settings.strategy.model_horizon
            model = await asyncio.to_thread(train_signal_model, frames, horizon=horizon)
            try:
                save_model(model, path)
            except OSError as error:
                raise ModelFileError(
                    f"cannot write the signal model to {path}: {error.strerror or error}; make its directory "
                    "writable or set strategy.model_path"
                ) from error
        if self.memory is not None:
            self.memory.models.register(MODEL_NAME, model, loader=lambda: load_model(path))
        else:
            self._model = model

    async def _training_frames(self) -> list[pd.DataFrame]:
        """Simulated history for training: never from the network, never from the live source."""
        strategy = self.settings.strategy
        candles = strategy.model_training_candles
        simulated = SimulatedMarket(
            generated_symbols(strategy.model_training_symbols, quote="TRAIN"),
            timeframes=[self._analysis_timeframe],
            base_timeframe=self._analysis_timeframe,
            seed=self.settings.market.seed + 1,
            history_candles=candles,
        )
        return [
            await simulated.fetch_ohlcv(symbol, self._analysis_timeframe, limit=candles)
            for symbol in simulated.universe()
        ]

    # ------------------------------------------------------------ phases

    async def fetch_candidates(self, ctx: BotContext) -> None:
        """Choose this cycle's symbols: newly listed pairs, a rotating slice of the universe, open positions."""
        discovered = self._discover_symbols()
        universe = self.market.universe()
        size = min(self.settings.strategy.batch_size, len(universe))
        rotation = [universe[(self._cursor + i) % len(universe)] for i in range(size)]
        self._cursor = (self._cursor + size) % max(len(universe), 1)
        held = sorted({p.symbol for p in self.broker.positions.values()})
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
        """Append new candles to each series (bounded window) and refresh the regime of each symbol."""
        jobs = [(symbol, tf) for symbol in ctx.current_batch for tf in self.settings.timeframes]
        frames = await asyncio.gather(*(self._refresh_series(ctx, symbol, tf) for symbol, tf in jobs))
        for (symbol, timeframe), frame in zip(jobs, frames):
            if timeframe != self._regime_timeframe or frame is None or len(frame) < self._min_candles:
                continue
            as_of = frame.index[-1]
            known = ctx.regime_cache.get(symbol)
            if known is None or known.as_of != as_of:  # a regime changes only with a new candle
                snapshot = compute_indicators(frame.iloc[-self._analysis_candles :], **self._spans())
                self._keep(ctx.regime_cache, symbol, RegimeResult(classify_regime(snapshot), as_of))

    async def _refresh_series(self, ctx: BotContext, symbol: str, timeframe: str) -> pd.DataFrame | None:
        window = self.settings.strategy.history_candles
        series = ctx.df_cache.get(timeframe)
        if series is None:
            ctx.df_cache[timeframe] = {}
            series = ctx.df_cache[timeframe]
        cached = series.get(symbol)
        since_ms = None if cached is None or cached.empty else int(cached.index[-1].timestamp() * 1000)
        limit = window if since_ms is None else self.settings.strategy.fetch_limit
        try:
            fresh = await self.market.fetch_ohlcv(symbol, timeframe, since_ms=since_ms, limit=limit)
        except CsvFileError:
            raise
        except (KeyError, ValueError) as error:
            logger.warning("no %s candles for %s: %s", timeframe, symbol, error)
            return cached
        if cached is not None and not cached.empty:
            if fresh.empty or fresh.index[-1] <= cached.index[-1]:
                return cached  # no candle closed since the last fetch
            fresh = pd.concat([cached, fresh])
            fresh = fresh[~fresh.index.duplicated(keep="last")]
        frame = fresh.iloc[-window:].copy()  # a copy, so the window does not pin the concatenated buffer
        self._keep(series, symbol, frame)
        return frame

    def _keep(self, cache: MutableMapping[Any, Any], key: Any, value: Any) -> None:
        """Cache `value`; one larger than the whole cache budget is used this cycle and not kept."""
        try:
            cache[key] = value
        except ValueError as error:
            log = logger.debug if self._warned_budget else logger.warning
            self._warned_budget = True
            log("%s: used this cycle, not cached (cache_size_limit_mb is smaller than one entry)", error)

    def _spans(self) -> dict[str, int]:
        return {"fast": self.settings.strategy.ema_fast, "slow": self.settings.strategy.ema_slow}

    async def analyse_batch(self, ctx: BotContext) -> None:
        """Indicators, regime and the model's probability produce scored signals, best first."""
        series = ctx.df_cache.get(self._analysis_timeframe) or {}
        analysed = []
        for symbol in ctx.current_batch:
            frame = series.get(symbol)
            if frame is not None and len(frame) >= self._min_candles:
                snapshot, features = analyse_latest(frame.iloc[-self._analysis_candles :], **self._spans())
                analysed.append((symbol, snapshot, features))
        signals = []
        if analysed:
            with self._model_in_use() as model:
                probabilities = up_probabilities(model, np.vstack([features for *_, features in analysed]))
            for (symbol, snapshot, _), probability in zip(analysed, probabilities):
                known = ctx.regime_cache.get(symbol)
                regime = known.regime if known is not None else classify_regime(snapshot)
                signal = score_signal(
                    symbol, snapshot, regime, float(probability), min_score=self.settings.strategy.min_score
                )
                if signal is not None:
                    signals.append(signal)
        ctx.analysis_results = sorted(signals, key=lambda s: s.score, reverse=True)

    def _model_in_use(self):
        if self.memory is not None:
            return self.memory.models.use(MODEL_NAME)
        return nullcontext(self._model)

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
            await notify(ctx, f"opened {position.side} {position.symbol} {position.quantity:.6g} @ {position.entry_price:.6g}")
        ctx.balance = self.broker.cash

    async def handle_exits(self, ctx: BotContext) -> None:
        """Stop loss, take profit and trailing stop on the latest candle; only triggered positions close."""
        for symbol in sorted({p.symbol for p in self.broker.positions.values()}):
            try:
                candle = await self._latest_candle(ctx, symbol)
            except CsvFileError:
                raise
            except (KeyError, ValueError) as error:  # one symbol's missing data must not block the others' exits
                logger.warning("no %s candle for %s; its exits wait a cycle: %s", self._analysis_timeframe, symbol, error)
                continue
            if candle is None:
                continue
            at_ms = int(candle.name.timestamp() * 1000)
            for trade in self.broker.process_candle(symbol, candle["high"], candle["low"], candle["close"], at_ms):
                await notify(ctx, f"closed {trade.symbol} ({trade.exit_reason}): pnl {trade.pnl:.2f}")
        ctx.balance = self.broker.cash

    async def _latest_candle(self, ctx: BotContext, symbol: str) -> pd.Series | None:
        series = ctx.df_cache.get(self._analysis_timeframe) or {}
        frame = series.get(symbol)
        if frame is None or frame.empty:  # evicted under pressure: ask the market again
            frame = await self.market.fetch_ohlcv(symbol, self._analysis_timeframe, limit=1)
        return None if frame.empty else frame.iloc[-1]

    async def monitor(self, ctx: BotContext) -> None:
        """Status line, then the market clock moves on by one candle."""
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
        )
        self.last_status = status
        if self.on_status is not None:
            self.on_status(status)
        self.market.advance()

    def _equity(self, ctx: BotContext) -> float:
        series = ctx.df_cache.get(self._analysis_timeframe) or {}
        prices = {}
        for position in self.broker.positions.values():
            frame = series.get(position.symbol)
            prices[position.symbol] = float(frame["close"].iloc[-1]) if frame is not None and len(frame) else position.entry_price
        return self.broker.equity(prices)

    # ----------------------------------------------------------- running

    async def run_cycle(self) -> dict[str, float]:
        return await self.runner.run(self.ctx)

    def request_stop(self) -> None:
        """Finish the current phase, then stop (signal handlers call this)."""
        self.runner.request_stop()

    @property
    def stopping(self) -> bool:
        return self.runner.stop_requested

    async def close(self) -> None:
        """Close the exchange, flush and close the journal; idempotent."""
        await self.runner.drain()
        await self.market.close()
        self.journal.close()

    def summary(self) -> dict[str, Any]:
        """Final figures: trades, PnL, equity and the memory report."""
        return {
            "cycles": self.cycle,
            "trades": self.broker.trades_count,
            "realized_pnl": round(self.broker.realized_pnl, 2),
            "equity": round(self._equity(self.ctx), 2),
            "open_positions": len(self.broker.positions),
            "memory": self.ctx.get_memory_stats() if self.memory is not None else {"managed": False},
        }
