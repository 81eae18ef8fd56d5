"""Flight: one load in progress that concurrent callers wait for (single flight).

The loading thread sets `value` or `error`, then `done`; every waiter gets the same value or
the same exception. Used by ManagedCache.get_or_load and ModelRegistry.get.
"""

from __future__ import annotations

import threading
from typing import Any


class Flight:
    """A load in progress; `result()` blocks until the loader finishes."""

    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value
