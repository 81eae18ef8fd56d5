"""What each command loads: the commands that do not trade import neither pandas, numpy nor scikit-learn, and
the runtime's dependencies hold no plotting, test or model-training library (README "Footprint")."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from crypto_bot.execution import TradeJournal
from tests.bot.conftest import REPO_ROOT, REPOSITORY_CONFIG, SUBPROCESS_TIMEOUT_SECONDS

HEAVY_MODULES = ("pandas", "numpy", "sklearn", "scipy", "pyarrow", "matplotlib")


def heavy_modules_after(code: str, cwd: Path) -> list[str]:
    """The heavy modules a fresh interpreter has loaded after running `code` (its last line of output)."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, env=environment, capture_output=True, text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_config_check_of_the_repository_config_loads_no_heavy_module(tmp_path: Path) -> None:
    code = f"from crypto_bot.cli import main\nassert main(['config', 'check', {str(REPOSITORY_CONFIG)!r}]) == 0"
    assert heavy_modules_after(code, tmp_path) == []


def test_config_keys_and_help_load_no_heavy_module(tmp_path: Path) -> None:
    code = "from crypto_bot.cli import main\nassert main(['config', 'keys']) == 0"
    assert heavy_modules_after(code, tmp_path) == []


def test_status_of_the_journal_loads_no_heavy_module(tmp_path: Path) -> None:
    journal_path = tmp_path / "journal.sqlite"
    TradeJournal(journal_path).close()  # a journal as a bot leaves it
    config = yaml.safe_load(REPOSITORY_CONFIG.read_text(encoding="utf-8"))
    config["storage"]["journal_path"] = str(journal_path)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    code = f"from crypto_bot.cli import main\nassert main(['status', '--journal', '--config', {str(config_path)!r}]) == 0"
    assert heavy_modules_after(code, tmp_path) == []


def test_the_supervisor_of_a_run_loads_no_heavy_module(tmp_path: Path) -> None:
    # `crypto-bot run` as far as the supervisor's loop: it reads the config and would start the child here.
    code = (
        "from crypto_bot import supervisor\n"
        "supervisor.Supervisor.run = lambda self: 0\n"
        "from crypto_bot.cli import main\n"
        f"assert main(['run', '--config', {str(REPOSITORY_CONFIG)!r}]) == 0"
    )
    assert heavy_modules_after(code, tmp_path) == []


def test_the_runtime_dependencies_hold_no_plotting_test_or_training_library() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {requirement.split(">")[0].split("<")[0].split("=")[0].strip() for requirement in project["dependencies"]}
    assert runtime.isdisjoint({"matplotlib", "pillow", "fonttools", "tqdm", "pyarrow", "scikit-learn", "pytest"})
    assert {"matplotlib", "tqdm"} <= {r.split(">")[0] for r in project["optional-dependencies"]["soak"]}


def test_soak_without_its_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from crypto_bot.cli import CommandError
    from crypto_bot.soak import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(CommandError, match=r"pip install 'crypto-bot\[soak\]'"):
        plot(Path("unused"))


@pytest.mark.parametrize("package", ["crypto_bot.market", "crypto_bot.execution", "crypto_bot.strategy", "crypto_bot.memory"])
def test_every_lazily_exported_name_is_its_modules_own(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        submodules = [sub for sub in list(sys.modules.values()) if sub and sub.__name__.startswith(f"{package}.")]
        assert any(getattr(sub, name, None) is value for sub in submodules)
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        module.nothing_here  # noqa: B018


def test_importing_the_packages_loads_no_heavy_module(tmp_path: Path) -> None:
    code = "import crypto_bot.market, crypto_bot.execution, crypto_bot.strategy, crypto_bot.memory"
    assert heavy_modules_after(code, tmp_path) == []
