"""PluginHost on its own: which returns are scores, the copies a plugin gets, counting failures, the hooks."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest

from crypto_bot.market.source import ohlcv_frame
from crypto_bot.strategy import PluginHost
from crypto_bot.strategy.plugin_host import COPY_ON_WRITE


class Fixed:
    """Returns `value` from every signal; records the candles and the hook calls."""

    def __init__(self, value: Any = 0.5) -> None:
        self.value = value
        self.candles: list[dict[str, pd.DataFrame]] = []
        self.closed = 0

    def signal(self, symbol: str, candles: dict[str, pd.DataFrame]) -> Any:
        self.candles.append(candles)
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value

    def on_cycle_end(self) -> None:
        raise KeyError("cycle state")

    def close(self) -> None:
        self.closed += 1


def frame(candles: int = 50) -> pd.DataFrame:
    return ohlcv_frame(np.arange(candles, dtype=np.int64) * 60_000, np.ones((candles, 5)))


def host(plugin: Any, max_failures: int = 10) -> PluginHost:
    return PluginHost("my.py:Fixed", plugin, max_failures=max_failures)


@pytest.mark.parametrize(
    ("value", "score"),
    [(0.5, 0.5), (-1, -1.0), (1, 1.0), (0, 0.0), (None, None), (np.float64(-0.25), -0.25), (np.float32(0.5), 0.5),
     (np.int64(1), 1.0), (Fraction(1, 4), 0.25)],
)
def test_real_numbers_in_minus_one_to_one_and_none_are_scores(value: Any, score: float | None) -> None:
    plugin_host = host(Fixed(value))
    result = plugin_host.signal("BTC/USDT", {"1m": frame()})
    assert result == score and (result is None or type(result) is float) and plugin_host.failures_in_a_row == 0


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), 1.0000001, -2, True, np.bool_(True), "0.5", Decimal("0.5"), np.array(0.5),
     np.array([0.5]), pd.Series([0.5]), [0.5], object()],
)
def test_anything_else_is_a_failure_reported_with_the_plugin_the_symbol_and_what_came_back(
    value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    plugin_host = host(Fixed(value))
    with caplog.at_level(logging.WARNING):
        assert plugin_host.signal("ETH/USDT", {"1m": frame()}) is None
    assert plugin_host.failures_in_a_row == 1
    [message] = [record.getMessage() for record in caplog.records]
    assert message.startswith("strategy plugin my.py:Fixed failed on ETH/USDT: signal returned ")
    assert "not a finite number in [-1, 1] or None (1 of 10 failures in a row before it is disabled)" in message
    assert "\n" not in message and len(message) < 400


def test_an_exception_is_reported_with_where_it_was_raised(caplog: pytest.LogCaptureFixture) -> None:
    plugin_host = host(Fixed(ZeroDivisionError("division by zero")))
    with caplog.at_level(logging.WARNING):
        plugin_host.signal("SOL/USDT", {"1m": frame()})
    assert f"signal raised ZeroDivisionError: division by zero at {__file__}:" in caplog.text


@pytest.mark.skipif(not COPY_ON_WRITE, reason="shallow copies are safe only with pandas' copy-on-write")
def test_the_plugin_gets_shallow_copies_that_share_the_cached_buffers() -> None:
    plugin = Fixed()
    cached = frame()
    host(plugin).signal("BTC/USDT", {"1m": cached})
    given = plugin.candles[0]["1m"]
    assert given is not cached and given.equals(cached)
    assert np.shares_memory(given["close"].to_numpy(), cached["close"].to_numpy())
    given.loc[given.index[0], "close"] = -5.0
    assert cached["close"].iloc[0] == 1.0


def test_the_candles_mapping_is_the_plugins_own() -> None:
    plugin = Fixed()
    candles = {"1m": frame()}
    host(plugin).signal("BTC/USDT", candles)
    plugin.candles[0].clear()
    assert list(candles) == ["1m"]


def test_max_failures_in_a_row_disable_and_close_the_plugin(caplog: pytest.LogCaptureFixture) -> None:
    plugin = Fixed(RuntimeError("broken"))
    plugin_host = host(plugin, max_failures=2)
    with caplog.at_level(logging.WARNING):
        plugin_host.signal("BTC/USDT", {"1m": frame()})
        assert plugin_host.enabled
        plugin_host.signal("ETH/USDT", {"1m": frame()})
    assert not plugin_host.enabled and plugin.closed == 1
    assert plugin_host.signal("SOL/USDT", {"1m": frame()}) is None and len(plugin.candles) == 2
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert error.startswith("strategy plugin my.py:Fixed failed 2 times in a row (last on ETH/USDT: signal raised ")


def test_a_hook_that_raises_counts_and_is_reported_without_a_symbol(caplog: pytest.LogCaptureFixture) -> None:
    plugin_host = host(Fixed())
    with caplog.at_level(logging.WARNING):
        plugin_host.on_cycle_end()
    assert plugin_host.failures_in_a_row == 1
    assert "strategy plugin my.py:Fixed failed: on_cycle_end raised KeyError: 'cycle state' at " in caplog.text


def test_missing_hooks_are_skipped() -> None:
    class SignalOnly:
        def signal(self, symbol: str, candles: Any) -> float:
            return 0.0

    plugin_host = host(SignalOnly())
    plugin_host.on_fill(object())
    plugin_host.on_cycle_end()
    asyncio.run(plugin_host.start(object()))  # type: ignore[arg-type]
    plugin_host.close()
    assert plugin_host.failures_in_a_row == 0


def test_an_os_error_in_on_start_is_the_environments_and_propagates() -> None:
    class NeedsAFile:
        async def on_start(self, runtime: Any) -> None:
            raise PermissionError(13, "Permission denied", "/models/m.npz")

        def signal(self, symbol: str, candles: Any) -> float:
            return 0.0

    with pytest.raises(PermissionError):
        asyncio.run(host(NeedsAFile()).start(object()))  # type: ignore[arg-type]


def test_close_is_idempotent() -> None:
    plugin = Fixed()
    plugin_host = host(plugin)
    plugin_host.close()
    plugin_host.close()
    assert plugin.closed == 1 and not plugin_host.enabled
