"""Real-cgroup check: a process in a 256 MiB child cgroup reads exactly that limit."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.cgroup_util import CgroupUnavailable, child_memory_cgroup, spawn_in_cgroup

pytestmark = pytest.mark.cgroup

LIMIT_BYTES = 256 * 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[2]
PRINT_LIMIT = "from crypto_bot.memory.probe import read_memory; print(read_memory().limit_bytes)"


@pytest.fixture
def limited_cgroup() -> Iterator[Path]:
    with ExitStack() as stack:
        try:
            path = stack.enter_context(child_memory_cgroup(LIMIT_BYTES))
        except CgroupUnavailable as exc:
            pytest.skip(f"real cgroup unavailable: {exc}")
        yield path


def test_process_in_child_cgroup_reads_its_limit(limited_cgroup: Path) -> None:
    child = spawn_in_cgroup(
        limited_cgroup,
        [sys.executable, "-c", PRINT_LIMIT],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr
    assert int(stdout) == LIMIT_BYTES
