"""ModelRegistry: the lifecycle of the bot's ML models (load on demand, unload when idle, prove release).

This module covers models that are big, loaded rarely and used often: a model is loaded by its
loader on first use (one load however many threads ask), pinned while a prediction runs, unloaded
when idle or on demand, and after an unload the registry checks that the object really died.
Per-model records (sizes, load counts, timings) outlive the model objects.

It does not cover when to unload under memory pressure (the manager calls `unload_idle` and
`unload_all`), cached values (`cache.py`), or memory trends (`leaks.py`, whose `ReleaseWatch`
does the release check).

The registry is thread-safe. Loaders and the `on_leak` callback never run under its lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psutil

from . import validation
from .flight import Flight
from .leaks import ReleaseWatch
from .sizing import sizeof
from .units import MIB as _MIB

logger = logging.getLogger(__name__)


Loader = Callable[[], Any]
LeakCallback = Callable[[str, int], None]


class ModelUnavailableError(LookupError):
    """The model is unloaded and cannot be loaded again (it was registered without a loader)."""


@dataclass(slots=True)
class ModelRecord:
    """What the registry knows about one model; `last_used` is on the registry's clock."""

    name: str
    size_bytes: int = 0
    last_used: float = 0.0
    loaded: bool = False
    pinned: bool = False
    in_use: int = 0
    loads: int = 0
    unloads: int = 0
    load_failures: int = 0
    load_seconds: float = 0.0


class _Entry:
    """A registration: the live record, the model while loaded, and how to load it again."""

    __slots__ = ("record", "model", "loader", "given_size_bytes", "in_flight")

    def __init__(self, record: ModelRecord, model: Any, loader: Loader | None, given_size_bytes: int | None):
        self.record = record
        self.model = model
        self.loader = loader
        self.given_size_bytes = given_size_bytes
        self.in_flight: Flight | None = None


class _ByteCounter:
    """A write-only file that counts what a pickler writes instead of keeping it."""

    __slots__ = ("size_bytes",)

    def __init__(self) -> None:
        self.size_bytes = 0

    def write(self, data: Any) -> int:
        with memoryview(data) as view:
            self.size_bytes += view.nbytes
            return view.nbytes

    def count_buffer(self, buffer: pickle.PickleBuffer) -> bool:
        with memoryview(buffer) as view:
            self.size_bytes += view.nbytes
        return False  # out-of-band: counted, never copied


def pickled_size_bytes(model: Any) -> int | None:
    """Bytes `pickle.dumps(model, protocol=5)` would take, without building them; None if unpicklable.

    Large buffers (numpy arrays) are counted out-of-band, so measuring a 1 GiB model does not
    allocate another 1 GiB.
    """
    counter = _ByteCounter()
    try:
        pickle.Pickler(counter, protocol=5, buffer_callback=counter.count_buffer).dump(model)
    except Exception as error:  # pickling runs arbitrary __reduce__ code; any failure means "unknown"
        logger.debug("cannot pickle %s to measure it: %r", type(model).__name__, error)
        return None
    return counter.size_bytes


def _process_rss_bytes() -> int | None:
    """Resident set size of this process; None where unreadable (the manager passes its probe's instead)."""
    try:
        return psutil.Process().memory_info().rss
    except psutil.Error:
        return None


class ModelRegistry:
    """Named ML models, held strongly only while loaded; thread-safe.

    `rss_probe` reads the process RSS, used to size a model that cannot be pickled.
    """

    def __init__(
        self,
        *,
        idle_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        on_leak: LeakCallback | None = None,
        rss_probe: Callable[[], int | None] = _process_rss_bytes,
    ) -> None:
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._on_leak = on_leak
        self._rss_probe = rss_probe
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._loaded_bytes = 0
        self._release_watch: ReleaseWatch[tuple[str, int]] = ReleaseWatch()

    @property
    def idle_seconds(self) -> float:
        """How long a model may go unused before `unload_idle` unloads it."""
        return self._idle_seconds

    @idle_seconds.setter
    def idle_seconds(self, idle_seconds: float) -> None:
        self._idle_seconds = validation.positive("idle_seconds", idle_seconds)

    def register(
        self,
        name: str,
        model: Any = None,
        *,
        loader: Loader | None = None,
        size_bytes: int | None = None,
        pinned: bool = False,
    ) -> ModelRecord:
        """Add (or replace, unloading the old one) a model given directly, by loader, or both."""
        validation.text("name", name)
        given_size_bytes = validation.size_bytes("size_bytes", size_bytes, optional=True)
        if model is None and loader is None:
            raise ValueError(f"model {name!r} needs a model or a loader (or both)")
        if loader is not None and not callable(loader):
            raise TypeError(f"loader must be callable, got {loader!r}")
        measured_bytes = 0
        if given_size_bytes is not None:
            measured_bytes = given_size_bytes
        elif model is not None:
            measured_bytes = self._measure(name, model, rss_delta_bytes=None)
        record = ModelRecord(
            name=name, size_bytes=measured_bytes, last_used=self._clock(), loaded=model is not None, pinned=bool(pinned)
        )
        entry = _Entry(record, model, loader, given_size_bytes)
        with self._lock:
            old = self._entries.get(name)
            self._entries[name] = entry
            if model is not None:
                self._loaded_bytes += measured_bytes
            released = self._detach_locked(old) if old is not None else None
            snapshot = dataclasses.replace(record)
        if released is not None and released[2] is not model:
            self._watch_release(*released)
        return snapshot

    def unregister(self, name: str) -> bool:
        """Forget a model (unloading it); False if it was not registered."""
        with self._lock:
            entry = self._entries.pop(name, None)
            released = self._detach_locked(entry) if entry is not None else None
        if released is not None:
            self._watch_release(*released)
        return entry is not None

    def get(self, name: str) -> Any:
        """The model, loaded on demand; concurrent callers share one load and its outcome."""
        with self._lock:
            entry = self._entry_locked(name)
        return self._obtain(entry)

    @contextlib.contextmanager
    def use(self, name: str) -> Iterator[Any]:
        """`with registry.use(name) as model:` the model cannot be unloaded inside the block."""
        with self._lock:
            entry = self._entry_locked(name)
            entry.record.in_use += 1  # pinned before loading, so nothing can unload it once loaded
        try:
            yield self._obtain(entry)
        finally:
            with self._lock:
                entry.record.in_use -= 1

    def touch(self, name: str) -> None:
        """Mark the model as used now (postpones its idle unload)."""
        with self._lock:
            self._entry_locked(name).record.last_used = self._clock()

    def unload(self, name: str) -> int:
        """Unload the model (pinned or not); bytes freed, 0 if not loaded or in use."""
        with self._lock:
            entry = self._entry_locked(name)
            if entry.record.in_use:
                logger.info("not unloading model %r: in use by %d callers", name, entry.record.in_use)
                return 0
            released = self._take_model_locked(entry)
        if released is None:
            return 0
        self._watch_release(*released)
        return released[1]

    def unload_idle(self, now: float | None = None) -> int:
        """Unload unpinned, unused models idle longer than `idle_seconds`; bytes freed."""
        now = self._clock() if now is None else now
        return self._unload_where(lambda record: now - record.last_used > self.idle_seconds)

    def unload_all(self) -> int:
        """Unload every unpinned model not in use; bytes freed."""
        return self._unload_where(lambda record: True)

    def check_released(self) -> list[str]:
        """Names of unloaded models whose object is still alive after a gc (each reported once).

        Models that cannot be weakly referenced (dicts, lists, ...) are not checked.
        """
        leaked = self._release_watch.check()
        for name, size_bytes in leaked:
            logger.warning(
                "model %r (%.1f MiB) is still alive after it was unloaded: something outside the registry "
                "holds a reference, so its memory was not freed",
                name,
                size_bytes / _MIB,
            )
            if self._on_leak is not None:
                try:
                    self._on_leak(name, size_bytes)
                except Exception:
                    logger.exception("on_leak callback failed for model %r", name)
        return [name for name, _ in leaked]

    def record(self, name: str) -> ModelRecord:
        """A copy of the model's record."""
        with self._lock:
            return dataclasses.replace(self._entry_locked(name).record)

    def records(self) -> list[ModelRecord]:
        """Copies of every record, in registration order."""
        with self._lock:
            return [dataclasses.replace(entry.record) for entry in self._entries.values()]

    @property
    def loaded_bytes(self) -> int:
        """Sum of the sizes of the loaded models."""
        return self._loaded_bytes

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _entry_locked(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"no model registered as {name!r}") from None

    def _obtain(self, entry: _Entry) -> Any:
        with self._lock:
            record = entry.record
            if record.loaded:
                record.last_used = self._clock()
                return entry.model
            if entry.loader is None:
                raise ModelUnavailableError(
                    f"model {record.name!r} is unloaded and was registered without a loader; register it again"
                )
            in_flight = entry.in_flight
            leads = in_flight is None
            if leads:
                in_flight = entry.in_flight = Flight()
        if not leads:
            return in_flight.result()
        return self._load(entry, in_flight)

    def _load(self, entry: _Entry, in_flight: Flight) -> Any:
        """Run the loader (outside the lock), install the model, and hand the outcome to the waiters."""
        name = entry.record.name
        measure_rss = entry.given_size_bytes is None
        rss_before = self._rss_probe() if measure_rss else None
        started = self._clock()
        try:
            model = entry.loader()
            if model is None:
                raise ModelUnavailableError(f"the loader of model {name!r} returned None")
        except BaseException as error:
            with self._lock:
                entry.in_flight = None
                entry.record.load_failures += 1
                entry.record.load_seconds += self._clock() - started
            in_flight.error = error
            in_flight.done.set()
            logger.warning("loading model %r failed: %r", name, error)
            raise
        load_seconds = self._clock() - started
        rss_after = self._rss_probe() if measure_rss else None
        if entry.given_size_bytes is not None:
            size_bytes = entry.given_size_bytes
        else:
            rss_delta = rss_after - rss_before if rss_before is not None and rss_after is not None else None
            size_bytes = self._measure(name, model, rss_delta_bytes=rss_delta)
        with self._lock:
            entry.in_flight = None
            record = entry.record
            record.loads += 1
            record.load_seconds += load_seconds
            if self._entries.get(name) is entry:  # replaced or unregistered meanwhile: hand out, keep nothing
                entry.model = model
                record.loaded = True
                record.size_bytes = size_bytes
                record.last_used = self._clock()
                self._loaded_bytes += size_bytes
        in_flight.value = model
        in_flight.done.set()
        logger.info("loaded model %r (%.1f MiB) in %.2f s", name, size_bytes / _MIB, load_seconds)
        return model

    def _measure(self, name: str, model: Any, *, rss_delta_bytes: int | None) -> int:
        """The model's size: its pickle, else the RSS growth during its load, else `sizeof`'s estimate."""
        size_bytes = pickled_size_bytes(model)
        if size_bytes is not None:
            return size_bytes
        if rss_delta_bytes is not None and rss_delta_bytes > 0:
            return rss_delta_bytes
        try:
            estimated_bytes = sizeof(model)
        except Exception:  # a last resort on arbitrary objects must not fail a load
            logger.exception("sizeof failed on model %r; counting it as 0 bytes", name)
            return 0
        logger.info(
            "model %r cannot be pickled and no RSS growth was seen while loading it; counting sizeof's estimate "
            "of %d bytes; pass size_bytes to register() for a real figure",
            name,
            estimated_bytes,
        )
        return estimated_bytes

    def _unload_where(self, eligible: Callable[[ModelRecord], bool]) -> int:
        with self._lock:
            released = [
                self._take_model_locked(entry)
                for entry in self._entries.values()
                if entry.record.loaded and not entry.record.pinned and not entry.record.in_use and eligible(entry.record)
            ]
        freed_bytes = 0
        for name, size_bytes, model in filter(None, released):
            self._watch_release(name, size_bytes, model)
            freed_bytes += size_bytes
        return freed_bytes

    def _take_model_locked(self, entry: _Entry) -> tuple[str, int, Any] | None:
        """Drop the registry's reference to a loaded model; (name, size, model) or None if not loaded."""
        record = entry.record
        if not record.loaded:
            return None
        model, entry.model = entry.model, None
        record.loaded = False
        record.unloads += 1
        self._loaded_bytes -= record.size_bytes
        return record.name, record.size_bytes, model

    def _detach_locked(self, entry: _Entry) -> tuple[str, int, Any] | None:
        """Unload a replaced or unregistered entry; a model still in use is not watched (it is alive by design)."""
        released = self._take_model_locked(entry)
        return None if entry.record.in_use else released

    def _watch_release(self, name: str, size_bytes: int, model: Any) -> None:
        """Log an unload and watch the unloaded object die (called without the lock)."""
        logger.info("unloaded model %r (%.1f MiB)", name, size_bytes / _MIB)
        if not self._release_watch.watch((name, size_bytes), model):
            logger.debug("model %r (%s) cannot be weakly referenced; its release is not checked", name, type(model))
