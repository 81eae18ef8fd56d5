"""Safe recycle inside a container limit (issue 12, section 3): a leaking strategy, a 256 MiB memory cgroup.

The plugin (tests/plugins/leaking_trader.py) trades as the built-in strategy does and keeps
LEAK_MIB every cycle for good: nothing the memory manager's tiers can win back. Without recycle
the bot grows into the limit and the kernel kills it. With it, the bot hands over at a cycle's end
while at PRESSURE: no OOM kill, at least one recycle, every fill printed before a recycle is in
the journal, every position open at a recycle is resumed by the next process, and the run ends
after exactly CYCLES cycles in total.

The runtime environment (`./scripts/run`) holds no pyarrow; the test environment does, for the
sizing tests, and pandas imports it whenever it is installed (+40 MiB). The bot here is started
with pyarrow hidden, as the runtime has it. Root only; skipped where a child cgroup cannot be
created beneath our own.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.bot.conftest import REPO_ROOT, small_config
from tests.bot.test_recycle_run import (
    CLOSED,
    OPENED,
    RESUMED,
    SUPERVISOR_RECYCLE,
    cycles_reported,
    journal_fills,
    last_open_count,
)
from tests.cgroup_util import read_memory_stats, spawn_in_cgroup

pytestmark = [pytest.mark.cgroup, pytest.mark.proof]

CYCLES = 60
LEAK_MIB = 4  # 60 cycles of it on the bot's base are far beyond the limit
RUN_TIMEOUT_SECONDS = 600


@pytest.fixture
def without_pyarrow(tmp_path: Path) -> str:
    """A PYTHONPATH under which `import pyarrow` fails, as in the runtime environment, then this checkout."""
    shim = tmp_path / "no-pyarrow" / "pyarrow"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text('raise ImportError("pyarrow is not in the runtime environment")\n')
    return f"{shim.parent}:{REPO_ROOT}"


def write_config(tmp_path: Path, *, recycle: bool) -> Path:
    """The small test config with the leaking plugin, the default thresholds and recycle policy."""
    config = small_config(
        tmp_path / "journal.sqlite",
        tmp_path / "signal_model.npz",
        strategy={"plugin": "tests.plugins.leaking_trader:LeakingTrader", "params": {"leak_mib_per_cycle": LEAK_MIB}},
        recycle={"enabled": recycle},
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_in(cgroup: Path, config: Path, python_path: str) -> tuple[int, list[str]]:
    """`crypto-bot run` for CYCLES cycles inside the cgroup; its exit code and output lines (stdout and stderr)."""
    argv = [sys.executable, "-m", "crypto_bot.cli", "run", "--config", str(config), "--cycles", str(CYCLES),
            "--interval", "0"]
    process = spawn_in_cgroup(
        cgroup, argv, cwd=config.parent, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": python_path},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output, _ = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    return process.returncode, output.splitlines()


def test_without_recycle_the_leaking_bot_is_oom_killed(cgroup: Path, without_pyarrow: str, tmp_path: Path) -> None:
    returncode, lines = run_in(cgroup, write_config(tmp_path, recycle=False), without_pyarrow)
    stats = read_memory_stats(cgroup)

    assert returncode == -signal.SIGKILL, "\n".join(lines[-40:])
    if stats.oom_kills is not None:
        assert stats.oom_kills >= 1
    assert len(cycles_reported(lines)) < CYCLES


def test_with_recycle_the_leaking_bot_outlives_the_limit_and_loses_nothing(
    cgroup: Path, without_pyarrow: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, recycle=True)
    returncode, lines = run_in(cgroup, config, without_pyarrow)
    stats = read_memory_stats(cgroup)
    output = "\n".join(lines[-60:])

    assert returncode == 0, output
    assert stats.oom_kills in (0, None), output
    recycles = [index for index, line in enumerate(lines) if SUPERVISOR_RECYCLE in line]
    assert recycles, output
    assert cycles_reported(lines) == list(range(1, CYCLES + 1))
    opened, closed = journal_fills(tmp_path / "journal.sqlite")
    for recycle in recycles:
        before = lines[:recycle]
        assert {m.groups() for line in before if (m := OPENED.search(line))} <= opened
        assert {m.groups() for line in before if (m := CLOSED.search(line))} <= closed
        [resumed] = [int(m.group(1)) for line in lines[recycle:] if (m := RESUMED.search(line))][:1]
        assert resumed == last_open_count(before)
    assert any(re.search(r"opened (long|short)", line) for line in lines[: recycles[0]])
