"""PeriodicThread: the daemon thread behind the memory manager's (and the seed facade's) maintenance."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class PeriodicThread:
    """Calls `task()` every `interval()` seconds on a daemon thread until stopped; a failing call is
    logged and the next one runs as scheduled. `interval` is read before each wait, so a changed
    setting takes effect at the next pass."""

    def __init__(self, task: Callable[[], object], interval: Callable[[], float], *, name: str) -> None:
        self._task = task
        self._interval = interval
        self._name = name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (no-op when it is running)."""
        with self._lock:
            if self.running:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; returns once it is gone (at once unless a pass is running)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("%s thread still busy after %.1f s; it exits after its pass", self._name, timeout)
                return
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def thread(self) -> threading.Thread | None:
        """The thread while started (None once stopped)."""
        return self._thread

    def _run(self) -> None:
        while not self._stop.wait(self._interval()):
            try:
                self._task()
            except Exception:
                logger.exception("%s pass failed; the next pass runs as scheduled", self._name)
