"""Test helper: a child memory cgroup beneath this process's own, and processes run inside it.

Used by real-cgroup tests (limit detection, soak runs under a memory limit that count OOM kills).
Needs root and a writable cgroup hierarchy; otherwise child_memory_cgroup() raises
CgroupUnavailable with the reason, which tests turn into a skip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto_bot.memory.probe import locate_memory_cgroup

# The shell joins the cgroup, then execs argv: the target runs inside from its first instruction.
_JOIN_THEN_EXEC = 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"'
_REMOVE_ATTEMPTS = 50
_REMOVE_RETRY_SECONDS = 0.02


class CgroupUnavailable(Exception):
    """A child memory cgroup cannot be created here (not root, read-only, no controller...)."""


@dataclass(frozen=True, slots=True)
class CgroupMemoryStats:
    """failcnt: times usage hit the limit (v1 memory.failcnt, v2 memory.events "max");
    peak_bytes: v1 memory.max_usage_in_bytes, v2 memory.peak; None where the kernel lacks it."""

    failcnt: int | None
    oom_kills: int | None
    peak_bytes: int | None


@contextmanager
def child_memory_cgroup(limit_bytes: int) -> Iterator[Path]:
    """A fresh memory cgroup under our own with the given limit; removed (rmdir) on exit."""
    if os.geteuid() != 0:
        raise CgroupUnavailable(f"needs root to create cgroups (euid={os.geteuid()})")
    location = locate_memory_cgroup()
    if location is None:
        raise CgroupUnavailable("this process has no memory cgroup")
    parent = Path(location.directory)
    enabled_controller = location.version == 2 and _enable_memory_controller(parent)
    path = parent / f"crypto_bot_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir()
    except OSError as exc:
        raise CgroupUnavailable(f"cannot create {path}: {exc}") from exc
    try:
        limit_file = "memory.limit_in_bytes" if location.version == 1 else "memory.max"
        try:
            (path / limit_file).write_text(str(limit_bytes))
        except OSError as exc:
            raise CgroupUnavailable(f"cannot write {path / limit_file}: {exc}") from exc
        yield path
    finally:
        _remove(path)
        if enabled_controller:
            # Best effort: another child created meanwhile may still need the controller.
            _write_quietly(parent / "cgroup.subtree_control", "-memory")


def spawn_in_cgroup(cgroup: Path, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen:
    """Start argv inside cgroup (a shell writes its pid to cgroup.procs, then execs argv)."""
    return subprocess.Popen(
        ["/bin/sh", "-c", _JOIN_THEN_EXEC, "sh", str(cgroup), *argv], **popen_kwargs
    )


def read_memory_stats(cgroup: Path) -> CgroupMemoryStats:
    """Limit hits, OOM kills and peak usage of a cgroup (v1 or v2, told apart by its files)."""
    if (cgroup / "memory.failcnt").exists():
        return CgroupMemoryStats(
            failcnt=_read_int(cgroup / "memory.failcnt"),
            oom_kills=_read_keyed(cgroup / "memory.oom_control").get("oom_kill"),
            peak_bytes=_read_int(cgroup / "memory.max_usage_in_bytes"),
        )
    events = _read_keyed(cgroup / "memory.events")
    return CgroupMemoryStats(
        failcnt=events.get("max"),
        oom_kills=events.get("oom_kill"),
        peak_bytes=_read_int(cgroup / "memory.peak"),
    )


def _enable_memory_controller(parent: Path) -> bool:
    """Delegate memory to parent's children; True if we enabled it (and must disable it after)."""
    control = parent / "cgroup.subtree_control"
    try:
        if "memory" in control.read_text().split():
            return False
        control.write_text("+memory")
    except OSError as exc:
        # A v2 cgroup that holds processes may not delegate controllers ("no internal processes").
        raise CgroupUnavailable(f"cannot enable +memory in {control}: {exc}") from exc
    return True


def _remove(path: Path) -> None:
    """rmdir the cgroup, first killing anything the test left running in it (we started it)."""
    for _ in range(_REMOVE_ATTEMPTS):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            for pid in _read_pids(path / "cgroup.procs"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(_REMOVE_RETRY_SECONDS)
    path.rmdir()


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except OSError:
        return []


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _read_keyed(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


def _write_quietly(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError:
        pass
