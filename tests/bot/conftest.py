"""Shared fixtures for the bot tests: small fast configs and one trained model per session."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
import yaml

from crypto_bot.market import SimulatedMarket, generated_symbols
from crypto_bot.redaction import RedactingFilter
from crypto_bot.settings import Settings, parse_settings
from crypto_bot.strategy import save_model, train_signal_model
from tests.bot.support import Session

REPO_ROOT = Path(__file__).resolve().parents[2]
REPOSITORY_CONFIG = REPO_ROOT / "production_config_enhanced.yaml"
SUBPROCESS_TIMEOUT_SECONDS = 120


def crypto_bot(*args: str, cwd: Path, **options: object) -> subprocess.Popen:
    """`python -m crypto_bot.cli ARGS` in cwd, importing this checkout: the command as a real process."""
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "crypto_bot.cli", *args], cwd=cwd, env=environment, text=True, **options
    )


@contextmanager
def running_bot(config: Path, *options: str, cwd: Path, stderr: Any) -> Iterator[subprocess.Popen]:
    """`crypto-bot run --config CONFIG OPTIONS` (stdout piped, line-buffered), entered once it reported its
    first cycle; killed at the block's end if the block left it running (a failed test)."""
    process = crypto_bot(
        "run", "--config", str(config), *options, cwd=cwd, stdout=subprocess.PIPE, stderr=stderr, bufsize=1
    )
    try:
        seen = []
        for line in process.stdout:
            seen.append(line)
            if "| cycle " in line:
                break
        assert seen and "| cycle " in seen[-1], "".join(seen)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def small_config(journal_path: Path, model_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A config that trades within a cycle or two and runs a cycle in well under 0.1 s; `sections` update it."""
    config: dict[str, Any] = {
        "enable_background_cleanup": False,
        "symbols": ["BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT"],
        "timeframes": ["1m", "15m"],
        "market": {"seed": 42},
        "strategy": {
            "batch_size": 4,
            "history_candles": 100,
            "fetch_limit": 5,
            "model_path": str(model_path),
            "model_training_candles": 600,
            "model_training_symbols": 2,
        },
        "storage": {"journal_path": str(journal_path)},
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(name), dict):
            config[name] = {**config[name], **values}
        else:
            config[name] = values
    return config


@pytest.fixture(autouse=True)
def _no_redacting_filter_left_behind() -> Iterator[None]:
    """`cli.main` installs the redacting filter on the root logger's handlers; under pytest those are pytest's
    own, shared by every later test (the filter clears each record's exc_info): take it off again."""
    yield
    for handler in logging.getLogger().handlers:
        for installed in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(installed)


@pytest.fixture(scope="session")
def trained_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One signal model trained on simulated history and saved for the whole session."""
    model_path = tmp_path_factory.mktemp("model") / "signal_model.npz"
    market = SimulatedMarket(
        generated_symbols(2, quote="TRAIN"), timeframes=["1m"], base_timeframe="1m", seed=43, history_candles=600
    )

    async def history() -> list[pd.DataFrame]:
        return [await market.fetch_ohlcv(symbol, "1m", limit=600) for symbol in market.universe()]

    frames = asyncio.run(history())
    save_model(train_signal_model(frames, horizon=5), model_path)
    return model_path


@pytest.fixture
def config_dict(tmp_path: Path, trained_model_path: Path) -> Callable[..., dict[str, Any]]:
    """`config_dict(**sections)`: the small config with its journal under tmp_path and the session's model."""

    def build(**sections: dict[str, Any]) -> dict[str, Any]:
        return small_config(tmp_path / "journal.sqlite", trained_model_path, **sections)

    return build


@pytest.fixture
def config_file(tmp_path: Path, config_dict: Callable[..., dict[str, Any]]) -> Callable[..., Path]:
    """`config_file(**sections)`: the small config written to tmp_path/config.yaml."""

    def write(**sections: dict[str, Any]) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config_dict(**sections)), encoding="utf-8")
        return path

    return write


@pytest.fixture
def start() -> Iterator[Callable[..., Session]]:
    """`start(settings, **TradingBot options)`: a prepared bot; all are closed at teardown."""
    sessions: list[Session] = []

    def build(settings: Settings, **options: Any) -> Session:
        sessions.append(Session(settings, **options))
        return sessions[-1]

    yield build
    for session in sessions:
        session.close()


@pytest.fixture
def bot_settings(config_dict: Callable[..., dict[str, Any]]) -> Settings:
    return parse_settings(config_dict())


class RecordingNotifier:
    """A notifier that keeps what it was told."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def notify(self, message: str, **event: Any) -> None:
        self.messages.append(message)


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


@pytest.fixture
def system_memory_used(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """`system_memory_used(95.0)`: psutil reports the host that full from now on (readings call it each time)."""
    real = psutil.virtual_memory()

    def set_percent(percent: float) -> None:
        used = int(real.total * percent / 100)
        fake = types.SimpleNamespace(
            total=real.total, available=real.total - used, percent=percent, used=used, free=real.total - used
        )
        monkeypatch.setattr(psutil, "virtual_memory", lambda: fake)

    return set_percent
