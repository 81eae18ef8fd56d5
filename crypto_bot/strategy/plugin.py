"""Strategy plugins: the interface a strategy implements, and loading the one `strategy.plugin` names.

Covers: the interface (`StrategyPlugin`, below), what the optional `on_start` hook receives
(`StrategyRuntime`), the spec (`PluginSpec`: `PATH.py:ClassName`, a file relative to the config
file's folder, or `package.module:ClassName`), importing it (`load_plugin_class`), building the class
with `strategy.params` (`build_plugin`), and the errors that say why a plugin cannot be used
(`PluginLoadError`, `PluginBuildError`; `crypto_bot.settings` reports them under their keys).
Not covered: calling a plugin in the trading cycle, checking what it returns and disabling it after
failures (`plugin_host`), the built-in strategy (`builtin`), turning a score into an entry
(`signals.entry_signal`).

The interface, in full (only `signal` is required):

    class MyStrategy:
        def __init__(self, fast: int = 10):      # strategy.params as keyword arguments; none: no arguments
            ...
        def signal(self, symbol: str, candles: dict[str, pandas.DataFrame]) -> float | None:
            ...                                   # once per analysed symbol per cycle
        def on_fill(self, fill: crypto_bot.execution.Fill) -> None: ...      # after each entry and exit
        def on_cycle_end(self) -> None: ...                                  # once per cycle
        def on_start(self, runtime: StrategyRuntime) -> None: ...            # once, before the first cycle
        def close(self) -> None: ...                                         # once, when the bot stops

`candles` maps each configured timeframe that has candles for the symbol to its window (columns
open, high, low, close, volume; a UTC DatetimeIndex of candle opens, oldest first; closed candles
only; at most `strategy.history_candles`). The frames are the plugin's to read: writing to them
changes the plugin's copy, never the bot's cache (see `plugin_host`). The score is in [-1, 1]
(> 0 long, < 0 short, its magnitude against `strategy.min_score`, see `signals`) or None for no
signal. `on_start` may be a coroutine; it is where heavy set-up belongs (loading a model), because
`config check` builds the class too, to prove `strategy.params` fit it, and then drops it. `close`
stops what the plugin started (threads, sessions); it is also called when the plugin is disabled.

A file is imported once per process, under a module name of its own and its real path (tracebacks
and tracemalloc name the file); it is not put on `sys.path`, so a strategy spread over several
modules is a package named by module path, which imports as Python's `import` does (installed, or
on PYTHONPATH).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # the settings and the manager import the strategy package: names for annotations only
    import pandas as pd

    from crypto_bot.memory import MemoryManager
    from crypto_bot.settings import Settings

SPEC_FORMS = "PATH.py:ClassName (a file, relative to the config file's folder) or package.module:ClassName"


class PluginLoadError(Exception):
    """The plugin cannot be imported or is not a strategy (no class by that name, no callable `signal`)."""


class PluginBuildError(Exception):
    """The plugin class cannot be built with the given params."""


@runtime_checkable
class StrategyPlugin(Protocol):
    """What the bot calls: `signal`; the hooks on_start, on_fill, on_cycle_end and close are optional."""

    def signal(self, symbol: str, candles: Mapping[str, pd.DataFrame]) -> float | None: ...


@dataclass(frozen=True, slots=True)
class StrategyRuntime:
    """What a plugin's optional `on_start(runtime)` hook receives from the bot.

    `memory` is the bot's MemoryManager (register managed caches and models there, so what the
    strategy keeps is bounded and evicted under pressure), None when the bot runs unmanaged.
    `regimes` is the bot's regime cache (symbol -> `crypto_bot.working_set.RegimeResult`), where the
    built-in strategy keeps each symbol's regime.
    """

    settings: Settings
    memory: MemoryManager | None
    regimes: MutableMapping[str, Any]


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """A parsed `strategy.plugin`: a file (absolute `path`) or a `module`, and the class to take from it."""

    text: str
    class_name: str
    path: Path | None = None
    module: str | None = None

    @classmethod
    def parse(cls, text: str, base_dir: Path) -> PluginSpec:
        """`PATH.py:ClassName` (relative to base_dir) or `package.module:ClassName`; PluginLoadError otherwise."""
        target, colon, class_name = text.rpartition(":")  # the last colon: a Windows path has one of its own
        if not colon or not target or not class_name.isidentifier():
            raise PluginLoadError(f"expected {SPEC_FORMS}")
        if target.endswith(".py") or "/" in target or os.sep in target:
            path = Path(target).expanduser()
            return cls(text, class_name, path=path if path.is_absolute() else base_dir / path)
        if not all(part.isidentifier() for part in target.split(".")):
            raise PluginLoadError(f"{target!r} is neither a .py file nor a module path; expected {SPEC_FORMS}")
        return cls(text, class_name, module=target)


def load_plugin_class(spec: PluginSpec) -> type:
    """Import the spec's file or module and return its class; PluginLoadError says why it cannot be used."""
    module = _import_file(spec.path) if spec.path is not None else _import_module(spec.module or "")
    where = spec.path.name if spec.path is not None else spec.module
    plugin_class = getattr(module, spec.class_name, None)
    if plugin_class is None:
        classes = [name for name, value in vars(module).items() if isinstance(value, type)]
        close = difflib.get_close_matches(spec.class_name, classes, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; its classes: {', '.join(classes) or 'none'}"
        raise PluginLoadError(f"{where} has no class {spec.class_name}{hint}")
    if not isinstance(plugin_class, type):
        raise PluginLoadError(f"{where}:{spec.class_name} is not a class (its type is {type(plugin_class).__name__})")
    signal = getattr(plugin_class, "signal", None)
    if not callable(signal):
        raise PluginLoadError(f"{spec.class_name} has no callable signal(symbol, candles) method")
    if inspect.iscoroutinefunction(signal):
        raise PluginLoadError(f"{spec.class_name}.signal is async; it must be a plain method returning a score")
    return plugin_class


def build_plugin(plugin_class: type, params: Mapping[str, Any]) -> Any:
    """`plugin_class(**params)`, the one instance the bot calls; PluginBuildError if the params do not fit or
    building raises, PluginLoadError if the instance's `signal` cannot take (symbol, candles)."""
    name = plugin_class.__name__
    try:
        signature = inspect.signature(plugin_class)
    except (TypeError, ValueError):  # no introspectable signature (a C type): building will tell
        signature = None
    if signature is not None:
        try:
            signature.bind(**params)
        except TypeError as error:
            takes = _parameters(signature)
            takes = f"takes ({takes})" if takes else "takes no parameters"
            raise PluginBuildError(f"{name} {takes}: {one_line(str(error))}") from error
    try:
        plugin = plugin_class(**params)
    except Exception as error:
        arguments = ", ".join(f"{key}={value!r}" for key, value in params.items())
        raise PluginBuildError(f"{name}({arguments}) raised {describe_error(error)}") from error
    signal = getattr(plugin, "signal", None)
    if not callable(signal):
        raise PluginLoadError(f"{name} instances have no callable signal(symbol, candles) method")
    try:
        inspect.signature(signal).bind("BTC/USDT", {})
    except TypeError as error:
        raise PluginLoadError(f"{name}.signal must take (symbol, candles): {one_line(str(error))}") from error
    except ValueError:  # no introspectable signature: the first call will tell
        pass
    return plugin


def load_plugin(text: str, params: Mapping[str, Any], *, base_dir: Path) -> Any:
    """Parse, import and build a plugin (what the bot does once at start); the errors of the three steps."""
    return build_plugin(load_plugin_class(PluginSpec.parse(text, base_dir)), params)


def _import_file(path: Path) -> ModuleType:
    """The module of a .py file, imported once per process under a name derived from its real path."""
    if not path.exists():
        raise PluginLoadError(f"no file {path}")
    if not path.is_file():
        raise PluginLoadError(f"{path} is not a file")
    real = path.resolve()
    stem = re.sub(r"\W", "_", real.stem)
    name = f"crypto_bot_plugin_{stem}_{hashlib.sha256(str(real).encode()).hexdigest()[:10]}"
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, real)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it, as import does: dataclasses and pickle look modules up there
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise PluginLoadError(f"importing {path} raised {describe_error(error)}") from error
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(f"{error.name}.")):
            raise PluginLoadError(
                f"no module named {error.name!r}; a module path imports as Python's import does (an installed "
                "package or one on PYTHONPATH); a file is named by its path, ending in .py"
            ) from error
        raise PluginLoadError(f"importing {name} raised {describe_error(error)}") from error
    except Exception as error:
        raise PluginLoadError(f"importing {name} raised {describe_error(error)}") from error


def _parameters(signature: inspect.Signature) -> str:
    """`fast=10, slow=30, **options`: the parameters as a caller writes them, without annotations."""
    shown = []
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            shown.append(f"*{parameter.name}")
        elif parameter.kind is parameter.VAR_KEYWORD:
            shown.append(f"**{parameter.name}")
        elif parameter.default is parameter.empty:
            shown.append(parameter.name)
        else:
            shown.append(f"{parameter.name}={parameter.default!r}")
    return ", ".join(shown)


def describe_error(error: BaseException) -> str:
    """`ValueError: the message` on one line."""
    message = one_line(str(error))
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def one_line(text: str, limit: int = 300) -> str:
    """`text` with its line breaks as spaces, cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
