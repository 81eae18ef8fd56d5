"""Strategy plugins in the real bot: loading (by path from the config's folder, by module path), params, what
config check refuses, the candles a plugin sees, each failure reported with the plugin and the symbol while the
loop goes on, disabling after strategy.plugin_max_failures in a row with exits still managed, and the hooks."""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from crypto_bot.cli import EXIT_OK, EXIT_USAGE, main
from crypto_bot.execution import Fill
from crypto_bot.market import timeframe_ms
from crypto_bot.market.source import OHLCV_COLUMNS
from crypto_bot.settings import BUILTIN_PLUGIN, Settings, load_settings
from crypto_bot.strategy.builtin import BuiltinStrategy
from tests.bot.conftest import REPO_ROOT, SUBPROCESS_TIMEOUT_SECONDS, crypto_bot
from tests.bot.support import Session

PLUGINS = '''
import numpy as np


class Recorder:
    """Always the same score; records what the bot hands it."""

    def __init__(self, score=1.0):
        self.score = score
        self.calls = []
        self.fills = []
        self.cycle_ends = 0
        self.runtime = None
        self.closed = 0

    def on_start(self, runtime):
        self.runtime = runtime

    def signal(self, symbol, candles):
        self.calls.append((symbol, candles))
        return self.score

    def on_fill(self, fill):
        self.fills.append(fill)

    def on_cycle_end(self):
        self.cycle_ends += 1

    def close(self):
        self.closed += 1


class NoParams:
    def signal(self, symbol, candles):
        return None


RETURNS = {"nan": float("nan"), "too large": 1.5, "a string": "buy", "a bool": True, "an array": np.array([0.5])}


class Returns:
    """Returns RETURNS[kind], or raises when kind is "raise"."""

    def __init__(self, kind):
        self.kind = kind
        self.calls = 0

    def signal(self, symbol, candles):
        self.calls += 1
        if self.kind == "raise":
            raise ZeroDivisionError("no candles to divide")
        return RETURNS[self.kind]


class NumpyScore:
    def signal(self, symbol, candles):
        return np.float32(0.9)


class OpensThenRaises:
    """Longs everything in its first cycle, then fails every call."""

    def __init__(self):
        self.cycles = 0
        self.calls_after = 0

    def signal(self, symbol, candles):
        if self.cycles == 0:
            return 1.0
        self.calls_after += 1
        raise RuntimeError("broken after the first cycle")

    def on_cycle_end(self):
        self.cycles += 1


class FailsEveryOtherCall:
    def __init__(self):
        self.calls = 0

    def signal(self, symbol, candles):
        self.calls += 1
        if self.calls % 2:
            raise ValueError("odd call")
        return None


class Mutates:
    """Writes to everything it is given, every way pandas and numpy allow."""

    def __init__(self):
        self.numpy_writes_refused = 0

    def signal(self, symbol, candles):
        for frame in candles.values():
            try:
                frame["close"].to_numpy()[:] = 0.0
            except ValueError:
                self.numpy_writes_refused += 1
            frame.iloc[:, :] = -1.0
            frame["extra"] = 1.0
            del frame["volume"]
            frame.index.name = "renamed"
        candles.clear()
        return None


class StartFails:
    def on_start(self, runtime):
        raise RuntimeError("no model for you")

    def signal(self, symbol, candles):
        return 1.0
'''


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "strategies" / "plugins.py"
    path.parent.mkdir()
    path.write_text(PLUGINS, encoding="utf-8")
    return path


@pytest.fixture
def plugin_settings(tmp_path: Path, config_dict: Callable[..., dict[str, Any]]) -> Callable[..., Settings]:
    """`plugin_settings("Recorder", {"score": 0.5}, max_failures=3)`: the small config with that class of PLUGINS,
    written next to a strategies/ folder and loaded as `config check` and `run` load it."""

    def build(class_name: str, params: dict[str, Any] | None = None, *, max_failures: int = 10) -> Settings:
        strategy = {"plugin": f"strategies/plugins.py:{class_name}", "plugin_max_failures": max_failures}
        if params is not None:
            strategy["params"] = params
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config_dict(strategy=strategy)), encoding="utf-8")
        return load_settings(path)

    return build


def cycles(session: Session, count: int) -> None:
    """Run `count` cycles; none may end a phase with an error."""
    for _ in range(count):
        session.cycle()
        assert [report.error for report in session.bot.runner.last_report] == [None] * 6


# ------------------------------------------------------------------------ loading


def test_the_built_in_strategy_is_the_default_plugin(start: Callable[..., Session], bot_settings: Settings) -> None:
    assert bot_settings.strategy.plugin == BUILTIN_PLUGIN
    assert isinstance(start(bot_settings).bot.strategy.plugin, BuiltinStrategy)


def test_a_plugin_file_is_found_from_the_config_files_folder_wherever_the_bot_runs(
    tmp_path: Path,
    plugin_file: Path,
    config_dict: Callable[..., dict[str, Any]],
    start: Callable[..., Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_dict(strategy={"plugin": "strategies/plugins.py:Recorder"})), "utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["config", "check", str(config)]) == EXIT_OK
    session = start(load_settings(config))
    cycles(session, 1)
    assert type(session.bot.strategy.plugin).__name__ == "Recorder" and session.bot.strategy.plugin.calls


def test_a_plugin_is_imported_once_under_its_real_path(plugin_file: Path, plugin_settings: Callable[..., Settings]) -> None:
    from crypto_bot.strategy import load_plugin_class
    from crypto_bot.strategy.plugin import PluginSpec

    first = load_plugin_class(PluginSpec.parse(str(plugin_file) + ":Recorder", Path("/")))
    second = load_plugin_class(PluginSpec.parse("strategies/plugins.py:Recorder", plugin_file.parents[1]))
    assert first is second
    assert Path(__import__("sys").modules[first.__module__].__file__) == plugin_file.resolve()


def test_a_plugin_can_be_named_by_module_path(
    tmp_path: Path,
    config_dict: Callable[..., dict[str, Any]],
    start: Callable[..., Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    package = f"user_strategies_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("", "utf-8")
    (tmp_path / package / "trend.py").write_text(PLUGINS, "utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "config.yaml"
    strategy = {"plugin": f"{package}.trend:Recorder", "params": {"score": -0.4}}
    config.write_text(yaml.safe_dump(config_dict(strategy=strategy)), "utf-8")
    session = start(load_settings(config))
    cycles(session, 1)
    plugin = session.bot.strategy.plugin
    assert type(plugin).__module__ == f"{package}.trend" and plugin.score == -0.4 and plugin.calls


def test_params_are_the_keyword_arguments_of_the_class(
    plugin_file: Path, plugin_settings: Callable[..., Settings], start: Callable[..., Session]
) -> None:
    session = start(plugin_settings("Recorder", {"score": 0.3}))
    cycles(session, 1)
    assert session.bot.strategy.plugin.score == 0.3
    results = session.bot.ctx.analysis_results
    assert results and [signal.score for signal in results] == [pytest.approx(0.65)] * len(results)  # (1 + 0.3) / 2


def test_a_class_without_params_is_built_with_no_arguments(
    plugin_file: Path, plugin_settings: Callable[..., Settings], start: Callable[..., Session]
) -> None:
    session = start(plugin_settings("NoParams"))
    cycles(session, 1)
    assert type(session.bot.strategy.plugin).__name__ == "NoParams" and session.bot.ctx.analysis_results == []


BROKEN = '''
def f(:
'''
PARTS = '''
class NoSignal:
    pass


class Async:
    async def signal(self, symbol, candles):
        return 0.5


class OneArgument:
    def signal(self, symbol):
        return 0.5


class Strict:
    def __init__(self, fast=10, slow=30):
        if fast >= slow:
            raise ValueError(f"fast {fast} must be below slow {slow}")

    def signal(self, symbol, candles):
        return None


LIMIT = 3
'''


@pytest.mark.parametrize(
    ("plugin", "params", "key", "says"),
    [
        ("strategies", None, "strategy.plugin", "expected PATH.py:ClassName"),
        ("strategies/absent.py:X", None, "strategy.plugin", "no file "),
        ("strategies/broken.py:X", None, "strategy.plugin", "raised SyntaxError: invalid syntax (broken.py, line 2)"),
        ("strategies/parts.py:Stict", None, "strategy.plugin", "parts.py has no class Stict; did you mean Strict?"),
        ("strategies/parts.py:LIMIT", None, "strategy.plugin", "is not a class"),
        ("strategies/parts.py:NoSignal", None, "strategy.plugin", "NoSignal has no callable signal(symbol, candles)"),
        ("strategies/parts.py:Async", None, "strategy.plugin", "Async.signal is async"),
        ("strategies/parts.py:OneArgument", None, "strategy.plugin", "OneArgument.signal must take (symbol, candles)"),
        ("no_such_package.strategy:X", None, "strategy.plugin", "no module named 'no_such_package'"),
        ("strategies/parts.py:Strict", {"fsat": 5}, "strategy.params", "Strict takes (fast=10, slow=30)"),
        ("strategies/parts.py:Strict", {"fast": 50}, "strategy.params", "raised ValueError: fast 50 must be below slow 30"),
        ("strategies/parts.py:NoSignal", {"a": 1}, "strategy.plugin", "NoSignal has no callable signal"),
    ],
)
def test_config_check_refuses_a_plugin_it_cannot_use_in_one_line_naming_the_key(
    tmp_path: Path,
    config_dict: Callable[..., dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    plugin: str,
    params: dict[str, Any] | None,
    key: str,
    says: str,
) -> None:
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "broken.py").write_text(BROKEN, "utf-8")
    (tmp_path / "strategies" / "parts.py").write_text(PARTS, "utf-8")
    strategy: dict[str, Any] = {"plugin": plugin} if params is None else {"plugin": plugin, "params": params}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_dict(strategy=strategy)), "utf-8")
    assert main(["config", "check", str(config)]) == EXIT_USAGE
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"crypto-bot: config error in {config}: {key}=")
    assert says in lines[0]


def test_a_class_that_takes_no_params_refuses_some(
    plugin_file: Path, plugin_settings: Callable[..., Settings]
) -> None:
    from crypto_bot.memory import ConfigError

    with pytest.raises(ConfigError, match=r"strategy.params=\{'a': 1\} cannot build .*NoParams takes no parameters"):
        plugin_settings("NoParams", {"a": 1})


# ------------------------------------------------------------------------ the candles


def test_the_plugin_sees_each_timeframes_closed_candles_as_the_bot_keeps_them(
    plugin_file: Path, plugin_settings: Callable[..., Settings], start: Callable[..., Session]
) -> None:
    settings = plugin_settings("Recorder", {"score": 0.0})
    session = start(settings)
    cycles(session, 1)
    now_ms = session.bot.market.now_ms - timeframe_ms(settings.timeframes[0])  # monitor moved the clock on
    calls = session.bot.strategy.plugin.calls
    assert [symbol for symbol, _ in calls] == session.bot.ctx.current_batch
    for symbol, candles in calls:
        assert list(candles) == list(settings.timeframes)
        for timeframe, frame in candles.items():
            assert tuple(frame.columns) == OHLCV_COLUMNS and str(frame.index.tz) == "UTC"
            assert frame.index.is_monotonic_increasing and 0 < len(frame) <= settings.strategy.history_candles
            last_close_ms = int(frame.index[-1].timestamp() * 1000) + timeframe_ms(timeframe)
            assert last_close_ms <= now_ms  # closed candles only
            assert frame.equals(session.bot.ctx.df_cache[timeframe][symbol])


def test_writes_to_the_candles_never_reach_the_bots_cache(
    plugin_file: Path, plugin_settings: Callable[..., Settings], start: Callable[..., Session]
) -> None:
    session = start(plugin_settings("Mutates"))
    bot = session.bot
    cycles(session, 1)
    cache = bot.ctx.get_managed_cache("df_cache")
    before = {key: (frame, frame.copy()) for key, frame in cache.items()}
    refused = bot.strategy.plugin.numpy_writes_refused
    session.loop.run_until_complete(bot.analyse_batch(bot.ctx))  # the plugin writes to everything it gets
    assert bot.strategy.plugin.numpy_writes_refused - refused == len(before)  # numpy views of shared data are read-only
    for key, (frame, copy) in before.items():
        assert cache.get(key) is frame and frame.equals(copy) and frame.index.name == "timestamp", key
    cycles(session, 1)  # the next windows grow from the kept ones
    assert all(tuple(frame.columns) == OHLCV_COLUMNS and (frame["close"] > 0).all() for _, frame in cache.items())


# ------------------------------------------------------------------------ failures


@pytest.mark.parametrize("kind", ["raise", "nan", "too large", "a string", "a bool", "an array"])
def test_each_failure_is_reported_with_the_plugin_and_the_symbol_and_the_loop_goes_on(
    plugin_file: Path,
    plugin_settings: Callable[..., Settings],
    start: Callable[..., Session],
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    settings = plugin_settings("Returns", {"kind": kind}, max_failures=1000)
    session = start(settings)
    with caplog.at_level(logging.WARNING, logger="crypto_bot.strategy"):
        cycles(session, 2)
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    batch = session.bot.ctx.current_batch
    assert len(failures) == session.bot.strategy.plugin.calls == 2 * len(batch)
    for symbol in batch:
        assert any(f"strategy plugin {settings.strategy.plugin} failed on {symbol}: signal " in m for m in failures)
    assert session.bot.cycle == 2 and session.bot.strategy.enabled and session.bot.ctx.analysis_results == []
    expected = "raised ZeroDivisionError: no candles to divide at " if kind == "raise" else "not a finite number"
    assert all(expected in message for message in failures), failures[0]


def test_a_numpy_scalar_is_a_score(
    plugin_file: Path, plugin_settings: Callable[..., Settings], start: Callable[..., Session]
) -> None:
    session = start(plugin_settings("NumpyScore"))
    cycles(session, 1)
    assert session.bot.strategy.failures_in_a_row == 0 and session.bot.broker.positions


def test_the_plugin_is_disabled_after_max_failures_in_a_row(
    plugin_file: Path,
    plugin_settings: Callable[..., Settings],
    start: Callable[..., Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = plugin_settings("Returns", {"kind": "raise"}, max_failures=3)
    session = start(settings)
    plugin = session.bot.strategy.plugin
    with caplog.at_level(logging.WARNING, logger="crypto_bot.strategy"):
        cycles(session, 3)
    assert plugin.calls == 3 and not session.bot.strategy.enabled
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith(f"strategy plugin {settings.strategy.plugin} failed 3 times in a row (last on ")
    assert "it is disabled" in errors[0] and "exits of open positions are still managed" in errors[0]


def test_a_call_that_succeeds_resets_the_count(
    plugin_file: Path, plugin_settings: Callable[..., Settings], start: Callable[..., Session]
) -> None:
    session = start(plugin_settings("FailsEveryOtherCall", max_failures=2))
    cycles(session, 3)
    assert session.bot.strategy.enabled and session.bot.strategy.plugin.calls == 3 * 4


def test_a_disabled_plugin_leaves_the_exits_of_open_positions_managed(
    plugin_file: Path,
    plugin_settings: Callable[..., Settings],
    start: Callable[..., Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = start(plugin_settings("OpensThenRaises", max_failures=2))
    bot = session.bot
    plugin = bot.strategy.plugin
    cycles(session, 1)
    held = {p.symbol for p in bot.broker.positions.values()}
    assert held
    cycles(session, 1)
    assert not bot.strategy.enabled and plugin.calls_after == 2
    checked: list[str] = []
    real_process = bot.broker.process_candle
    monkeypatch.setattr(bot.broker, "process_candle", lambda symbol, *a: checked.append(symbol) or real_process(symbol, *a))
    cycles(session, 2)
    assert plugin.calls_after == 2  # never called again
    assert set(bot.ctx.current_batch) == {p.symbol for p in bot.broker.positions.values()}  # held symbols only
    assert {p.symbol for p in bot.broker.positions.values()} <= set(checked)


def test_a_plugin_that_cannot_be_loaded_at_run_time_is_reported_and_the_bot_runs_without_it(
    bot_settings: Settings, start: Callable[..., Session], caplog: pytest.LogCaptureFixture
) -> None:
    # config check refuses this; a program that builds its settings around the check gets a disabled plugin
    strategy = dataclasses.replace(bot_settings.strategy, plugin="strategies/gone.py:Nothing")
    with caplog.at_level(logging.ERROR, logger="crypto_bot.strategy"):
        session = start(dataclasses.replace(bot_settings, strategy=strategy))
    assert "strategy plugin strategies/gone.py:Nothing cannot be used: no file " in caplog.text
    cycles(session, 2)
    assert not session.bot.strategy.enabled and not session.bot.broker.positions


def test_an_on_start_that_raises_disables_the_plugin(
    plugin_file: Path,
    plugin_settings: Callable[..., Settings],
    start: Callable[..., Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="crypto_bot.strategy"):
        session = start(plugin_settings("StartFails"))
    assert "on_start raised RuntimeError: no model for you at " in caplog.text
    cycles(session, 1)
    assert not session.bot.broker.positions


# ------------------------------------------------------------------------ hooks


def test_on_start_receives_the_settings_the_memory_manager_and_the_regime_cache(
    plugin_file: Path, plugin_settings: Callable[..., Settings], start: Callable[..., Session]
) -> None:
    settings = plugin_settings("Recorder")
    bot = start(settings).bot
    runtime = bot.strategy.plugin.runtime
    assert runtime.settings is settings and runtime.memory is bot.memory and runtime.regimes is bot.ctx.regime_cache


def test_on_fill_is_told_each_entry_and_exit(
    plugin_file: Path, plugin_settings: Callable[..., Settings], start: Callable[..., Session]
) -> None:
    session = start(plugin_settings("Recorder"))
    bot = session.bot
    plugin = bot.strategy.plugin
    opened: dict[str, Any] = {}
    for _ in range(40):
        before = dict(bot.broker.positions)
        cycles(session, 1)
        opened.update({key: p for key, p in bot.broker.positions.items() if key not in before})
        if bot.broker.trades_count:
            break
    else:
        pytest.fail("no trade closed in 40 cycles")
    opens = [fill for fill in plugin.fills if fill.action == "open"]
    closes = [fill for fill in plugin.fills if fill.action == "close"]
    assert all(isinstance(fill, Fill) for fill in plugin.fills)
    assert {fill.position_id for fill in opens} == set(opened)
    for fill in opens:
        position = opened[fill.position_id]
        assert (fill.symbol, fill.side, fill.quantity, fill.price) == (
            position.symbol, position.side, position.quantity, position.entry_price
        )
    assert len(closes) == bot.broker.trades_count
    assert all(fill.reason and math.isfinite(fill.pnl) and fill.position_id in opened for fill in closes)


def test_on_cycle_end_is_called_once_per_cycle(
    plugin_file: Path, plugin_settings: Callable[..., Settings], start: Callable[..., Session]
) -> None:
    session = start(plugin_settings("Recorder", {"score": 0.0}))
    cycles(session, 5)
    assert session.bot.strategy.plugin.cycle_ends == 5


def test_close_is_called_once_when_the_bot_closes(
    plugin_file: Path, plugin_settings: Callable[..., Settings], start: Callable[..., Session]
) -> None:
    session = start(plugin_settings("Recorder", {"score": 0.0}))
    plugin = session.bot.strategy.plugin
    cycles(session, 1)
    session.close()
    assert plugin.closed == 1 and not session.bot.strategy.enabled


# ------------------------------------------------------------------------ the example


def test_the_example_strategy_runs_through_the_command_on_the_simulated_market(tmp_path: Path) -> None:
    config = REPO_ROOT / "examples" / "sma_cross.yaml"
    process = crypto_bot(
        "run", "--config", str(config), "--cycles", "20", "--interval", "0",
        cwd=tmp_path, stdout=-1, stderr=-1,
    )
    stdout, stderr = process.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert process.returncode == EXIT_OK, stderr
    assert "strategy sma_cross.py:SmaCross" in stdout and "cycle    20 |" in stdout and "Summary" in stdout
    assert "strategy plugin" not in stderr  # no failure reported
    assert (tmp_path / "data" / "sma_cross_journal.sqlite").exists()
