"""`crypto-bot status` and `crypto-bot memory stats` against a running bot (a real `crypto-bot run`, supervised,
serving on 127.0.0.1), and with no bot running."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml

from crypto_bot.cli import EXIT_ENVIRONMENT, EXIT_OK, EXIT_USAGE, main
from crypto_bot.settings import load_settings
from tests.bot.conftest import REPO_ROOT, REPOSITORY_CONFIG, SUBPROCESS_TIMEOUT_SECONDS, crypto_bot, small_config
from tests.bot.test_cli_failures import command, one_line

pytest.importorskip("prometheus_client")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningBot:
    config: Path
    url: str
    supervisor: subprocess.Popen
    child_pid: int


@pytest.fixture(scope="module")
def running_bot(tmp_path_factory: pytest.TempPathFactory, trained_model_path: Path) -> Iterator[RunningBot]:
    """`crypto-bot run` under its supervisor, until the status page's address is printed and a cycle ended (one bot
    for the module: starting one takes seconds)."""
    directory = tmp_path_factory.mktemp("running-bot")
    config = directory / "config.yaml"
    settings = small_config(directory / "journal.sqlite", trained_model_path, server={"enabled": True, "port": free_port()})
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    with open(directory / "bot.err", "w", encoding="utf-8") as errors:
        bot = crypto_bot("run", "--config", str(config), "--interval", "0.2", cwd=directory,
                         stdout=subprocess.PIPE, stderr=errors, bufsize=1)
        try:
            url = None
            for line in bot.stdout:
                if line.startswith("status page: "):
                    url = line.split()[2]
                if "| cycle " in line:
                    break
            assert url is not None, (directory / "bot.err").read_text()
            [child] = psutil.Process(bot.pid).children()
            yield RunningBot(config, url, bot, child.pid)
        finally:
            bot.send_signal(signal.SIGTERM)
            bot.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)


def test_run_prints_the_status_page_address_and_status_prints_the_running_bots_numbers(
    running_bot: RunningBot, tmp_path: Path
) -> None:
    assert running_bot.url.startswith("http://127.0.0.1:")
    status = command("status", "--config", str(running_bot.config), cwd=tmp_path)
    assert status.returncode == EXIT_OK, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == "health          ok"
    assert lines[1].startswith(f"bot             pid {running_bot.child_pid}, cycle ")  # the bot, not the supervisor
    assert "0 recycles" in lines[1]
    assert any(line.split()[:1] == ["df_cache"] and "entries" in line for line in lines)
    assert any(line.startswith("trading         equity ") for line in lines)
    assert any(line.startswith("exchange        simulated") for line in lines)


def test_memory_stats_are_the_running_bots(running_bot: RunningBot, tmp_path: Path) -> None:
    stats_run = command("memory", "stats", "--config", str(running_bot.config), cwd=tmp_path)
    assert stats_run.returncode == EXIT_OK, stats_run.stderr
    stats = json.loads(stats_run.stdout)
    assert set(stats["caches"]) == {"df_cache", "regime_cache"} and stats["caches"]["df_cache"]["entries"] > 0
    assert "signal_model" in stats["models"]
    bot_rss = psutil.Process(running_bot.child_pid).memory_info().rss
    assert 0.5 * bot_rss < stats["reading"]["rss_bytes"] < 2 * bot_rss


def test_status_and_memory_stats_import_neither_pandas_nor_sklearn(running_bot: RunningBot, tmp_path: Path) -> None:
    script = (
        "import sys\nfrom crypto_bot.cli import main\n"
        f"codes = [main(['status', '--url', {running_bot.url!r}]), main(['memory', 'stats', '--url', {running_bot.url!r}])]\n"
        "print(codes, sorted(m for m in ('pandas', 'sklearn', 'crypto_bot.bot') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_SECONDS, check=False)
    assert done.stdout.splitlines()[-1] == "[0, 0] []", done.stderr


def test_with_no_bot_running_status_says_so_and_exits_3(
    config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    config = config_file(server={"enabled": True, "port": port})
    for arguments in (["status"], ["memory", "stats"]):
        assert main([*arguments, "--config", str(config)]) == EXIT_ENVIRONMENT
        line = one_line(capsys.readouterr().err)
        assert line.startswith(f"crypto-bot: no bot is running at http://127.0.0.1:{port}/ (")
        assert "crypto-bot status --journal" in line


def test_status_with_the_server_disabled_names_the_key(
    config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--config", str(config_file())]) == EXIT_USAGE
    assert "server.enabled is false in " in one_line(capsys.readouterr().err)


def test_status_with_a_bad_server_section_names_the_key(
    config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["memory", "stats", "--config", str(config_file(server={"port": 70000}))]) == EXIT_USAGE
    assert "invalid server.port=70000: allowed an integer in [0, 65535]" in one_line(capsys.readouterr().err)


def test_the_repository_config_that_scripts_run_uses_serves_the_status_page_on_loopback() -> None:
    assert "--config production_config_enhanced.yaml" in (REPO_ROOT / "scripts" / "run").read_text()
    server = load_settings(REPOSITORY_CONFIG).server
    assert server.enabled and server.loopback and server.port == 9108
