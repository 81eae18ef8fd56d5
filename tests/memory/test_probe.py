"""MemoryProbe on fixture trees of cgroup v1 and v2 files, plus the real machine."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import MagicMock

import psutil
import pytest

from crypto_bot.memory.probe import LimitUsage, MemoryProbe, MemoryReading, locate_memory_cgroup, read_memory
from tests.cgroup_util import CgroupUnavailable, child_memory_cgroup

GIB = 1024**3
MIB = 1024**2
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
HOST_TOTAL_BYTES = 64 * GIB
UNLIMITED_V1 = "9223372036854771712"

V1_MOUNT = "35 31 0:32 {root} /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
V2_MOUNT = "41 31 0:38 {root} /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
OTHER_MOUNTS = (
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
)
PSI_TEXT = (
    "some avg10={avg10} avg60=0.50 avg300=0.10 total=12345\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
)
V1_STAT = "cache 4096\nrss 8192\ninactive_file 1\ntotal_cache 4096\ntotal_inactive_file {inactive}\n"
V2_STAT = "anon 8192\nfile 4096\ntotal_inactive_file 1\ninactive_file {inactive}\nactive_file 0\n"


def write_files(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def v1_tree(
    root: Path,
    *,
    cgroup: str = "/bots/alpha",
    mount_root: str = "/",
    limits: dict[str, str] | None = None,
    usage_bytes: int = 600 * MIB,
    inactive_file_bytes: int = 100 * MIB,
    oom_kills: int = 2,
) -> Path:
    """A v1 host: memory controller at /sys/fs/cgroup/memory, our cgroup nested under it.

    limits maps a cgroup path (as seen inside the mount) to memory.limit_in_bytes.
    Returns the directory of our own cgroup.
    """
    mount = root / "sys/fs/cgroup/memory"
    own = mount / _inside(cgroup, mount_root)
    files = {
        "proc/self/cgroup": f"5:cpu,cpuacct:/\n4:memory:{cgroup}\n0::/\n",
        "proc/self/mountinfo": OTHER_MOUNTS + V1_MOUNT.format(root=mount_root),
        "proc/self/statm": "5000 2500 300 1 0 2000 0\n",
        "proc/pressure/memory": PSI_TEXT.format(avg10="1.25"),
    }
    for path, limit in (limits or {"/": UNLIMITED_V1, "/bots": UNLIMITED_V1, cgroup: str(GIB)}).items():
        files[str((mount / _inside(path, mount_root) / "memory.limit_in_bytes").relative_to(root))] = limit
    own_files = {
        "memory.usage_in_bytes": str(usage_bytes),
        "memory.stat": V1_STAT.format(inactive=inactive_file_bytes),
        "memory.oom_control": f"oom_kill_disable 0\nunder_oom 0\noom_kill {oom_kills}\n",
        "memory.failcnt": "7\n",
    }
    files.update({str((own / name).relative_to(root)): text for name, text in own_files.items()})
    write_files(root, files)
    return own


def v2_tree(
    root: Path,
    *,
    cgroup: str = "/bots/alpha",
    maxes: dict[str, str] | None = None,
    highs: dict[str, str] | None = None,
    usage_bytes: int = 600 * MIB,
    inactive_file_bytes: int = 100 * MIB,
    oom_kills: int = 3,
    psi_avg10: str = "4.50",
) -> Path:
    """A v2 host: unified hierarchy at /sys/fs/cgroup; returns our own cgroup's directory."""
    mount = root / "sys/fs/cgroup"
    own = mount / cgroup.lstrip("/")
    files = {
        "proc/self/cgroup": f"0::{cgroup}\n",
        "proc/self/mountinfo": OTHER_MOUNTS + V2_MOUNT.format(root="/"),
        "proc/self/statm": "5000 2500 300 1 0 2000 0\n",
        "proc/pressure/memory": PSI_TEXT.format(avg10="9.99"),
        "sys/fs/cgroup/cgroup.controllers": "cpu io memory pids\n",
    }
    for name, per_path in (
        ("memory.max", maxes or {"/bots": "max", cgroup: str(GIB)}),
        ("memory.high", highs or {"/bots": "max", cgroup: "max"}),
    ):
        for path, value in per_path.items():
            files[str((mount / path.lstrip("/") / name).relative_to(root))] = value
    own_files = {
        "memory.current": str(usage_bytes),
        "memory.stat": V2_STAT.format(inactive=inactive_file_bytes),
        "memory.events": f"low 0\nhigh 4\nmax 5\noom 1\noom_kill {oom_kills}\n",
        "memory.pressure": PSI_TEXT.format(avg10=psi_avg10),
    }
    files.update({str((own / name).relative_to(root)): text for name, text in own_files.items()})
    write_files(root, files)
    return own


def _inside(cgroup_path: str, mount_root: str) -> str:
    """A cgroup path relative to the mount that shows it (as a container sees it)."""
    return os.path.relpath(cgroup_path, mount_root)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """psutil.virtual_memory() patched to a 64 GiB host at 10 % use; tests adjust the fields."""
    memory = SimpleNamespace(total=HOST_TOTAL_BYTES, available=HOST_TOTAL_BYTES * 9 // 10, percent=10.0)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory)
    return memory


def read(root: Path, **kwargs: int) -> MemoryReading:
    return read_memory(str(root), **kwargs)


# cgroup v1


def test_v1_reads_own_nested_cgroup(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path)
    reading = read(tmp_path)
    assert (reading.cgroup_version, reading.cgroup_limit_bytes, reading.cgroup_usage_bytes) == (
        1,
        GIB,
        600 * MIB,
    )


def test_v1_working_set_is_usage_minus_total_inactive_file(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path, usage_bytes=600 * MIB, inactive_file_bytes=100 * MIB)
    assert read(tmp_path).working_set_bytes == 500 * MIB


def test_v1_oom_kills_come_from_oom_control(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path, oom_kills=4)
    assert read(tmp_path).oom_kills == 4


def test_v1_parent_with_smaller_limit_wins(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path, limits={"/": UNLIMITED_V1, "/bots": str(512 * MIB), "/bots/alpha": str(GIB)})
    assert read(tmp_path).cgroup_limit_bytes == 512 * MIB


def test_v1_near_2_pow_63_means_unlimited(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path, limits={"/": UNLIMITED_V1, "/bots": UNLIMITED_V1, "/bots/alpha": UNLIMITED_V1})
    reading = read(tmp_path)
    assert (reading.cgroup_limit_bytes, reading.limit_bytes) == (None, HOST_TOTAL_BYTES)


def test_v1_high_mark_is_none(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path)
    assert read(tmp_path).cgroup_high_bytes is None


def test_v1_psi_comes_from_proc_pressure(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path)
    assert read(tmp_path).psi_some_avg10 == 1.25


def test_container_view_reads_cgroup_mounted_at_its_own_root(tmp_path: Path, host: SimpleNamespace) -> None:
    own = v1_tree(
        tmp_path,
        cgroup="/docker/abc",
        mount_root="/docker/abc",
        limits={"/docker/abc": str(2 * GIB)},
    )
    assert own == tmp_path / "sys/fs/cgroup/memory"
    assert read(tmp_path).cgroup_limit_bytes == 2 * GIB


def test_container_view_walks_up_to_the_mount_root_only(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(
        tmp_path,
        cgroup="/docker/abc/worker",
        mount_root="/docker/abc",
        limits={"/docker/abc": str(2 * GIB), "/docker/abc/worker": str(3 * GIB)},
    )
    assert read(tmp_path).cgroup_limit_bytes == 2 * GIB


def test_mount_showing_most_ancestors_is_used(tmp_path: Path, host: SimpleNamespace) -> None:
    write_files(
        tmp_path,
        {
            "proc/self/cgroup": "4:memory:/a/b/c\n",
            "proc/self/mountinfo": (
                "36 31 0:32 /a/b /mnt/inner rw - cgroup cgroup rw,memory\n" + V1_MOUNT.format(root="/")
            ),
            "mnt/inner/memory.limit_in_bytes": UNLIMITED_V1,
            "mnt/inner/c/memory.limit_in_bytes": str(GIB),
            "sys/fs/cgroup/memory/a/memory.limit_in_bytes": str(256 * MIB),
            "sys/fs/cgroup/memory/a/b/memory.limit_in_bytes": UNLIMITED_V1,
            "sys/fs/cgroup/memory/a/b/c/memory.limit_in_bytes": str(GIB),
        },
    )
    assert read(tmp_path).cgroup_limit_bytes == 256 * MIB


def test_cgroup_outside_every_mount_is_no_cgroup(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path, cgroup="/docker/abc", mount_root="/docker/abc")
    write_files(tmp_path, {"proc/self/cgroup": "4:memory:/elsewhere\n"})
    reading = read(tmp_path)
    assert (reading.cgroup_version, reading.cgroup_limit_bytes, reading.cgroup_usage_bytes) == (None, None, None)


def test_hybrid_host_uses_v1_memory_controller(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path)
    unified = "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    with (tmp_path / "proc/self/mountinfo").open("a") as mountinfo:
        mountinfo.write(unified)
    write_files(tmp_path, {"sys/fs/cgroup/unified/memory.pressure": PSI_TEXT.format(avg10="50.00")})
    reading = read(tmp_path)
    assert (reading.cgroup_version, reading.cgroup_limit_bytes) == (1, GIB)


def test_mountinfo_octal_escapes_are_decoded(tmp_path: Path, host: SimpleNamespace) -> None:
    write_files(
        tmp_path,
        {
            "proc/self/cgroup": "4:memory:/bots\n",
            "proc/self/mountinfo": "35 31 0:32 / /cg\\040mem rw - cgroup cgroup rw,memory\n",
            "cg mem/bots/memory.limit_in_bytes": str(GIB),
        },
    )
    assert read(tmp_path).cgroup_limit_bytes == GIB


# cgroup v2


def test_v2_reads_own_nested_cgroup(tmp_path: Path, host: SimpleNamespace) -> None:
    v2_tree(tmp_path)
    reading = read(tmp_path)
    assert (reading.cgroup_version, reading.cgroup_limit_bytes, reading.working_set_bytes) == (
        2,
        GIB,
        500 * MIB,
    )


def test_v2_max_means_unlimited(tmp_path: Path, host: SimpleNamespace) -> None:
    v2_tree(tmp_path, maxes={"/bots": "max", "/bots/alpha": "max"})
    reading = read(tmp_path)
    assert (reading.cgroup_limit_bytes, reading.limit_bytes) == (None, HOST_TOTAL_BYTES)


def test_v2_parent_with_smaller_max_wins(tmp_path: Path, host: SimpleNamespace) -> None:
    v2_tree(tmp_path, maxes={"/bots": str(256 * MIB), "/bots/alpha": str(GIB)})
    assert read(tmp_path).cgroup_limit_bytes == 256 * MIB


def test_v2_high_is_smallest_on_the_path(tmp_path: Path, host: SimpleNamespace) -> None:
    v2_tree(tmp_path, highs={"/bots": str(700 * MIB), "/bots/alpha": str(900 * MIB)})
    assert read(tmp_path).cgroup_high_bytes == 700 * MIB


def test_v2_oom_kills_come_from_memory_events(tmp_path: Path, host: SimpleNamespace) -> None:
    v2_tree(tmp_path, oom_kills=6)
    assert read(tmp_path).oom_kills == 6


def test_v2_psi_comes_from_cgroup_memory_pressure(tmp_path: Path, host: SimpleNamespace) -> None:
    v2_tree(tmp_path, psi_avg10="4.50")
    assert read(tmp_path).psi_some_avg10 == 4.5


def test_v2_psi_falls_back_to_proc_pressure(tmp_path: Path, host: SimpleNamespace) -> None:
    own = v2_tree(tmp_path)
    (own / "memory.pressure").unlink()
    assert read(tmp_path).psi_some_avg10 == 9.99


def test_v2_cgroup_without_memory_controller_is_no_cgroup(tmp_path: Path, host: SimpleNamespace) -> None:
    own = v2_tree(tmp_path)
    (own / "memory.current").unlink()
    assert read(tmp_path).cgroup_version is None


# degradation


@pytest.mark.parametrize(
    ("file_name", "field"),
    [
        ("memory.max", "cgroup_limit_bytes"),
        ("memory.high", "cgroup_high_bytes"),
        ("memory.stat", "working_set_bytes"),
        ("memory.events", "oom_kills"),
    ],
)
def test_v2_missing_file_leaves_its_field_none(
    tmp_path: Path, host: SimpleNamespace, file_name: str, field: str
) -> None:
    own = v2_tree(tmp_path, maxes={"/bots/alpha": str(GIB)}, highs={"/bots/alpha": str(GIB)})
    (own / file_name).unlink()
    reading = read(tmp_path)
    assert getattr(reading, field) is None
    assert reading.cgroup_usage_bytes == 600 * MIB


@pytest.mark.parametrize(
    ("file_name", "garbage", "field"),
    [
        ("memory.limit_in_bytes", "lots\n", "cgroup_limit_bytes"),
        ("memory.limit_in_bytes", "-5\n", "cgroup_limit_bytes"),
        ("memory.usage_in_bytes", "", "cgroup_usage_bytes"),
        ("memory.usage_in_bytes", "12 MiB\n", "cgroup_usage_bytes"),
        ("memory.stat", "total_inactive_file many\n", "working_set_bytes"),
        ("memory.stat", "cache 1\n", "working_set_bytes"),
        ("memory.oom_control", "oom_kill\n", "oom_kills"),
        ("memory.oom_control", "\x00\xff\xfe", "oom_kills"),
    ],
)
def test_v1_garbage_leaves_its_field_none(
    tmp_path: Path, host: SimpleNamespace, file_name: str, garbage: str, field: str
) -> None:
    own = v1_tree(tmp_path, limits={"/bots/alpha": str(GIB)})
    (own / file_name).write_text(garbage)
    assert getattr(read(tmp_path), field) is None


@pytest.mark.parametrize(
    "garbage",
    ["", "full avg10=1.00\n", "some avg10=lots\n", "some avg10=250.0 avg60=0\n", "some avg60=1.0\n"],
)
def test_garbage_psi_is_none(tmp_path: Path, host: SimpleNamespace, garbage: str) -> None:
    v1_tree(tmp_path)
    write_files(tmp_path, {"proc/pressure/memory": garbage})
    assert read(tmp_path).psi_some_avg10 is None


def test_malformed_source_is_logged_at_debug(
    tmp_path: Path, host: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    own = v1_tree(tmp_path)
    (own / "memory.usage_in_bytes").write_text("junk\n")
    with caplog.at_level(logging.DEBUG, logger="crypto_bot.memory.probe"):
        read(tmp_path)
    assert any("memory.usage_in_bytes" in record.getMessage() for record in caplog.records)


def test_unreadable_source_leaves_its_field_none(tmp_path: Path, host: SimpleNamespace) -> None:
    own = v1_tree(tmp_path)
    (own / "memory.stat").unlink()
    (own / "memory.stat").mkdir()  # opens, but every read fails with EISDIR
    reading = read(tmp_path)
    assert (reading.working_set_bytes, reading.cgroup_usage_bytes) == (None, 600 * MIB)


def test_garbage_mountinfo_and_cgroup_files_mean_no_cgroup(tmp_path: Path, host: SimpleNamespace) -> None:
    write_files(
        tmp_path,
        {"proc/self/cgroup": "memory\n::\n4:memory:relative\n", "proc/self/mountinfo": "35 31 -\n\n"},
    )
    assert read(tmp_path).cgroup_version is None


def test_empty_root_degrades_every_file_source(tmp_path: Path, host: SimpleNamespace) -> None:
    reading = read(tmp_path)
    assert (reading.cgroup_version, reading.cgroup_usage_bytes, reading.psi_some_avg10) == (None, None, None)


def test_failing_virtual_memory_leaves_system_fields_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise RuntimeError("no /proc/meminfo")

    monkeypatch.setattr(psutil, "virtual_memory", broken)
    v1_tree(tmp_path)
    reading = read(tmp_path)
    assert (reading.system_total_bytes, reading.system_percent, reading.limit_bytes) == (None, None, GIB)


# process figures, effective limit and ratio


def test_rss_comes_from_statm_pages(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path)
    assert read(tmp_path).rss_bytes == 2500 * PAGE_BYTES


def test_rss_falls_back_to_psutil_without_statm(
    tmp_path: Path, host: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FakeProcess:
        def memory_info(self) -> SimpleNamespace:
            return SimpleNamespace(rss=12345)

    monkeypatch.setattr(psutil, "Process", FakeProcess)
    v1_tree(tmp_path)
    (tmp_path / "proc/self/statm").unlink()
    assert read(tmp_path).rss_bytes == 12345


def test_process_limit_below_cgroup_limit_is_effective(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path)
    assert read(tmp_path, process_limit_bytes=800 * MIB).limit_bytes == 800 * MIB


def test_host_total_below_cgroup_limit_is_effective(tmp_path: Path, host: SimpleNamespace) -> None:
    host.total = 768 * MIB
    v1_tree(tmp_path)
    assert read(tmp_path).limit_bytes == 768 * MIB


def test_usage_ratio_is_working_set_over_limit_when_higher(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path, usage_bytes=612 * MIB, inactive_file_bytes=100 * MIB)
    assert read(tmp_path).usage_ratio == 0.5


def test_usage_ratio_is_system_percent_when_higher(tmp_path: Path, host: SimpleNamespace) -> None:
    host.percent = 75.0
    v1_tree(tmp_path, usage_bytes=612 * MIB, inactive_file_bytes=100 * MIB)
    assert read(tmp_path).usage_ratio == 0.75


def test_usage_ratio_uses_rss_without_cgroup(tmp_path: Path, host: SimpleNamespace) -> None:
    host.percent = 0.0
    write_files(tmp_path, {"proc/self/statm": "0 256 0 0 0 0 0\n"})
    expected = 256 * PAGE_BYTES / (GIB // 2)
    assert read(tmp_path, process_limit_bytes=GIB // 2).usage_ratio == expected


# each limit against the memory it bounds (issue 11, section 6)


def rss_pages(size_bytes: int) -> str:
    """A statm line whose resident field is size_bytes (rounded down to pages)."""
    return f"90000 {size_bytes // PAGE_BYTES} 300 1 0 2000 0\n"


def test_process_limit_is_compared_with_rss_not_the_cgroups_working_set(tmp_path: Path, host: SimpleNamespace) -> None:
    # The reported case: a 197 MiB process under pressure at a 700 MiB process limit, because other
    # processes and page cache in its cgroup (650 MiB working set) were counted against it.
    v1_tree(tmp_path, usage_bytes=750 * MIB, inactive_file_bytes=100 * MIB, limits={"/bots/alpha": str(4 * GIB)})
    write_files(tmp_path, {"proc/self/statm": rss_pages(197 * MIB)})
    reading = read(tmp_path, process_limit_bytes=700 * MIB)
    assert reading.usage("process") == LimitUsage("process", 197 * MIB, 700 * MIB, 197 / 700)
    assert reading.limiting == reading.usage("process") and reading.usage_ratio == 197 / 700


def test_cgroup_limit_is_compared_with_the_cgroups_working_set(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path, usage_bytes=1000 * MIB, inactive_file_bytes=100 * MIB)
    write_files(tmp_path, {"proc/self/statm": rss_pages(200 * MIB)})
    reading = read(tmp_path, process_limit_bytes=700 * MIB)
    assert reading.usage("cgroup") == LimitUsage("cgroup", 900 * MIB, GIB, 900 / 1024)
    assert reading.limiting == reading.usage("cgroup") and reading.usage_ratio == 900 / 1024


def test_host_total_is_compared_with_host_usage(tmp_path: Path, host: SimpleNamespace) -> None:
    host.percent = 85.0
    v1_tree(tmp_path)
    reading = read(tmp_path, process_limit_bytes=700 * MIB)
    expected = LimitUsage("host", round(0.85 * HOST_TOTAL_BYTES), HOST_TOTAL_BYTES, 0.85)
    assert (reading.usage("host"), reading.limiting, reading.usage_ratio) == (expected, expected, 0.85)


def test_host_usage_is_total_minus_available_without_a_percent(tmp_path: Path, host: SimpleNamespace) -> None:
    host.percent, host.available = None, HOST_TOTAL_BYTES // 4
    no_cgroup_limit(tmp_path)
    usage = read(tmp_path).usage("host")
    assert usage == LimitUsage("host", HOST_TOTAL_BYTES * 3 // 4, HOST_TOTAL_BYTES, 0.75)


def test_reading_lists_every_known_limit_in_order(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path)
    reading = read(tmp_path, process_limit_bytes=700 * MIB)
    assert [usage.source for usage in reading.usages] == ["process", "cgroup", "host"]
    assert reading.process_limit_bytes == 700 * MIB


def test_no_process_limit_means_no_process_usage(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path)
    reading = read(tmp_path)
    assert (reading.usage("process"), reading.process_limit_bytes) == (None, None)


def test_unlimited_cgroup_has_no_cgroup_usage(tmp_path: Path, host: SimpleNamespace) -> None:
    no_cgroup_limit(tmp_path)
    assert read(tmp_path).usage("cgroup") is None


def test_cgroup_usage_falls_back_to_rss_without_memory_stat(tmp_path: Path, host: SimpleNamespace) -> None:
    own = v1_tree(tmp_path)
    (own / "memory.stat").unlink()
    reading = read(tmp_path)
    assert reading.usage("cgroup") == LimitUsage("cgroup", 2500 * PAGE_BYTES, GIB, 2500 * PAGE_BYTES / GIB)


def test_system_percent_without_a_host_total_is_its_own_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(percent=50.0))
    no_cgroup_limit(tmp_path)
    reading = read(tmp_path)
    assert reading.limiting == LimitUsage("system_percent", None, None, 0.5)


def test_equal_ratios_name_the_process_limit(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path, usage_bytes=612 * MIB, inactive_file_bytes=100 * MIB)  # cgroup: 512 MiB of 1 GiB
    write_files(tmp_path, {"proc/self/statm": rss_pages(256 * MIB)})
    reading = read(tmp_path, process_limit_bytes=512 * MIB)
    assert (reading.limiting.source, reading.usage_ratio) == ("process", 0.5)


def test_without_any_limit_or_percent_nothing_is_limiting(tmp_path: Path, host: SimpleNamespace) -> None:
    host.total, host.percent = 1, 250.0
    no_cgroup_limit(tmp_path)
    reading = read(tmp_path)
    assert (reading.usages, reading.limiting, reading.usage_ratio) == ((), None, None)


def test_real_process_limit_is_compared_with_the_real_rss() -> None:
    reading = read_memory(process_limit_bytes=MIB)
    assert reading.limiting is not None and reading.limiting.source == "process"
    assert reading.usage_ratio == reading.rss_bytes / MIB


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1G", 2**50 + 1])
def test_invalid_process_limit_is_rejected(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="process_limit_bytes must be an integer"):
        MemoryProbe(str(tmp_path), process_limit_bytes=bad)  # type: ignore[arg-type]


def test_process_limit_set_at_run_time_is_checked_too(tmp_path: Path) -> None:
    with MemoryProbe(str(tmp_path)) as probe:
        with pytest.raises(ValueError, match="process_limit_bytes"):
            probe.process_limit_bytes = 0
        probe.process_limit_bytes = GIB
        assert probe.process_limit_bytes == GIB


# implausible figures


def no_cgroup_limit(root: Path) -> Path:
    """A v2 tree whose cgroups set no limit: only the host's figures can bound us."""
    return v2_tree(root, maxes={"/bots": "max", "/bots/alpha": "max"})


def test_stub_with_only_percent_decides_by_system_percent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(percent=50.0))
    no_cgroup_limit(tmp_path)
    reading = read(tmp_path)
    assert (reading.system_total_bytes, reading.limit_bytes, reading.usage_ratio) == (None, None, 0.5)


def test_mock_whose_total_converts_to_one_byte_is_not_a_one_byte_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = MagicMock(percent=50.0)
    assert int(stub.total) == 1  # what the probe used to divide the working set by
    monkeypatch.setattr(psutil, "virtual_memory", lambda: stub)
    no_cgroup_limit(tmp_path)
    reading = read(tmp_path)
    assert (reading.system_total_bytes, reading.limit_bytes, reading.usage_ratio) == (None, None, 0.5)


@pytest.mark.parametrize(
    "total",
    [1, 2500 * PAGE_BYTES - 1, 0, -HOST_TOTAL_BYTES, 2**50 + 1, float("nan"), float("inf"), "64G", True],
    ids=["one-byte", "below-own-rss", "zero", "negative", "above-2**50", "nan", "inf", "text", "bool"],
)
def test_implausible_host_total_is_never_a_limit(
    tmp_path: Path, host: SimpleNamespace, total: object
) -> None:
    host.total, host.percent = total, 30.0
    no_cgroup_limit(tmp_path)
    reading = read(tmp_path)
    assert (reading.system_total_bytes, reading.limit_bytes, reading.usage_ratio) == (None, None, 0.3)


def test_host_total_equal_to_own_rss_is_plausible(tmp_path: Path, host: SimpleNamespace) -> None:
    host.total = 2500 * PAGE_BYTES
    no_cgroup_limit(tmp_path)
    assert read(tmp_path).limit_bytes == 2500 * PAGE_BYTES


def test_implausible_host_total_leaves_the_cgroup_limit_in_charge(
    tmp_path: Path, host: SimpleNamespace
) -> None:
    host.total = 1
    v2_tree(tmp_path, maxes={"/bots/alpha": str(GIB)})
    assert read(tmp_path).limit_bytes == GIB


def test_discarded_host_figure_is_named_in_a_debug_log(
    tmp_path: Path, host: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    host.total = 12345
    no_cgroup_limit(tmp_path)
    with caplog.at_level(logging.DEBUG, logger="crypto_bot.memory.probe"):
        read(tmp_path)
    assert any("host total 12345" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("percent", [-1.0, 100.5, float("nan"), "50", None])
def test_implausible_system_percent_is_ignored(tmp_path: Path, host: SimpleNamespace, percent: object) -> None:
    host.percent = percent
    v1_tree(tmp_path, usage_bytes=612 * MIB, inactive_file_bytes=100 * MIB)
    reading = read(tmp_path)
    assert (reading.system_percent, reading.usage_ratio) == (None, 0.5)


def test_no_limit_and_no_sane_percent_gives_no_usage_ratio(tmp_path: Path, host: SimpleNamespace) -> None:
    host.total, host.percent = 1, 250.0
    no_cgroup_limit(tmp_path)
    assert read(tmp_path).usage_ratio is None


@pytest.mark.parametrize("available", [-1, 2**50 + 1, "lots"])
def test_implausible_host_available_is_none(tmp_path: Path, host: SimpleNamespace, available: object) -> None:
    host.available = available
    v1_tree(tmp_path)
    assert read(tmp_path).system_available_bytes is None


def test_cgroup_limit_above_2_pow_50_is_discarded_and_logged(
    tmp_path: Path, host: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    absurd = 2**55
    v2_tree(tmp_path, maxes={"/bots": "max", "/bots/alpha": str(absurd)})
    with caplog.at_level(logging.DEBUG, logger="crypto_bot.memory.probe"):
        reading = read(tmp_path)
    assert (reading.cgroup_limit_bytes, reading.limit_bytes) == (None, HOST_TOTAL_BYTES)
    assert any(str(absurd) in record.getMessage() for record in caplog.records)


def test_cgroup_limit_below_own_rss_is_kept(tmp_path: Path, host: SimpleNamespace) -> None:
    """memory.max may be written below usage; such a limit is an emergency to report, not a misread."""
    v2_tree(tmp_path, maxes={"/bots/alpha": str(PAGE_BYTES)})
    assert read(tmp_path).cgroup_limit_bytes == PAGE_BYTES


# probe lifecycle


def test_probe_rereads_changed_values(tmp_path: Path, host: SimpleNamespace) -> None:
    own = v1_tree(tmp_path, usage_bytes=600 * MIB)
    with MemoryProbe(str(tmp_path)) as probe:
        probe.read()
        (own / "memory.usage_in_bytes").write_text(str(700 * MIB))
        assert probe.read().cgroup_usage_bytes == 700 * MIB


def test_closed_probe_releases_its_descriptors(tmp_path: Path, host: SimpleNamespace) -> None:
    v2_tree(tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    probe = MemoryProbe(str(tmp_path))
    opened = len(os.listdir("/proc/self/fd"))
    probe.close()
    assert (opened > before, len(os.listdir("/proc/self/fd"))) == (True, before)


def test_closed_probe_refuses_to_read(tmp_path: Path, host: SimpleNamespace) -> None:
    probe = MemoryProbe(str(tmp_path))
    probe.close()
    with pytest.raises(ValueError, match="closed"):
        probe.read()


def test_real_machine_reading_has_process_and_host_figures() -> None:
    location = locate_memory_cgroup()
    reading = read_memory()
    assert reading.rss_bytes is not None and reading.rss_bytes > 0
    assert reading.limit_bytes is not None and 0 < reading.usage_ratio <= 1.5
    assert reading.cgroup_version == (None if location is None else location.version)


@pytest.fixture
def two_real_cgroups() -> Iterator[tuple[ExitStack, Path, Path]]:
    """Two real sibling child cgroups (128 and 256 MiB); the ExitStack removes the second."""
    with ExitStack() as outer:
        try:
            small = outer.enter_context(child_memory_cgroup(128 * MIB))
            inner = outer.enter_context(ExitStack())
            large = inner.enter_context(child_memory_cgroup(256 * MIB))
        except CgroupUnavailable as exc:
            pytest.skip(f"real cgroup unavailable: {exc}")
        yield inner, small, large


@pytest.mark.cgroup
def test_probe_follows_process_after_its_cgroup_is_removed(
    tmp_path: Path, two_real_cgroups: tuple[ExitStack, Path, Path]
) -> None:
    """A fixture root whose cgroup mount is a symlink into real cgroupfs: rmdir gives ENODEV."""
    remove_large, small, large = two_real_cgroups
    version = locate_memory_cgroup().version
    mount_line = (V1_MOUNT if version == 1 else V2_MOUNT).format(root="/")
    mount = tmp_path / ("sys/fs/cgroup/memory" if version == 1 else "sys/fs/cgroup")
    mount.parent.mkdir(parents=True)
    mount.symlink_to(large.parent)
    controller = "4:memory:" if version == 1 else "0::"
    write_files(tmp_path, {"proc/self/cgroup": f"{controller}/{large.name}\n", "proc/self/mountinfo": mount_line})
    with MemoryProbe(str(tmp_path)) as probe:
        before = probe.read().cgroup_limit_bytes
        write_files(tmp_path, {"proc/self/cgroup": f"{controller}/{small.name}\n"})
        remove_large.close()
        assert (before, probe.read().cgroup_limit_bytes) == (256 * MIB, 128 * MIB)


def test_rss_bytes_alone_comes_from_statm(tmp_path: Path, host: SimpleNamespace) -> None:
    v1_tree(tmp_path)
    with MemoryProbe(str(tmp_path)) as probe:
        assert probe.rss_bytes() == 2500 * PAGE_BYTES


def test_forked_child_reads_its_own_rss_not_the_parents() -> None:
    """After a fork the probe must re-open /proc/self/statm: the child sees its own growth.

    The child compares its own readings before and after touching a ballast; comparing with the
    parent would be fragile (the child does not count the parent's mapped pages until it touches them).
    """
    ballast_bytes = 64 * MIB
    with MemoryProbe() as probe:
        probe.rss_bytes()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: report its RSS before and after making the ballast resident
            before = probe.rss_bytes()
            ballast = b"\x01" * ballast_bytes
            after = probe.rss_bytes()
            os.write(write_end, f"{before} {after}".encode())
            os._exit(0 if ballast else 1)
        os.close(write_end)
        before_bytes, after_bytes = map(int, os.read(read_end, 64).split())
        os.close(read_end)
        os.waitpid(pid, 0)
    assert after_bytes - before_bytes > ballast_bytes // 2
