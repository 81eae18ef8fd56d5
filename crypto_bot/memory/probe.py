"""Memory readings for this process: its RSS, its own cgroup's limit and usage, and the host's.

Covers: locating the process's own memory cgroup (v1 or v2, nested, seen from inside a container),
reading its limit, high mark, usage, working set, OOM kills and PSI, and comparing each limit with
the memory it bounds: the process limit with the process's RSS, the cgroup limit with the
cgroup's working set, the host total with host usage. The usage ratio is the largest of those
ratios and the reading names the one that set it (``MemoryReading.limiting``): other processes
and page cache in our cgroup never count against a limit meant for this process alone (issue 11).
Sources are opened once and re-read with ``pread``, so a reading costs a handful of syscalls; when
a cgroup vanishes (ENODEV after its rmdir) or the process forks, the probe resolves its files again.
Not covered: what to do about the numbers (``crypto_bot.memory.pressure``) or freeing memory
(``crypto_bot.memory.reclaim``).

Every source degrades on its own: an absent, unreadable or malformed file yields None for its
field and a debug log, never an exception. An implausible figure (a host total below our own RSS,
anything above 2**50 bytes, a non-numeric stub) is discarded the same way: a limit is only ever a
figure that could be real, and where none applies, the host's percent used decides.
"""

from __future__ import annotations

import errno
import logging
import math
import numbers
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, TypeVar

import psutil

from . import validation

logger = logging.getLogger(__name__)

_PAGE_SIZE_BYTES = os.sysconf("SC_PAGE_SIZE")
# Kernels report "no limit" as the page counter maximum rounded to pages (9223372036854771712 with
# 4 KiB pages, less with 64 KiB pages); nothing real comes near 4 EiB.
_UNLIMITED_FLOOR_BYTES = 1 << 62
# No host or container this bot runs on has 1 PiB: a larger figure is a stub or a misread (a
# replaced psutil.virtual_memory() once read as a 1-byte host), never a limit to divide by.
_MAX_PLAUSIBLE_BYTES = 1 << 50
_READ_CHUNK_BYTES = 16384
# kernfs answers ENODEV on files of a removed cgroup; the others cover /proc of a gone process.
_VANISHED_ERRNOS = frozenset({errno.ENODEV, errno.ENOENT, errno.ESTALE, errno.ESRCH})
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")

_T = TypeVar("_T")

LimitSource = Literal["process", "cgroup", "host", "system_percent"]


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """One limit and the memory it bounds: ``used_bytes / limit_bytes == ratio``.

    Sources: ``process`` (RSS against process_limit_bytes), ``cgroup`` (the cgroup's working set,
    or our RSS where memory.stat is unreadable, against the smallest limit on the cgroup's path),
    ``host`` (host usage against host total), ``system_percent`` (the host's percent used, with no
    plausible total to turn it into bytes: both byte figures are None).
    """

    source: LimitSource
    used_bytes: int | None
    limit_bytes: int | None
    ratio: float


@dataclass(frozen=True, slots=True)
class MemoryReading:
    """One snapshot; sizes in bytes, None where the source is absent or unreadable.

    ``working_set_bytes`` is cgroup usage minus inactive file cache (reclaimable page cache).
    ``usages`` compares each known limit with the memory it bounds (see LimitUsage);
    ``usage_ratio`` is the largest of their ratios and ``limiting`` the usage that set it (None
    without any). ``limit_bytes`` is the tightest figure any source allows (the smallest of
    process_limit_bytes, the cgroup limit and host total), not necessarily the limiting one.
    ``system_percent`` and ``psi_some_avg10`` are percentages (0-100) as the kernel reports them.
    Host figures that cannot be real are None (see ``_host_figures``).
    The fields after ``cgroup_version`` have defaults so that stand-in readings may leave them out.
    """

    rss_bytes: int | None
    system_total_bytes: int | None
    system_available_bytes: int | None
    system_percent: float | None
    cgroup_limit_bytes: int | None
    cgroup_high_bytes: int | None
    cgroup_usage_bytes: int | None
    working_set_bytes: int | None
    oom_kills: int | None
    psi_some_avg10: float | None
    limit_bytes: int | None
    usage_ratio: float | None
    cgroup_version: int | None
    process_limit_bytes: int | None = None
    usages: tuple[LimitUsage, ...] = ()
    limiting: LimitUsage | None = None

    def usage(self, source: LimitSource) -> LimitUsage | None:
        """The usage of one source, or None where that limit is unknown."""
        return next((usage for usage in self.usages if usage.source == source), None)


@dataclass(frozen=True, slots=True)
class CgroupLocation:
    """The process's own memory cgroup; directories are already joined onto the probe's root."""

    version: int
    directory: str
    mount_directory: str

    def lineage(self) -> tuple[str, ...]:
        """The cgroup directory, then each ancestor up to and including the mount directory."""
        relative = os.path.relpath(self.directory, self.mount_directory)
        parts = [] if relative == "." else relative.split(os.sep)
        return tuple(
            os.path.join(self.mount_directory, *parts[:depth]) for depth in range(len(parts), -1, -1)
        )


@dataclass(frozen=True, slots=True)
class _Mount:
    mount_root: str
    mount_point: str
    fstype: str
    super_options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _CgroupFiles:
    """File names of one cgroup version; None where that version has no such file."""

    limit: str | None
    high: str | None
    usage: str | None
    stat: str | None
    inactive_file_key: bytes
    events: str | None
    pressure: str | None


_CGROUP_FILES = {
    # v1: total_inactive_file covers descendants like usage_in_bytes does; memory.failcnt counts
    # limit hits, not kills, so OOM kills come from oom_control's oom_kill line (kernel >= 4.13).
    1: _CgroupFiles(
        limit="memory.limit_in_bytes",
        high=None,
        usage="memory.usage_in_bytes",
        stat="memory.stat",
        inactive_file_key=b"total_inactive_file",
        events="memory.oom_control",
        pressure=None,
    ),
    2: _CgroupFiles(
        limit="memory.max",
        high="memory.high",
        usage="memory.current",
        stat="memory.stat",
        inactive_file_key=b"inactive_file",
        events="memory.events",
        pressure="memory.pressure",
    ),
}
_NO_CGROUP_FILES = _CgroupFiles(None, None, None, None, b"", None, None)


class _Source:
    """An open file re-read from offset 0 on every reading."""

    __slots__ = ("path", "fd")

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd


def locate_memory_cgroup(root: str = "/") -> CgroupLocation | None:
    """Find this process's memory cgroup from <root>/proc/self/{cgroup,mountinfo}; None if it has none.

    cgroup v1 wins when the memory controller is bound there (hybrid hosts); on v2 the cgroup must
    carry memory.current, which the root cgroup and cgroups without the controller lack.
    """
    try:
        memberships = _parse_proc_cgroup(_read_text(os.path.join(root, "proc/self/cgroup")))
        mounts = _parse_mountinfo(_read_text(os.path.join(root, "proc/self/mountinfo")))
    except OSError as exc:
        logger.debug("cannot read cgroup membership under %s: %s", root, exc)
        return None
    v1_path = memberships.get("memory")
    if v1_path is not None:
        v1_mounts = [m for m in mounts if m.fstype == "cgroup" and "memory" in m.super_options]
        return _locate(root, 1, v1_path, v1_mounts)
    v2_path = memberships.get("")
    if v2_path is None:
        logger.debug("no memory cgroup listed in %s/proc/self/cgroup", root)
        return None
    location = _locate(root, 2, v2_path, [m for m in mounts if m.fstype == "cgroup2"])
    if location is not None and not os.path.exists(os.path.join(location.directory, "memory.current")):
        logger.debug("no memory controller in %s (no memory.current)", location.directory)
        return None
    return location


class MemoryProbe:
    """Reads MemoryReading for this process; thread-safe; holds a few file descriptors until close()."""

    root: str
    location: CgroupLocation | None

    def __init__(self, root: str = "/", *, process_limit_bytes: int | None = None) -> None:
        self.root = root
        self.process_limit_bytes = process_limit_bytes
        self._lock = threading.Lock()
        self._fds: list[int] = []
        self._closed = False
        # Closes the descriptors on close() or, failing that, when the probe is collected.
        self._finalizer = weakref.finalize(self, _close_fds, self._fds)
        self._resolve()

    @property
    def process_limit_bytes(self) -> int | None:
        """A limit on this process's RSS (compared with nothing else), or None; at most 2**50 bytes."""
        return self._process_limit_bytes

    @process_limit_bytes.setter
    def process_limit_bytes(self, limit_bytes: int | None) -> None:
        self._process_limit_bytes = validation.integer(
            "process_limit_bytes", limit_bytes, minimum=1, maximum=_MAX_PLAUSIBLE_BYTES, optional=True
        )

    def read(self) -> MemoryReading:
        """Take one reading; re-resolves the sources first if they vanished or the process forked."""
        with self._lock:
            self._ensure_open("read")
            reading = self._read_sources()
            if self._stale:
                logger.debug("memory sources vanished; resolving the cgroup again")
                self._resolve()
                reading = self._read_sources()
            return reading

    def rss_bytes(self) -> int | None:
        """This process's RSS alone (one statm read), for cheap before/after deltas."""
        with self._lock:
            self._ensure_open("rss_bytes")
            return self._read_rss_bytes()

    def close(self) -> None:
        """Release the file descriptors; the probe cannot read afterwards."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> MemoryProbe:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _ensure_open(self, method: str) -> None:
        if self._closed:
            raise ValueError(f"{method}() on a closed MemoryProbe")
        # After fork the inherited /proc/self/statm descriptor still names the parent.
        if self._stale or self._pid != os.getpid():
            self._resolve()

    def _resolve(self) -> None:
        _close_fds(self._fds)
        self._stale = False
        self._pid = os.getpid()
        self._statm = self._open(os.path.join(self.root, "proc/self/statm"))
        self.location = location = locate_memory_cgroup(self.root)
        host_psi_path = os.path.join(self.root, "proc/pressure/memory")
        if location is None:
            names = _NO_CGROUP_FILES
            lineage: tuple[str, ...] = ()
            here = ""
        else:
            names = _CGROUP_FILES[location.version]
            lineage = location.lineage()
            here = location.directory
        self._inactive_file_key = names.inactive_file_key
        self._limits = self._open_each(names.limit, lineage)
        self._highs = self._open_each(names.high, lineage)
        self._usage = self._open_in(here, names.usage)
        self._stat = self._open_in(here, names.stat)
        self._events = self._open_in(here, names.events)
        self._psi = self._open_in(here, names.pressure) or self._open(host_psi_path)

    def _open(self, path: str) -> _Source | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            logger.debug("memory source %s unavailable: %s", path, exc)
            return None
        self._fds.append(fd)
        return _Source(path, fd)

    def _open_in(self, directory: str, name: str | None) -> _Source | None:
        return None if name is None else self._open(os.path.join(directory, name))

    def _open_each(self, name: str | None, directories: Iterable[str]) -> tuple[_Source, ...]:
        opened = (self._open_in(directory, name) for directory in directories)
        return tuple(source for source in opened if source is not None)

    def _read_sources(self) -> MemoryReading:
        rss_bytes = self._read_rss_bytes()
        total_bytes, available_bytes, system_percent = _host_figures(*_system_memory(), rss_bytes=rss_bytes)
        cgroup_limit_bytes = _smallest(self._value(s, _parse_limit_bytes) for s in self._limits)
        cgroup_high_bytes = _smallest(self._value(s, _parse_limit_bytes) for s in self._highs)
        usage_bytes = self._value(self._usage, _parse_count)
        inactive_file_bytes = self._value(self._stat, _parse_keyed, self._inactive_file_key)
        working_set_bytes = (
            None
            if usage_bytes is None or inactive_file_bytes is None
            else max(usage_bytes - inactive_file_bytes, 0)
        )
        process_limit_bytes = self.process_limit_bytes
        usages = limit_usages(
            rss_bytes=rss_bytes,
            process_limit_bytes=process_limit_bytes,
            cgroup_used_bytes=working_set_bytes if working_set_bytes is not None else rss_bytes,
            cgroup_limit_bytes=cgroup_limit_bytes,
            system_total_bytes=total_bytes,
            system_available_bytes=available_bytes,
            system_percent=system_percent,
        )
        limiting = _largest(usages)
        return MemoryReading(
            rss_bytes=rss_bytes,
            system_total_bytes=total_bytes,
            system_available_bytes=available_bytes,
            system_percent=system_percent,
            cgroup_limit_bytes=cgroup_limit_bytes,
            cgroup_high_bytes=cgroup_high_bytes,
            cgroup_usage_bytes=usage_bytes,
            working_set_bytes=working_set_bytes,
            oom_kills=self._value(self._events, _parse_keyed, b"oom_kill"),
            psi_some_avg10=self._value(self._psi, _parse_psi_some_avg10),
            limit_bytes=_smallest((process_limit_bytes, cgroup_limit_bytes, total_bytes)),
            usage_ratio=None if limiting is None else limiting.ratio,
            cgroup_version=None if self.location is None else self.location.version,
            process_limit_bytes=process_limit_bytes,
            usages=usages,
            limiting=limiting,
        )

    def _read_rss_bytes(self) -> int | None:
        rss_bytes = self._value(self._statm, _parse_statm_rss_bytes)
        return _psutil_rss_bytes() if rss_bytes is None else rss_bytes

    def _value(
        self, source: _Source | None, parse: Callable[..., _T], *args: bytes
    ) -> _T | None:
        if source is None:
            return None
        data = self._read_bytes(source)
        if data is None:
            return None
        try:
            return parse(data, *args)
        except ValueError as exc:
            logger.debug("malformed memory source %s (%s): %r", source.path, exc, data[:80])
            return None

    def _read_bytes(self, source: _Source) -> bytes | None:
        try:
            data = os.pread(source.fd, _READ_CHUNK_BYTES, 0)
            while data and len(data) % _READ_CHUNK_BYTES == 0:
                more = os.pread(source.fd, _READ_CHUNK_BYTES, len(data))
                if not more:
                    break
                data += more
        except OSError as exc:
            if exc.errno in _VANISHED_ERRNOS:
                self._stale = True
            logger.debug("cannot read memory source %s: %s", source.path, exc)
            return None
        return data


def read_memory(root: str = "/", *, process_limit_bytes: int | None = None) -> MemoryReading:
    """One reading from a fresh probe (resolves the cgroup each call; keep a MemoryProbe to poll)."""
    with MemoryProbe(root, process_limit_bytes=process_limit_bytes) as probe:
        return probe.read()


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError as exc:
            logger.debug("closing memory source fd %d: %s", fd, exc)
    fds.clear()


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _parse_proc_cgroup(text: str) -> dict[str, str]:
    """Map each v1 controller name, and "" for the v2 hierarchy, to the process's cgroup path."""
    memberships: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3 or not fields[2].startswith("/"):
            continue
        path = fields[2].removesuffix(" (deleted)")
        for controller in fields[1].split(",") if fields[1] else [""]:
            memberships.setdefault(controller, path)
    return memberships


def _parse_mountinfo(text: str) -> list[_Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            separator = fields.index("-", 6)
            mounts.append(
                _Mount(
                    mount_root=_unescape(fields[3]),
                    mount_point=_unescape(fields[4]),
                    fstype=fields[separator + 1],
                    super_options=tuple(fields[separator + 3].split(",")),
                )
            )
        except (ValueError, IndexError):
            continue
    return mounts


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (\\040 for a space, ...)."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def _locate(root: str, version: int, cgroup_path: str, mounts: list[_Mount]) -> CgroupLocation | None:
    """Join the cgroup path onto the mount that shows it, relative to that mount's root.

    A container may see its own cgroup mounted as the hierarchy root: mountinfo then gives the
    container's cgroup as the mount root. The mount with the shortest root shows the most
    ancestors, hence the most limits.
    """
    best: tuple[_Mount, str] | None = None
    for mount in mounts:
        relative = _relative_to(cgroup_path, mount.mount_root)
        if relative is not None and (best is None or len(mount.mount_root) < len(best[0].mount_root)):
            best = (mount, relative)
    if best is None:
        logger.debug("cgroup v%d path %s is outside every mounted hierarchy", version, cgroup_path)
        return None
    mount, relative = best
    mount_directory = os.path.normpath(os.path.join(root, mount.mount_point.lstrip("/")))
    directory = os.path.normpath(os.path.join(mount_directory, relative))
    if not os.path.isdir(directory):
        logger.debug("cgroup v%d directory %s does not exist", version, directory)
        return None
    return CgroupLocation(version=version, directory=directory, mount_directory=mount_directory)


def _relative_to(cgroup_path: str, mount_root: str) -> str | None:
    if mount_root == "/":
        return cgroup_path.lstrip("/")
    if cgroup_path == mount_root or cgroup_path.startswith(mount_root + "/"):
        return cgroup_path[len(mount_root) :].lstrip("/")
    return None


def _parse_count(data: bytes) -> int:
    value = int(data)
    if value < 0:
        raise ValueError(f"negative count {value}")
    return value


def _parse_limit_bytes(data: bytes) -> int | None:
    """A limit in bytes, or None for "max" and the kernel's near-2^63 stand-in for unlimited.

    A limit below our own RSS is kept: the kernel lets memory.max be written below usage (it then
    reclaims or OOM-kills), so such a figure is an emergency to report, not a misread.
    """
    if data.strip() == b"max":
        return None
    value = int(data)
    if value <= 0:
        raise ValueError(f"non-positive limit {value}")
    if value >= _UNLIMITED_FLOOR_BYTES:
        return None
    if value > _MAX_PLAUSIBLE_BYTES:
        raise ValueError(f"implausible limit {value} (above 2**50 bytes)")
    return value


def _parse_keyed(data: bytes, key: bytes) -> int:
    """The value of a "key value" line (memory.stat, memory.events, memory.oom_control)."""
    needle = key + b" "
    if data.startswith(needle):
        start = 0
    else:
        found = data.find(b"\n" + needle)
        if found < 0:
            raise ValueError(f"no {key.decode()} line")
        start = found + 1
    end = data.find(b"\n", start)
    return _parse_count(data[start + len(needle) : end if end >= 0 else len(data)])


def _parse_statm_rss_bytes(data: bytes) -> int:
    fields = data.split()
    if len(fields) < 2:
        raise ValueError("statm has fewer than two fields")
    return _parse_count(fields[1]) * _PAGE_SIZE_BYTES


def _parse_psi_some_avg10(data: bytes) -> float:
    """The "some avg10=" share (percent of wall time stalled on memory over the last 10 s)."""
    for line in data.splitlines():
        if line.startswith(b"some "):
            for field in line.split()[1:]:
                if field.startswith(b"avg10="):
                    value = float(field[6:])
                    if not 0.0 <= value <= 100.0:
                        raise ValueError(f"avg10 {value} outside [0, 100]")
                    return value
    raise ValueError("no 'some avg10=' field")


def _system_memory() -> tuple[object, object, object]:
    """psutil's host total, available and percent used, unchecked; looked up per call so tests can patch it.

    Each field is read on its own: a stub that sets only ``percent`` still yields the percent.
    """
    try:
        memory = psutil.virtual_memory()
    except Exception as exc:  # psutil raises its own errors besides OSError on odd hosts
        logger.debug("psutil.virtual_memory() failed: %s", exc)
        return None, None, None
    return getattr(memory, "total", None), getattr(memory, "available", None), getattr(memory, "percent", None)


def _host_figures(
    total: object, available: object, percent: object, *, rss_bytes: int | None
) -> tuple[int | None, int | None, float | None]:
    """The host's total and available bytes and percent used, each None unless it could be real.

    Our own RSS lives in host memory, so a host total below it (the 1 byte a stub's ``int()``
    gives) is a misread; dividing by it would report pressure at any system usage.
    """
    total_bytes = _plausible_bytes("host total", total, minimum_bytes=max(rss_bytes or 0, 1))
    available_bytes = _plausible_bytes("host available", available, minimum_bytes=0)
    return total_bytes, available_bytes, _plausible_percent("host percent used", percent)


def _plausible_bytes(what: str, value: object, *, minimum_bytes: int) -> int | None:
    """value as whole bytes if it is a number in [minimum_bytes, 2**50]; None (a debug log unless absent) otherwise."""
    if value is None:
        return None
    if (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and minimum_bytes <= value <= _MAX_PLAUSIBLE_BYTES
    ):
        return int(value)
    logger.debug(
        "ignoring implausible %s %r: expected a number of bytes in [%d, 2**50]", what, value, minimum_bytes
    )
    return None


def _plausible_percent(what: str, value: object) -> float | None:
    """value as a float if it is a number in [0, 100]; None (a debug log unless absent) otherwise."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value <= 100.0:
        return float(value)
    logger.debug("ignoring implausible %s %r: expected a percentage in [0, 100]", what, value)
    return None


def _psutil_rss_bytes() -> int | None:
    try:
        return int(psutil.Process().memory_info().rss)
    except Exception as exc:  # same boundary as _system_memory
        logger.debug("psutil.Process().memory_info() failed: %s", exc)
        return None


def _smallest(values: Iterable[int | None]) -> int | None:
    return min((value for value in values if value is not None), default=None)


def limit_usages(
    *,
    rss_bytes: int | None,
    process_limit_bytes: int | None,
    cgroup_used_bytes: int | None,
    cgroup_limit_bytes: int | None,
    system_total_bytes: int | None,
    system_available_bytes: int | None,
    system_percent: float | None,
) -> tuple[LimitUsage, ...]:
    """Each known limit against the memory it bounds, in the order process, cgroup, host.

    The process limit bounds this process alone, so it is compared with our RSS, never with the
    cgroup's working set: other processes and page cache in the same cgroup once put a 197 MiB
    process under pressure at a 700 MiB process limit (issue 11). Host usage is the host's own
    percent used where psutil gives one (it counts what the kernel can reclaim as available),
    else total minus available.
    """
    usages: list[LimitUsage] = []
    if process_limit_bytes is not None and rss_bytes is not None:
        usages.append(LimitUsage("process", rss_bytes, process_limit_bytes, rss_bytes / process_limit_bytes))
    if cgroup_limit_bytes is not None and cgroup_used_bytes is not None:
        cgroup_ratio = cgroup_used_bytes / cgroup_limit_bytes
        usages.append(LimitUsage("cgroup", cgroup_used_bytes, cgroup_limit_bytes, cgroup_ratio))
    if system_percent is not None:
        ratio = system_percent / 100.0
        if system_total_bytes is None:
            usages.append(LimitUsage("system_percent", None, None, ratio))
        else:
            usages.append(LimitUsage("host", round(ratio * system_total_bytes), system_total_bytes, ratio))
    elif system_total_bytes is not None and system_available_bytes is not None:
        used_bytes = max(system_total_bytes - system_available_bytes, 0)
        usages.append(LimitUsage("host", used_bytes, system_total_bytes, used_bytes / system_total_bytes))
    return tuple(usages)


def _largest(usages: Iterable[LimitUsage]) -> LimitUsage | None:
    """The usage with the largest ratio; on a tie the first (process before cgroup before host)."""
    largest: LimitUsage | None = None
    for usage in usages:
        if largest is None or usage.ratio > largest.ratio:
            largest = usage
    return largest
