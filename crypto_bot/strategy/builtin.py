"""BuiltinStrategy: the bot's own strategy (indicators, regime, the ML signal model) as a strategy plugin.

Covers: the default `strategy.plugin` (`crypto_bot.strategy.builtin:BuiltinStrategy`). It takes no
params: its keys are the `strategy.*` settings (EMA spans, the model's path, horizon and training
history), read in `on_start` from the runtime, where the model is also loaded, or trained on
simulated history at first start, and registered with the memory manager's ModelRegistry under
`MODEL_NAME` with a loader, so the registry unloads it when idle or under pressure and reloads it
on the next use. Each symbol's regime, on the slowest timeframe, is kept in the bot's regime cache
and recomputed only when that timeframe closes a candle.
Not covered: the indicator, regime and model functions (`indicators`, `regime`, `signal_model`), the
scoring rule (`signals.builtin_score`), the plugin interface and host (`plugin`, `plugin_host`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The analysis stack (pandas, numpy) is reached through the lazy packages `market` and `strategy`, loaded at
# the first call that needs it: `config check` builds this class without starting it and stays pandas-free.
from crypto_bot import market, strategy
from crypto_bot.strategy.plugin import StrategyRuntime
from crypto_bot.strategy.warmup import analysis_candles, required_candles
from crypto_bot.working_set import RegimeResult

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

MODEL_NAME = "signal_model"


class ModelFileError(OSError):
    """The signal model's file cannot be written; names the path and the key that sets it."""


class BuiltinStrategy:
    """Indicators on the smallest timeframe, the regime on the largest, the model's P(up): a score in [-1, 1]."""

    def __init__(self) -> None:
        self._runtime: StrategyRuntime | None = None
        self._model: Any = None  # held here only when the bot runs unmanaged
        self._warned_budget = False

    async def on_start(self, runtime: StrategyRuntime) -> None:
        """Read the strategy settings; load the signal model, or train it at first start; register it."""
        settings = runtime.settings.strategy
        self._spans = {"fast": settings.ema_fast, "slow": settings.ema_slow}
        self._min_candles = required_candles(**self._spans)
        self._window = analysis_candles(**self._spans)
        self._analysis_timeframe = runtime.settings.timeframes[0]
        self._regime_timeframe = runtime.settings.timeframes[-1]
        self._regimes: MutableMapping[str, Any] = runtime.regimes
        path = settings.model_path
        model = await self._load_or_train(runtime)
        if runtime.memory is not None:
            runtime.memory.models.register(MODEL_NAME, model, loader=lambda: strategy.load_model(path))
        else:
            self._model = model
        self._runtime = runtime

    def signal(self, symbol: str, candles: Mapping[str, pd.DataFrame]) -> float | None:
        if self._runtime is None:
            raise RuntimeError("BuiltinStrategy.signal was called before on_start")
        known = self._regime(symbol, candles.get(self._regime_timeframe))
        frame = candles.get(self._analysis_timeframe)
        if frame is None or len(frame) < self._min_candles:
            return None
        snapshot, features = strategy.analyse_latest(frame.iloc[-self._window :], **self._spans)
        regime = known.regime if known is not None else strategy.classify_regime(snapshot)
        with self._model_in_use() as model:
            up_probability = float(strategy.up_probabilities(model, features)[0])
        return strategy.builtin_score(snapshot, regime, up_probability)

    def _regime(self, symbol: str, frame: pd.DataFrame | None) -> RegimeResult | None:
        """The symbol's regime as of the regime timeframe's latest candle (a new one is classified and kept)."""
        known = self._regimes.get(symbol)
        if frame is None or len(frame) < self._min_candles:
            return known
        as_of = frame.index[-1]
        if known is None or known.as_of != as_of:  # a regime changes only with a new candle
            snapshot = strategy.compute_indicators(frame.iloc[-self._window :], **self._spans)
            known = RegimeResult(strategy.classify_regime(snapshot), as_of)
            try:
                self._regimes[symbol] = known
            except ValueError as error:  # larger than the whole cache budget: used this cycle, not kept
                log = logger.debug if self._warned_budget else logger.warning
                self._warned_budget = True
                log("%s: used this cycle, not cached (cache_size_limit_mb is smaller than one entry)", error)
        return known

    def _model_in_use(self) -> AbstractContextManager[Any]:
        runtime = self._runtime
        if runtime is not None and runtime.memory is not None:
            return runtime.memory.models.use(MODEL_NAME)
        return nullcontext(self._model)

    async def _load_or_train(self, runtime: StrategyRuntime) -> Any:
        settings = runtime.settings.strategy
        path = settings.model_path
        if Path(path).exists():
            try:
                return strategy.load_model(path)
            except strategy.ModelLoadError as error:
                logger.warning("%s; retraining", error)
        logger.info("training the signal model on simulated history (first start)")
        frames = await self._training_frames(runtime)
        import asyncio  # here with the rest of the analysis stack: `config check` builds this class and stays light

        model = await asyncio.to_thread(strategy.train_signal_model, frames, horizon=settings.model_horizon)
        try:
            strategy.save_model(model, path)
        except OSError as error:
            raise ModelFileError(
                f"cannot write the signal model to {path}: {error.strerror or error}; make its directory "
                "writable or set strategy.model_path"
            ) from error
        return model

    async def _training_frames(self, runtime: StrategyRuntime) -> list[pd.DataFrame]:
        """Simulated history for training: never from the network, never from the live source."""
        settings = runtime.settings.strategy
        candles = settings.model_training_candles
        simulated = market.SimulatedMarket(
            market.generated_symbols(settings.model_training_symbols, quote="TRAIN"),
            timeframes=[self._analysis_timeframe],
            base_timeframe=self._analysis_timeframe,
            seed=runtime.settings.market.seed + 1,
            history_candles=candles,
        )
        return [
            await simulated.fetch_ohlcv(symbol, self._analysis_timeframe, limit=candles)
            for symbol in simulated.universe()
        ]

