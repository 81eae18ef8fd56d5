"""Property: a config `crypto-bot config check` accepts runs a cycle of the bot without a phase error.

Configs are drawn from the schema itself (every key's Setting: kind, range, choices), mostly in
range and sometimes out of it. Each is written as YAML and given to `load_settings`, the function
`config check` and `run` call; what it accepts is run as `crypto-bot run` runs it: a MemoryManager
built from the settings (its thread started when enabled) and a TradingBot on the simulated market.

Fixed for every example: the market source (simulated: no files, no network), a fresh journal and
the session's trained model (so no example trains one). The strategy plugin is the built-in one or
the example under examples/, with params drawn around the example's (some it refuses). Drawn from a sub-range because they set how
much work a cycle does, not whether it can fail: the number of symbols (1-3), the scanner's new
pairs per cycle (0-3) and the window (at most 1200 candles, enough for the longest EMA span).
"""

from __future__ import annotations

import asyncio
import math
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from crypto_bot.bot import TradingBot
from crypto_bot.memory import ConfigError, MemoryConfig, MemoryManager
from crypto_bot.memory.config import DEFAULTS, Setting, settings_of
from crypto_bot.settings import DEFAULT_SYMBOLS, SECTIONS, TIMEFRAMES, load_settings
from crypto_bot.strategy import required_candles

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

OUT_OF_RANGE_RATIO = 0.01  # per key drawn; so are the configs left to break a cross-field rule:
FOLLOW_THE_RULES_RATIO = 0.9  # with ~25 keys drawn, about half the configs are accepted and run
LARGEST_NUMBER = 1e18  # stands for "unbounded" when a key has no maximum
WORK_CAPS = {("market", "scanner_new_symbols_per_cycle"): 3, ("strategy", "history_candles"): 1200}
FIXED = {("market", "source"), ("strategy", "model_path"), ("storage", "journal_path")}
DRAWN_APART = {  # see plugin(); ccxt is a section of its own; the notifiers' lists and mappings keep their defaults
    ("strategy", "plugin"), ("strategy", "params"), ("market", "ccxt"),
    ("notify", "events"), ("notify", "webhook_headers"), ("notify", "webhook_template"),
}
REFUSED_PARAMS_RATIO = 0.1
EXAMPLE_PLUGIN = str(Path(__file__).resolve().parents[2] / "examples" / "sma_cross.py") + ":SmaCross"


def in_range(rule: Setting, cap: float | None = None) -> st.SearchStrategy[Any]:
    """Values the rule accepts."""
    if rule.kind is bool:
        values: st.SearchStrategy[Any] = st.booleans()
    elif rule.choices:
        values = st.sampled_from(rule.choices)
    elif rule.kind is str:
        values = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_/.", min_size=1, max_size=12)
    else:
        maximum = rule.maximum if rule.maximum is not None else LARGEST_NUMBER
        if cap is not None:
            maximum = min(maximum, cap)
        if rule.kind is int:
            low = int(rule.minimum) + (1 if rule.minimum_open else 0) if rule.minimum is not None else -(10**6)
            high = int(maximum) - (1 if rule.maximum_open and maximum == rule.maximum else 0)
            values = st.integers(low, high)
        else:
            values = st.floats(
                min_value=rule.minimum,
                max_value=maximum,
                exclude_min=rule.minimum_open,
                exclude_max=rule.maximum_open and maximum == rule.maximum,
                allow_nan=False,
                allow_infinity=False,
            )
    return st.one_of(st.none(), values) if rule.optional else values


def out_of_range(rule: Setting) -> st.SearchStrategy[Any]:
    """Values the rule refuses: wrong types, and numbers just past either end."""
    wrong: list[Any] = ["seven", [1]] if rule.kind is not str else [7, ""]
    if rule.kind is not bool:
        wrong.append(True)
    if not rule.optional:
        wrong.append(None)
    if rule.choices:
        wrong.append("elsewhere")
    if rule.kind in (int, float):
        wrong.append(math.nan)
        for bound, step, is_open in ((rule.minimum, -1, rule.minimum_open), (rule.maximum, 1, rule.maximum_open)):
            if bound is not None:
                wrong.append(bound if is_open else bound + step * (1 if rule.kind is int else 1e-6))
    return st.sampled_from(wrong)


def section_values(draw: st.DrawFn, chance: random.Random, name: str, section: type) -> dict[str, Any]:
    values = {}
    for key, rule in settings_of(section).items():
        if (name, key) in FIXED | DRAWN_APART or draw(st.booleans()):  # a key left out takes its default
            continue
        if chance.random() < OUT_OF_RANGE_RATIO:
            values[key] = draw(out_of_range(rule))
        else:
            values[key] = draw(in_range(rule, WORK_CAPS.get((name, key))))
    return values


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    chance = draw(st.randoms(use_true_random=True))  # uniform odds: drawn integers lean to their bounds
    config: dict[str, Any] = {name: section_values(draw, chance, name, section) for name, section in SECTIONS.items()}
    config.update(section_values(draw, chance, "memory", MemoryConfig))  # the seed's layout: memory keys at the top
    config["symbols"] = draw(st.lists(st.sampled_from(DEFAULT_SYMBOLS), min_size=1, max_size=3, unique=True))
    config["timeframes"] = draw(st.lists(st.sampled_from(TIMEFRAMES), min_size=1, max_size=3, unique=True))
    config["strategy"].update(plugin(draw, chance, config["timeframes"]))
    if chance.random() < FOLLOW_THE_RULES_RATIO:
        follow_the_cross_field_rules(config)
    return config


def plugin(draw: st.DrawFn, chance: random.Random, timeframes: list[str]) -> dict[str, Any]:
    """The built-in strategy (by default, or named), or the example with params; now and then params it refuses."""
    kind = draw(st.sampled_from(["default", "built-in", "example"]))
    if kind == "default":
        return {}
    if kind == "built-in":
        return {"plugin": "crypto_bot.strategy.builtin:BuiltinStrategy"}
    fast = draw(st.integers(1, 50))
    params = {"fast": fast, "slow": draw(st.integers(fast + 1, 120)), "timeframe": draw(st.sampled_from(timeframes))}
    if chance.random() < REFUSED_PARAMS_RATIO:
        params.update(draw(st.sampled_from([{"fast": params["slow"]}, {"fast": 0}, {"fsat": 5}])))
    return {"plugin": EXAMPLE_PLUGIN, "params": params}


def follow_the_cross_field_rules(config: dict[str, Any]) -> None:
    """Move in-range values so they satisfy the rules between keys (thresholds, EMA spans, window)."""
    thresholds = ("gc_threshold", "memory_threshold", "aggressive_cleanup_threshold")
    fractions = ("pressure_target_ratio", "hysteresis_margin_ratio")
    memory = {key: config.get(key, DEFAULTS[key]) for key in (*thresholds, *fractions)}
    if all(isinstance(value, float | int) and not isinstance(value, bool) for value in memory.values()):
        gc_threshold, *rest = sorted(memory[key] for key in thresholds)
        config.update(zip(thresholds, (gc_threshold, *rest)))
        fraction = max(memory["pressure_target_ratio"], 1e-6)  # a tiny one times gc_threshold must not reach 0
        config["pressure_target_ratio"] = fraction * gc_threshold  # (0, 1) of gc_threshold
        config["hysteresis_margin_ratio"] = memory["hysteresis_margin_ratio"] * gc_threshold  # [0, 0.5) of it
    strategy = config["strategy"]
    spans = [strategy.get("ema_fast", 12), strategy.get("ema_slow", 26)]
    window = strategy.get("history_candles", 300)
    if all(type(value) is int for value in (*spans, window)):
        fast, slow = sorted(spans)
        strategy["ema_fast"], strategy["ema_slow"] = fast, slow if slow > fast else slow + 1
        strategy["history_candles"] = max(window, required_candles(fast=fast, slow=strategy["ema_slow"]))


def checked(config: dict[str, Any], directory: Path) -> Any:
    """What `config check` says: the settings, or None when it refuses (always with a ConfigError)."""
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    try:
        return load_settings(path)
    except ConfigError:
        return None


async def one_cycle(bot_settings: Any) -> list[Any]:
    """Build and run the bot the way `crypto-bot run` does; the phase reports of its first cycle."""
    memory = MemoryManager(bot_settings.memory)
    bot = TradingBot(bot_settings, memory=memory)
    if bot_settings.memory.enable_background_cleanup:
        memory.start()
    try:
        await bot.prepare_model()
        await bot.run_cycle()
        return bot.runner.last_report
    finally:
        await bot.close()
        memory.stop()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs())
def test_a_config_that_config_check_accepts_runs_a_cycle_without_a_phase_error(
    config: dict[str, Any], trained_model_path: Path
) -> None:
    with tempfile.TemporaryDirectory(prefix="config-property-") as directory:
        config["market"]["source"] = "simulated"
        config["strategy"]["model_path"] = str(trained_model_path)
        config["storage"]["journal_path"] = str(Path(directory) / "journal.sqlite")
        bot_settings = checked(config, Path(directory))
        event("refused" if bot_settings is None else "accepted")
        if bot_settings is None:
            return
        reports = asyncio.run(one_cycle(bot_settings))
    assert [report.name for report in reports if report.error is not None] == [], [r.error for r in reports]
    assert len(reports) == 6
