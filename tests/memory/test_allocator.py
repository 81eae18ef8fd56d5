"""The allocator section and the environment the supervisor starts its child with."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

import pytest

from crypto_bot.memory import allocator
from crypto_bot.memory.allocator import (
    AUTO_ORDER,
    LIBRARIES,
    AllocatorConfig,
    AllocatorNotInstalledError,
    _loadable_here,
    _parse_ldconfig,
    child_environment,
    locate_library,
)
from crypto_bot.memory.config import ConfigError

BASE = {"PATH": "/usr/bin", "HOME": "/root"}


def installed(sonames: Sequence[str]) -> str | None:
    return f"/fake/lib/{sonames[0]}"


def missing(sonames: Sequence[str]) -> str | None:
    return None


def only_mimalloc(sonames: Sequence[str]) -> str | None:
    return f"/fake/lib/{sonames[0]}" if "libmimalloc.so.2" in sonames else None


@pytest.fixture
def preloads_measured_best(monkeypatch: pytest.MonkeyPatch) -> None:
    """An `auto` order that tries the preloaded allocators before glibc (the order a measurement may give)."""
    monkeypatch.setattr(allocator, "AUTO_ORDER", ("jemalloc", "mimalloc", "glibc"))


def environment_for(name: str, environ: dict[str, str] | None = None, find=installed) -> tuple[dict[str, str], str]:
    return child_environment(AllocatorConfig(name=name), BASE if environ is None else environ, find_library=find)


def test_jemalloc_is_preloaded_with_its_malloc_conf() -> None:
    environment, line = environment_for("jemalloc")
    assert environment == {
        **BASE, "LD_PRELOAD": "/fake/lib/libjemalloc.so.2", "MALLOC_CONF": AllocatorConfig().jemalloc_conf
    }
    assert line.startswith("allocator: jemalloc (LD_PRELOAD=/fake/lib/libjemalloc.so.2")


def test_mimalloc_is_preloaded() -> None:
    environment, line = environment_for("mimalloc")
    assert environment == {**BASE, "LD_PRELOAD": "/fake/lib/libmimalloc.so.2"}
    assert line == "allocator: mimalloc (LD_PRELOAD=/fake/lib/libmimalloc.so.2)"


def test_glibc_caps_the_arenas_without_a_preload() -> None:
    environment, line = child_environment(AllocatorConfig(name="glibc", glibc_arena_max=4), BASE, find_library=missing)
    assert environment == {**BASE, "MALLOC_ARENA_MAX": "4"}
    assert line == "allocator: glibc (MALLOC_ARENA_MAX=4)"


def test_auto_takes_the_best_measured_allocator_when_it_is_installed() -> None:
    assert environment_for("auto") == environment_for(AUTO_ORDER[0])


@pytest.mark.usefixtures("preloads_measured_best")
def test_auto_falls_back_to_the_next_installed_and_says_what_it_skipped() -> None:
    environment, line = environment_for("auto", find=only_mimalloc)
    assert environment["LD_PRELOAD"] == "/fake/lib/libmimalloc.so.2"
    assert "allocator.name auto skipped: jemalloc is not installed" in line
    assert "libjemalloc.so.2 not found; Debian package libjemalloc2" in line


@pytest.mark.usefixtures("preloads_measured_best")
def test_auto_without_any_library_ends_on_tuned_glibc() -> None:
    environment, line = environment_for("auto", find=missing)
    assert "LD_PRELOAD" not in environment
    assert environment["MALLOC_ARENA_MAX"] == "2"
    assert line.startswith("allocator: glibc (")
    assert "jemalloc is not installed" in line and "mimalloc is not installed" in line


@pytest.mark.parametrize("name", ["jemalloc", "mimalloc"])
def test_an_explicit_allocator_that_is_missing_raises_naming_the_key(name: str) -> None:
    with pytest.raises(AllocatorNotInstalledError) as raised:
        environment_for(name, find=missing)
    message = str(raised.value)
    assert f"allocator.name='{name}'" in message
    assert LIBRARIES[name].sonames[0] in message and LIBRARIES[name].package in message


def test_a_missing_library_is_an_environment_error() -> None:
    # The CLI maps OSError to exit code 3, which the supervisor does not retry.
    assert issubclass(AllocatorNotInstalledError, OSError)


def test_system_changes_nothing_and_looks_nothing_up() -> None:
    def never(sonames: Sequence[str]) -> str | None:
        raise AssertionError("system must not look up a library")

    environ = {**BASE, "MALLOC_ARENA_MAX": "8"}
    environment, line = environment_for("system", environ, find=never)
    assert environment == environ
    assert "system" in line


def test_variables_the_operator_set_win_and_the_line_names_them() -> None:
    environ = {**BASE, "LD_PRELOAD": "/opt/libtcmalloc.so.4", "MALLOC_CONF": "narenas:1"}
    environment, line = environment_for("jemalloc", environ)
    assert environment == environ
    assert "kept from the environment: LD_PRELOAD=/opt/libtcmalloc.so.4, MALLOC_CONF=narenas:1" in line


def test_only_the_variables_the_operator_set_are_kept() -> None:
    environment, line = environment_for("jemalloc", {**BASE, "MALLOC_CONF": "narenas:4"})
    assert environment["LD_PRELOAD"] == "/fake/lib/libjemalloc.so.2"
    assert environment["MALLOC_CONF"] == "narenas:4"
    assert line == "allocator: jemalloc (LD_PRELOAD=/fake/lib/libjemalloc.so.2); kept from the environment: MALLOC_CONF=narenas:4"


def test_the_given_environment_is_left_as_it_was() -> None:
    environ = dict(BASE)
    environment_for("jemalloc", environ)
    assert environ == BASE


def test_an_unknown_allocator_name_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"allocator\.name='tcmalloc'"):
        AllocatorConfig(name="tcmalloc")


def test_the_loader_cache_is_read_by_soname() -> None:
    output = (
        "3 libs found in cache `/etc/ld.so.cache'\n"
        "\tlibjemalloc.so.2 (libc6,x86-64) => /lib/x86_64-linux-gnu/libjemalloc.so.2\n"
        "\tlibjemalloc.so.2 (libc6) => /lib/i386-linux-gnu/libjemalloc.so.2\n"
        "\tlibc.so.6 (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/x86_64-linux-gnu/libc.so.6\n"
    )
    assert _parse_ldconfig(output) == {
        "libjemalloc.so.2": ["/lib/x86_64-linux-gnu/libjemalloc.so.2", "/lib/i386-linux-gnu/libjemalloc.so.2"],
        "libc.so.6": ["/lib/x86_64-linux-gnu/libc.so.6"],
    }


def test_a_library_of_another_architecture_is_not_preloaded(tmp_path) -> None:
    with open(sys.executable, "rb") as handle:
        header = bytearray(handle.read(64))
    header[18:20] = b"\xff\xff"  # e_machine of no real machine
    foreign = tmp_path / "libforeign.so"
    foreign.write_bytes(bytes(header))
    assert not _loadable_here(str(foreign))
    assert not _loadable_here(str(tmp_path / "absent.so"))


@pytest.mark.parametrize("name", ["jemalloc", "mimalloc"])
def test_a_child_started_with_the_environment_maps_the_library(name: str) -> None:
    if locate_library(LIBRARIES[name].sonames) is None:
        # scripts/_venv.sh installs the package where it runs as root with apt (CI does); elsewhere it warns.
        if os.geteuid() == 0 and shutil.which("apt-get"):
            pytest.fail(f"{name} is not installed although scripts/_venv.sh could have installed it as root")
        pytest.skip(f"{name} is not installed and this user cannot install it: apt-get install {LIBRARIES[name].package}")
    clean = {key: value for key, value in os.environ.items() if key not in ("LD_PRELOAD", "MALLOC_CONF")}
    environment, _ = child_environment(AllocatorConfig(name=name), clean)
    maps = subprocess.run(
        [sys.executable, "-c", "print(open('/proc/self/maps').read())"],
        env=environment, capture_output=True, text=True, check=True,
    ).stdout
    assert f"lib{name}.so" in maps


def test_the_module_loads_without_the_trading_stack() -> None:
    code = "import sys, crypto_bot.memory.allocator; print(sorted({'numpy', 'pandas', 'sklearn'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
