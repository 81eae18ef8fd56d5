"""Which malloc the supervised bot runs on: the `allocator:` section and the child's environment (issue 12, §4).

The same workload's RSS changes with the allocator underneath CPython: glibc's per-thread arenas
and its trim threshold, or jemalloc / mimalloc preloaded with LD_PRELOAD (bench/bench_allocators.py
measures each on the soak; the README has the table). An allocator can only be chosen before a
process starts, so the supervisor builds its child's environment here.

Covers: `AllocatorConfig`, finding a library on this machine (the interpreter's multiarch folders,
then `ldconfig -p`, keeping only a file built for this machine), and `child_environment`, which
returns the child's environment and the one line the supervisor logs. `auto` takes the best
measured allocator that is installed and says which it skipped; a name given explicitly raises
`AllocatorNotInstalledError` when its library is missing. A variable the operator already set
(LD_PRELOAD, MALLOC_CONF, MALLOC_ARENA_MAX, ...) is never overridden, and the line says so.
Not covered: starting the child (crypto_bot/supervisor.py), installing the libraries
(scripts/_packages.sh), handing freed heap back at run time (reclaim.py's malloc_trim).
Stdlib only: the supervisor imports it without the trading stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from .config import ConfigSection, setting

__all__ = [
    "ALLOCATOR_NAMES",
    "AUTO_ORDER",
    "AllocatorConfig",
    "AllocatorNotInstalledError",
    "LIBRARIES",
    "Library",
    "child_environment",
    "locate_library",
]

ALLOCATOR_NAMES = ("auto", "jemalloc", "mimalloc", "glibc", "system")


@dataclass(frozen=True, slots=True)
class Library:
    """A preloadable allocator: the file names it is found by and the Debian package that ships it."""

    sonames: tuple[str, ...]
    package: str


LIBRARIES: dict[str, Library] = {
    "jemalloc": Library(("libjemalloc.so.2",), "libjemalloc2"),
    "mimalloc": Library(("libmimalloc.so.2", "libmimalloc.so.3"), "libmimalloc2.0 (libmimalloc3 after bookworm)"),
}
# `auto` tries these in order, best measured first (bench/bench_allocators.py, README "Allocator"): on
# the soak, steady and with its caches churning, glibc with capped arenas held the least RSS (as
# glibc's defaults did); jemalloc and mimalloc held 19-24 MiB more, PYTHONMALLOC=malloc 5-6 MiB more,
# and no setting's RSS grew after warm-up. glibc needs no library, so `auto` always applies.
AUTO_ORDER: tuple[str, ...] = ("glibc",)


class AllocatorNotInstalledError(FileNotFoundError):
    """allocator.name names an allocator whose library is not on this machine (an environment error)."""


@dataclass(frozen=True)
class AllocatorConfig(ConfigSection):
    """The `allocator:` section: the malloc the supervisor starts the bot's child process on."""

    key_prefix: ClassVar[str] = "allocator."

    name: str = setting(
        "auto",
        "auto (the best measured that is installed), jemalloc, mimalloc, glibc (tuned) or system (change nothing)",
        str,
        choices=ALLOCATOR_NAMES,
    )
    glibc_arena_max: int = setting(
        2, "MALLOC_ARENA_MAX with glibc: the bot's few threads share this many malloc arenas", int, minimum=1
    )
    # One arena held 2-5 MiB less steady RSS than jemalloc's defaults on the soak; dirty_decay_ms:0
    # returned a few MiB more but made cycles 3x slower (madvise on every free).
    jemalloc_conf: str = setting(
        "narenas:1,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0",
        "MALLOC_CONF with jemalloc: one arena; a background thread returns pages freed over 1 s ago",
        str,
    )


def child_environment(
    config: AllocatorConfig,
    environ: Mapping[str, str],
    *,
    find_library: Callable[[Sequence[str]], str | None] | None = None,
) -> tuple[dict[str, str], str]:
    """The environment to start the bot's child with, and one line for the log saying what it runs on.

    `environ` is the supervisor's own (os.environ); its variables win over the allocator's. With
    `auto` a missing library falls back along AUTO_ORDER; a missing explicit one raises
    AllocatorNotInstalledError. `find_library` (default `locate_library`) is replaced by tests.
    """
    find = find_library or locate_library
    environment = dict(environ)
    if config.name == "system":
        return environment, "allocator: system (allocator.name: system; the environment is passed on unchanged)"
    skipped: list[str] = []
    for name in AUTO_ORDER if config.name == "auto" else (config.name,):
        variables = _variables(name, config, find)
        if variables is not None:
            break
        library = LIBRARIES[name]
        missing = f"{name} is not installed ({' or '.join(library.sonames)} not found; Debian package {library.package})"
        if config.name != "auto":
            raise AllocatorNotInstalledError(
                f"allocator.name={name!r}, but {missing}: install it, or set allocator.name to auto or system"
            )
        skipped.append(missing)
    kept = {key: environ[key] for key in variables if key in environ}
    environment.update((key, value) for key, value in variables.items() if key not in kept)
    applied = ", ".join(f"{key}={value}" for key, value in variables.items() if key not in kept) or "nothing"
    line = f"allocator: {name} ({applied})"
    if skipped:
        line += f"; allocator.name auto skipped: {'; '.join(skipped)}"
    if kept:
        line += f"; kept from the environment: {', '.join(f'{key}={value}' for key, value in kept.items())}"
    return environment, line


def _variables(
    name: str, config: AllocatorConfig, find: Callable[[Sequence[str]], str | None]
) -> dict[str, str] | None:
    """The variables that select and tune allocator `name`; None when its library is not installed."""
    if name == "glibc":
        # No MALLOC_TRIM_THRESHOLD_: setting it also fixes the mmap threshold at 128 KiB, so every
        # large numpy buffer is mmapped and unmapped; the soak ran 2.5x slower for no less RSS.
        return {"MALLOC_ARENA_MAX": str(config.glibc_arena_max)}
    path = find(LIBRARIES[name].sonames)
    if path is None:
        return None
    if name == "jemalloc":
        return {"LD_PRELOAD": path, "MALLOC_CONF": config.jemalloc_conf}
    return {"LD_PRELOAD": path}


def locate_library(sonames: Sequence[str]) -> str | None:
    """The path of the first of `sonames` installed for this machine's architecture, or None.

    Looks in the interpreter's multiarch folders (Debian's /usr/lib/x86_64-linux-gnu) and the usual
    library folders first, then asks `ldconfig -p`; a file built for another architecture (an i386
    multiarch copy) is skipped, since the loader would ignore it with a warning.
    """
    for soname in sonames:
        for folder in _library_folders():
            path = os.path.join(folder, soname)
            if _loadable_here(path):
                return path
    cached = _ldconfig_paths()
    for soname in sonames:
        for path in cached.get(soname, ()):
            if _loadable_here(path):
                return path
    return None


def _library_folders() -> list[str]:
    multiarch = sysconfig.get_config_var("MULTIARCH") or getattr(sys.implementation, "_multiarch", "")
    folders = [f"/usr/lib/{multiarch}", f"/lib/{multiarch}"] if multiarch else []
    return folders + ["/usr/lib64", "/lib64", "/usr/lib", "/usr/local/lib"]


def _ldconfig_paths() -> dict[str, list[str]]:
    """soname -> paths, from the loader cache (`ldconfig -p`); empty when there is no ldconfig."""
    ldconfig = shutil.which("ldconfig") or next(
        (path for path in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(path, os.X_OK)), None
    )
    if ldconfig is None:
        return {}
    try:
        output = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return _parse_ldconfig(output)


def _parse_ldconfig(output: str) -> dict[str, list[str]]:
    """`\\tlibjemalloc.so.2 (libc6,x86-64) => /lib/x86_64-linux-gnu/libjemalloc.so.2` lines, by soname."""
    paths: dict[str, list[str]] = {}
    for line in output.splitlines():
        name, arrow, path = line.strip().partition(" => ")
        if arrow:
            paths.setdefault(name.split(" (", 1)[0], []).append(path.strip())
    return paths


def _loadable_here(path: str) -> bool:
    """`path` is an ELF file of the running interpreter's class, byte order and machine."""
    machine = _elf_machine(path)
    return machine is not None and machine == _elf_machine(sys.executable)


def _elf_machine(path: str) -> bytes | None:
    """The ELF class, byte order and e_machine of `path`; None for a file that is not ELF."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return header[4:6] + header[18:20]
