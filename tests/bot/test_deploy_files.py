"""The files operators deploy with (Dockerfile, compose.yaml, the systemd unit) agree with the bot they run: the
commands parse, the exit codes systemd acts on are the bot's, and the unit passes `systemd-analyze verify`."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crypto_bot import cli
from crypto_bot.supervisor import RECYCLE_EXIT_CODE
from tests.bot.conftest import REPO_ROOT, SUBPROCESS_TIMEOUT_SECONDS

UNIT = REPO_ROOT / "deploy" / "systemd" / "crypto-bot.service"
DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = REPO_ROOT / "compose.yaml"


def unit_settings() -> dict[str, list[str]]:
    """Every `Key=value` of the unit (a key may repeat)."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_units_command_is_a_valid_unsupervised_run() -> None:
    (exec_start,) = unit_settings()["ExecStart"]
    program, *arguments = shlex.split(exec_start)
    assert program.endswith("/crypto-bot")
    parsed = cli._parser().parse_args(arguments)
    assert parsed.command == "run" and parsed.no_supervisor  # systemd restarts it; no supervisor inside
    assert parsed.cycles is None  # runs until stopped


def test_the_unit_restarts_a_recycle_and_not_a_configuration_error() -> None:
    settings = unit_settings()
    assert settings["Type"] == ["notify"] and settings["Restart"] == ["on-failure"]
    assert settings["RestartForceExitStatus"] == [str(RECYCLE_EXIT_CODE)]
    assert settings["SuccessExitStatus"] == [str(RECYCLE_EXIT_CODE)]
    assert set(settings["RestartPreventExitStatus"][0].split()) == {str(cli.EXIT_USAGE), str(cli.EXIT_ENVIRONMENT)}


def test_the_unit_is_bounded_and_hardened() -> None:
    settings = unit_settings()
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "MemoryMax": "256M"}.items():
        assert settings[key] == [value]
    assert settings["ReadWritePaths"] == settings["WorkingDirectory"]  # the journal and the model, and only they
    assert int(settings["WatchdogSec"][0]) >= 2 * float(shlex.split(settings["ExecStart"][0])[-1])  # --interval


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (Debian: systemd)")
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify also checks that ExecStart's program exists: point it at this interpreter's crypto-bot
    program = Path(sys.executable).with_name("crypto-bot")
    if not program.exists():
        pytest.skip(f"{program} is not installed (pip install -e .)")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/crypto-bot/bin/crypto-bot", str(program)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_SECONDS
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")  # a misspelt setting is only a warning


def test_the_dockerfile_builds_in_two_stages_and_runs_the_bot_unprivileged() -> None:
    instructions = dockerfile_instructions()
    stages = [arguments for instruction, arguments in instructions if instruction == "FROM"]
    assert len(stages) == 2
    runtime = instructions[[i for i, (instruction, _) in enumerate(instructions) if instruction == "FROM"][-1] :]
    assert not any("gcc" in arguments for instruction, arguments in runtime if instruction == "RUN")
    (user,) = [arguments for instruction, arguments in runtime if instruction == "USER"]
    assert user not in ("root", "0")
    (entrypoint,) = [json.loads(arguments) for instruction, arguments in instructions if instruction == "ENTRYPOINT"]
    (command,) = [json.loads(arguments) for instruction, arguments in instructions if instruction == "CMD"]
    assert entrypoint == ["crypto-bot"]  # exec form: SIGTERM reaches the bot's own handler
    assert cli._parser().parse_args(command).command == "run"
    (healthcheck,) = [arguments for instruction, arguments in instructions if instruction == "HEALTHCHECK"]
    assert "crypto_bot.healthcheck" in healthcheck
    assert any(instruction == "VOLUME" and "/srv/crypto-bot/data" in arguments for instruction, arguments in runtime)


def test_compose_limits_memory_restarts_rotates_logs_and_binds_loopback() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    bot = compose["services"]["bot"]
    assert bot["mem_limit"] and bot["restart"] == "unless-stopped"
    assert bot["logging"]["options"]["max-size"] and bot["logging"]["options"]["max-file"]
    assert all(str(port).startswith("127.0.0.1:") for service in compose["services"].values() for port in service.get("ports", []))
    assert compose["services"]["prometheus"]["profiles"] == ["prometheus"]
    assert cli._parser().parse_args(bot["command"]).command == "run"
