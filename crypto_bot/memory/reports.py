"""Memory reports as JSON files: the leak diagnosis, and the on-demand report a signal asks for.

Covers: turning the manager's figures into JSON (`to_jsonable`), writing a report file atomically
into the data folder and keeping the newest few of each kind (`write_json_report`), the on-demand
report (`memory_report`: reading, pressure, caches, models, the leak detector, the last diagnosis
with its top sites and growing types, and a census of the most numerous types now), and a signal
handler that writes it from a worker thread (`ReportSignal`, installed with
`MemoryManager.install_report_signal`, so `kill -USR1 <pid>` on a running bot writes one).

Not covered: finding leaks (`leaks.py`, `diagnosis.py`) or deciding when a diagnosis runs (`manager.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import gc
import json
import logging
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import validation
from .diagnosis import census, type_name

if TYPE_CHECKING:
    from .manager import MemoryManager

logger = logging.getLogger(__name__)

__all__ = ["ReportSignal", "memory_report", "to_jsonable", "write_json_report"]

# Reports of each kind kept in the data folder; older ones written by this module are removed.
REPORTS_KEPT = 20
# Types listed by the on-demand report's census.
CENSUS_TYPES = 30
_KIND = re.compile(r"[a-z][a-z0-9-]*")


def to_jsonable(value: Any) -> Any:
    """`value` as JSON types: dataclasses as dicts, enums by name, paths and unknown objects as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(item) for item in value]
    return str(value)


def write_json_report(directory: str | os.PathLike[str], kind: str, payload: Mapping[str, Any], *, keep: int = REPORTS_KEPT) -> Path:
    """Write `payload` as `<kind>-<UTC time>-<pid>.json` in `directory` (created if missing); returns its path.

    The file appears whole or not at all (written beside it, then renamed). Of the files of this
    kind in the folder, the newest `keep` stay.
    """
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"kind must be lowercase letters, digits and dashes, got {kind!r}")
    keep = validation.integer("keep", keep, minimum=1)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    path = folder / f"{kind}-{stamp}-{os.getpid()}.json"
    text = json.dumps(to_jsonable(payload), indent=2, sort_keys=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{kind}-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _prune(folder, kind, keep)
    return path


def _prune(folder: Path, kind: str, keep: int) -> None:
    # The names sort by time (UTC stamp first); only this module's names for this kind are touched.
    pattern = re.compile(rf"{re.escape(kind)}-\d{{8}}T\d{{6}}\.\d{{6}}Z-\d+\.json")
    written = sorted(path for path in folder.iterdir() if pattern.fullmatch(path.name))
    for old in written[:-keep]:
        old.unlink(missing_ok=True)


def memory_report(manager: MemoryManager) -> dict[str, Any]:
    """The on-demand report: the manager's stats and a census of the most numerous GC-tracked types.

    The census walks every GC-tracked object once (~20 ns each): meant for a signal or a command,
    not for a loop.
    """
    stats = manager.get_memory_stats()
    counts = census()
    return {
        "kind": "memory-report",
        "written_at": datetime.now(timezone.utc).isoformat(),
        "pid": os.getpid(),
        "reading": stats["reading"],
        "pressure_level": stats["pressure_level"],
        "pressure": stats["pressure"],
        "limits": stats["limits"],
        "thrashing": stats["thrashing"],
        "unmanaged_bytes": stats["unmanaged_bytes"],
        "cache_bytes": stats["cache_bytes"],
        "cache_budget_bytes": stats["cache_budget_bytes"],
        "caches": stats["caches"],
        "models": stats["models"],
        "model_bytes": stats["model_bytes"],
        "leak": stats["leak"],
        "census": [{"type": type_name(cls), "count": count} for cls, count in counts.most_common(CENSUS_TYPES)],
        "gc": {"enabled": gc.isenabled(), "counts": gc.get_count(), "thresholds": gc.get_threshold()},
    }


class ReportSignal:
    """A signal handler that writes the manager's report (`MemoryManager.write_report`) from a worker thread.

    The handler itself only starts the thread, so it never runs the report under a lock the
    interrupted code holds; a signal that arrives while a report is being written is logged and
    dropped. `uninstall()` restores the previous handler.
    """

    signum: int
    directory: Path
    paths: list[Path]
    failures: int

    def __init__(
        self,
        manager: MemoryManager,
        directory: str | os.PathLike[str],
        *,
        signum: int = signal.SIGUSR1,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._manager = manager
        self.directory = Path(directory)
        self.signum = signal.Signals(signum)
        self._loop = loop
        self._condition = threading.Condition()
        self._writing = False
        self.paths = []
        self.failures = 0
        self._previous: Any = None
        self._installed = True
        if loop is not None:
            loop.add_signal_handler(self.signum, self.request)
        elif threading.current_thread() is not threading.main_thread():
            raise ValueError(
                f"a handler for {self.signum.name} can only be installed from the main thread, or given an asyncio loop"
            )
        else:
            self._previous = signal.signal(self.signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.request()

    def request(self) -> bool:
        """Write a report on a worker thread now (as the signal does); False if one is already being written."""
        with self._condition:
            if self._writing:
                logger.warning("%s: a memory report is already being written; this request is dropped", self.signum.name)
                return False
            self._writing = True
        threading.Thread(target=self._write, name="memory-report", daemon=True).start()
        return True

    def _write(self) -> None:
        started = time.perf_counter()
        path = None
        try:
            path = self._manager.write_report(self.directory)
        except Exception:
            logger.exception("memory report requested by %s could not be written to %s", self.signum.name, self.directory)
        if path is not None:
            logger.warning(
                "memory report written to %s (requested by %s, %.2f s)", path, self.signum.name, time.perf_counter() - started
            )
        with self._condition:
            self._writing = False
            if path is None:
                self.failures += 1
            else:
                self.paths.append(path)
            self._condition.notify_all()

    def wait(self, count: int = 1, timeout: float | None = None) -> bool:
        """Block until `count` reports were written or failed since installation; False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: len(self.paths) + self.failures >= count, timeout)

    def uninstall(self) -> None:
        """Restore what handled the signal before (or remove the loop's handler)."""
        if not self._installed:
            return
        self._installed = False
        if self._loop is not None:
            self._loop.remove_signal_handler(self.signum)
        else:
            # None: the previous handler was not installed from Python; the default is the closest.
            signal.signal(self.signum, signal.SIG_DFL if self._previous is None else self._previous)
