"""Fixtures for the proof tests: soak runs of the real `crypto-bot` command as subprocesses."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from tests.cgroup_util import CgroupUnavailable, child_memory_cgroup

REPO_ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
CONTAINER_LIMIT_BYTES = 256 * MIB  # a small VPS or container


@pytest.fixture
def cgroup() -> Iterator[Path]:
    """A fresh memory cgroup limited to CONTAINER_LIMIT_BYTES; the test is skipped where none can be made."""
    with ExitStack() as stack:
        try:
            yield stack.enter_context(child_memory_cgroup(CONTAINER_LIMIT_BYTES))
        except CgroupUnavailable as exc:
            pytest.skip(f"real cgroup unavailable: {exc}")


@pytest.fixture(scope="session")
def soak_config(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Write a config derived from the repository's, with the given overrides (section.key=value)."""
    directory = tmp_path_factory.mktemp("soak-config")
    base = yaml.safe_load((REPO_ROOT / "production_config_enhanced.yaml").read_text())
    base["strategy"]["model_path"] = str(directory / "signal_model.npz")

    def write(name: str, **overrides: object) -> Path:
        config = yaml.safe_load(yaml.safe_dump(base))
        for dotted, value in overrides.items():
            section, _, key = dotted.rpartition("__")
            (config[section] if section else config)[key] = value
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return write


def soak_command(config: Path, out: Path, cycles: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "crypto_bot.cli", "soak", "--config", str(config), "--cycles", str(cycles),
            "--out", str(out), "--no-plot", *extra]


def run_soak(argv: Sequence[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def read_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "soak.csv", newline="") as handle:
        return list(csv.DictReader(handle))
