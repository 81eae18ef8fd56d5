"""The Dockerfile, built and run: the bot trades a few cycles in the image under a 256 MiB memory limit, with the C
cache store, as a user without privileges, and `docker stop` (SIGTERM) ends it cleanly with its summary.

Needs a running Docker daemon and a base image: python:3.11-slim-bookworm, or the stand-in that
`scripts/container-base` builds from Debian's packages (Docker Hub is out of reach on some machines). Skipped,
saying which is missing, elsewhere. The build takes about two minutes the first time and seconds once cached.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.proof.conftest import REPO_ROOT

pytestmark = pytest.mark.proof

BASE_IMAGES = ("python:3.11-slim-bookworm", "crypto-bot-ci/python:3.11-bookworm")
IMAGE = "crypto-bot:proof"
LIMIT = "256m"
LIMIT_MIB = 256
BUILD_TIMEOUT_SECONDS = 900
RUN_TIMEOUT_SECONDS = 300


def docker(*arguments: str, timeout: float = RUN_TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *arguments], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("docker") is None:
        pytest.skip("no container engine: docker is not installed (Debian: docker.io)")
    if docker("info", timeout=30).returncode != 0:
        pytest.skip("docker is installed but no Docker daemon answers (start dockerd)")
    base = next((name for name in BASE_IMAGES if docker("image", "inspect", name, timeout=30).returncode == 0), None)
    if base is None:
        pytest.skip(f"no base image: none of {', '.join(BASE_IMAGES)} is present; pull the first or run scripts/container-base")
    # --network host: the build stage reaches the package registries as this machine does
    build = docker(
        "build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}", "-t", IMAGE, str(REPO_ROOT),
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return IMAGE


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"crypto-bot-proof-{uuid.uuid4().hex[:8]}"
    yield name
    docker("rm", "--force", name, timeout=60)


def test_the_image_trades_under_a_256_mib_limit_unprivileged_on_the_c_store(image: str, container_name: str) -> None:
    run = docker(
        "run", "--name", container_name, "--memory", LIMIT, "--memory-swap", LIMIT, "--network", "none",
        image, "run", "--config", "config.yaml", "--cycles", "5", "--interval", "0",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    status_lines = [line for line in run.stdout.splitlines() if "| cycle " in line]
    assert len(status_lines) == 5
    rss_mib = [int(match) for match in re.findall(r"\| rss (\d+) MiB", "\n".join(status_lines))]
    assert rss_mib and max(rss_mib) < LIMIT_MIB
    assert "cache store c" in run.stdout
    inspect = docker("inspect", "--format", "{{.Config.User}} {{.State.OOMKilled}}", container_name)
    assert inspect.stdout.split() == ["crypto-bot", "false"]


def test_docker_stop_ends_the_bot_cleanly_with_its_summary(image: str, container_name: str) -> None:
    started = docker("run", "--detach", "--name", container_name, "--memory", LIMIT, "--network", "none", image)
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while "| cycle " not in docker("logs", container_name).stdout:
        assert time.monotonic() < deadline, docker("logs", container_name).stderr[-3000:]
        time.sleep(1)
    stop = docker("stop", "--time", "60", container_name)
    assert stop.returncode == 0, stop.stderr
    state = docker("inspect", "--format", "{{.State.ExitCode}}", container_name)
    logs = docker("logs", container_name)
    assert state.stdout.strip() == "0", logs.stderr[-3000:]
    assert "Summary" in logs.stdout and "this run" in logs.stdout
