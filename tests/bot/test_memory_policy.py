"""One memory policy on the bot's path: the bot's MemoryManager, built from its settings, and nothing else.

Under pressure the caches come back to the documented `pressure_target_ratio` and no further (the
seed-compatible facade would halve them again after that), and neither the bot nor the commands
that build one or read its state (`run`, `soak`, `status --journal`) import the facade.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from crypto_bot.bot import TradingBot
from crypto_bot.memory import MemoryManager, MemoryReading
from crypto_bot.phase_runner import BotContext, PhaseRunner
from crypto_bot.settings import Settings
from tests.bot.conftest import REPO_ROOT

FACADE = "crypto_bot.utils.enhanced_memory_manager"
SUBPROCESS_TIMEOUT_SECONDS = 300


class ScriptedProbe:
    """Memory readings the test sets: usage of a limit, nothing else."""

    def __init__(self, usage_ratio: float, limit_bytes: int) -> None:
        self.usage_ratio = usage_ratio
        self.limit_bytes = limit_bytes

    def read(self) -> MemoryReading:
        fields = dict.fromkeys(field.name for field in dataclasses.fields(MemoryReading))
        fields.update(rss_bytes=self.rss_bytes(), limit_bytes=self.limit_bytes, usage_ratio=self.usage_ratio)
        return MemoryReading(**fields)

    def rss_bytes(self) -> int:
        return int(self.usage_ratio * self.limit_bytes)


def test_the_bots_path_has_one_policy_the_memory_manager(bot_settings: Settings) -> None:
    bot = TradingBot(bot_settings)
    try:
        assert type(bot.ctx.memory_manager) is MemoryManager
        assert FACADE not in {type(bot.memory).__module__, type(bot.ctx).__module__}
    finally:
        asyncio.run(bot.close())


def test_pressure_brings_the_bots_caches_to_the_target_ratio_and_no_further(bot_settings: Settings) -> None:
    probe = ScriptedProbe(usage_ratio=0.3, limit_bytes=2**30)
    memory = MemoryManager(bot_settings.memory, probe=probe)
    bot = TradingBot(bot_settings, memory=memory)

    async def fill_then_press() -> tuple[int, int, int]:
        await bot.prepare_model()
        for _ in range(2):
            await bot.run_cycle()
        await bot.runner.drain()
        before = memory.cache_bytes
        largest_entry = max(entry.size_bytes for cache in memory.caches.values() for entry in cache.cache.values())
        usage, target = 0.82, bot_settings.memory.pressure_target_ratio
        probe.limit_bytes = round(before / 2 / (usage - target))  # the tier sheds (usage - target) x limit: half
        probe.usage_ratio = usage

        async def idle(ctx: BotContext) -> None:
            return None

        runner = PhaseRunner([idle])  # the runner's maintenance, on the bot's context
        await runner.run(bot.ctx)
        await runner.drain()
        return before, before - round((usage - target) * probe.limit_bytes), largest_entry

    try:
        before, at_target, largest_entry = asyncio.run(fill_then_press())
    finally:
        asyncio.run(bot.close())
    assert memory.pressure_events == 1
    assert at_target - largest_entry < memory.cache_bytes <= at_target < before


def run_commands(config: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    """`run`, `status --journal` and `soak` in one fresh interpreter; prints whether the facade was imported."""
    script = textwrap.dedent(
        f"""
        import sys
        from crypto_bot.cli import main

        config = {str(config)!r}
        codes = [
            main(["run", "--no-supervisor", "--config", config, "--cycles", "1", "--interval", "0"]),
            main(["status", "--journal", "--config", config]),
            main(["soak", "--config", config, "--cycles", "2", "--out", {str(directory / "soak")!r}, "--symbols", "6",
                  "--new-symbols-per-cycle", "1", "--history-candles", "100", "--no-plot"]),
        ]
        print("exit codes", codes)
        print("facade imported:", {FACADE!r} in sys.modules)
        """
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
    )


def test_nothing_on_the_bots_path_imports_the_facade(tmp_path: Path, config_file: Callable[..., Path]) -> None:
    done = run_commands(config_file(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "exit codes [0, 0, 0]" in done.stdout, done.stderr
    assert "facade imported: False" in done.stdout
