"""Lazy re-exports for a package `__init__`: each public name is imported from its module on first use.

Why: a package that re-exports everything imports everything, and `crypto_bot.market` or
`crypto_bot.strategy` would then import pandas for a caller that needs one constant. With this, the
commands that do not trade (`config check`, `status`, the supervisor) stay free of pandas and numpy,
while `from crypto_bot.market import SimulatedMarket` still works (PEP 562 module `__getattr__`).
Not covered: which names a package exports; each package lists its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    package: str, modules: Mapping[str, Iterable[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`__all__`, `__getattr__` and `__dir__` for `package`, which exports the names each submodule of `modules`
    maps to (`{"broker": ("PaperBroker",)}`: `package.PaperBroker` is `package.broker.PaperBroker`)."""
    namespace = importlib.import_module(package).__dict__
    exports = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # the next lookup is a plain module attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return sorted(exports), __getattr__, __dir__
