"""Survival inside a container limit: the managed bot lives in a memory cgroup that kills the unmanaged one.

Root only; skipped cleanly where a child cgroup cannot be created beneath our own. The limit is
well below what the unmanaged workload needs for the same number of cycles (about a third), so the
test has teeth: the unmanaged run must be OOM-killed, the managed one must finish below 90% of it.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.cgroup_util import read_memory_stats, spawn_in_cgroup
from tests.proof.conftest import CONTAINER_LIMIT_BYTES, MIB, read_rows, run_soak, soak_command

pytestmark = [pytest.mark.cgroup, pytest.mark.proof]

LIMIT_BYTES = CONTAINER_LIMIT_BYTES
CYCLES = 110
# A scanner listing 20 pairs a cycle with 5000-candle windows: about 5.5 MiB more per cycle for
# plain dicts on a ~150 MiB base, so by the last cycle the unmanaged run needs about three times
# the limit. The managed run stays below it by its tiers (GC, then shrinking caches).
WORKLOAD = ("--new-symbols-per-cycle", "20", "--history-candles", "5000")


@pytest.fixture(scope="module")
def config(soak_config, tmp_path_factory) -> Path:
    """The soak config with a 64 MB cache budget; the model is trained once, outside the cgroup."""
    path = soak_config("container", cache_size_limit_mb=64, strategy__batch_size=1)
    warm = run_soak(soak_command(path, tmp_path_factory.mktemp("warm"), 1), cwd=path.parent)
    assert warm.returncode == 0, warm.stderr[-2000:]
    return path


def run_in(cgroup: Path, argv: list[str], cwd: Path) -> tuple[int, str]:
    child = spawn_in_cgroup(cgroup, argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = child.communicate(timeout=900)
    return child.returncode, output


def test_managed_soak_survives_a_limit_that_kills_the_unmanaged_one(cgroup: Path, config: Path, tmp_path: Path) -> None:
    managed_out = tmp_path / "managed"
    returncode, output = run_in(cgroup, soak_command(config, managed_out, CYCLES, *WORKLOAD), tmp_path)
    stats = read_memory_stats(cgroup)
    rows = read_rows(managed_out)

    assert returncode == 0, output[-3000:]
    assert stats.oom_kills in (0, None)
    assert len(rows) == CYCLES
    peak_working_set = max(int(row["working_set_bytes"]) for row in rows)
    assert peak_working_set < 0.9 * LIMIT_BYTES, f"peak working set {peak_working_set / MIB:.0f} MiB"
    assert int(rows[-1]["cache_bytes"]) <= 64 * MIB


def test_same_workload_unmanaged_is_oom_killed(cgroup: Path, config: Path, tmp_path: Path) -> None:
    unmanaged_out = tmp_path / "unmanaged"
    returncode, output = run_in(cgroup, soak_command(config, unmanaged_out, CYCLES, *WORKLOAD, "--unmanaged"), tmp_path)
    stats = read_memory_stats(cgroup)

    assert returncode == -signal.SIGKILL, output[-3000:]
    if stats.oom_kills is not None:
        assert stats.oom_kills >= 1
    assert len(read_rows(unmanaged_out)) < CYCLES
