"""A real `crypto-bot run` under a process limit far below what the bot needs (issue 11, section 3).

At `process_memory_limit_mb: 50` with the repository's config, every maintenance pass clears the
caches and unloads the model that the next cycle loads again. The run says so once, with the
figures, instead of clearing and reloading silently every cycle.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.bot.conftest import REPO_ROOT, REPOSITORY_CONFIG

CYCLES = 10
THRASH_WARNING = "memory budget thrashing"


def run_bot(tmp_path: Path, process_memory_limit_mb: float) -> subprocess.CompletedProcess:
    """The repository's config with its journal and model under tmp_path and the given process limit."""
    config = yaml.safe_load(REPOSITORY_CONFIG.read_text(encoding="utf-8"))
    config["process_memory_limit_mb"] = process_memory_limit_mb
    config["strategy"]["model_path"] = str(tmp_path / "signal_model.npz")
    config["storage"]["journal_path"] = str(tmp_path / "journal.sqlite")
    config["server"]["port"] = 0  # a free port: another bot may hold the configured one
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "crypto_bot.cli", "run", "--config", str(path), "--cycles", str(CYCLES), "--interval", "0"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
    )


def test_a_50_mib_process_limit_is_reported_as_thrashing_once_with_the_limit_that_stops_it(tmp_path: Path) -> None:
    completed = run_bot(tmp_path, 50)

    assert completed.returncode == 0, completed.stderr[-3000:]
    [warning] = [line for line in completed.stderr.splitlines() if THRASH_WARNING in line]
    assert "WARNING" in warning and "Limit: the process limit, 50.0 MiB" in warning
    floor_mib = float(re.search(r"RSS after clearing ([\d.]+) MiB", warning).group(1))
    stopping_mib = int(re.search(r"process_memory_limit_mb: (\d+) or more", warning).group(1))
    # What the bot needs without its caches is far above 50 MiB; the limit named holds it below 75%.
    assert 50 < floor_mib < 0.75 * stopping_mib
    for figure in (r"([\d.]+) MiB of caches", r"([\d.]+) MiB of models"):
        assert re.search(figure, warning), warning
