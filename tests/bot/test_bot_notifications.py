"""The bot's events reach real notifiers: a forced PRESSURE at a loopback webhook and Telegram stub within one
cycle, fills, memory back to normal, an exchange outage and its recovery, a failing phase, a diagnosed leak."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crypto_bot.bot import build_market
from crypto_bot.memory import MemoryConfig, MemoryManager, PressureLevel
from crypto_bot.memory.diagnosis import DiagnosisSettings
from crypto_bot.settings import Settings, parse_settings
from tests.bot.loopback import DELIVERY_WAIT_SECONDS, Receiver, receiving
from tests.bot.support import Session
from tests.fakes import FakeClock
from tests.memory.support import FakeProbe
from tests.memory.test_leak_reports import _LEAKED, leaking_line
from tests.memory.test_leak_reports import cycles as leak_cycles

TOKEN = "777:loopback-telegram"


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


@pytest.fixture
def telegram() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


@pytest.fixture
def notified_settings(
    config_dict: Callable[..., dict[str, Any]], webhook: Receiver, telegram: Receiver, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Settings whose notifiers are the loopback webhook and Telegram stub (no rate limit)."""
    monkeypatch.setenv("CRYPTO_BOT_TELEGRAM_TOKEN", TOKEN)

    def build(**notify: Any) -> Settings:
        section = {
            "webhook_url": webhook.url + "/hook",
            "telegram_chat_id": "-100200",
            "telegram_api_url": telegram.url,
            "rate_limit_seconds": 0,
            **notify,
        }
        return parse_settings(config_dict(notify=section))

    return build


def events(receiver: Receiver) -> list[str]:
    return [body["event"] for body in receiver.bodies()]


def flushed(session: Session) -> None:
    assert session.bot.notifier.flush(DELIVERY_WAIT_SECONDS)


def test_a_forced_pressure_reaches_the_webhook_and_telegram_within_one_cycle(
    start: Callable[..., Session],
    notified_settings: Callable[..., Settings],
    webhook: Receiver,
    telegram: Receiver,
    system_memory_used: Callable[[float], None],
) -> None:
    system_memory_used(85.0)  # between memory_threshold (0.8) and aggressive_cleanup_threshold (0.9)
    session = start(notified_settings(events=["pressure"]))
    session.cycle()
    flushed(session)
    [hook] = webhook.bodies()
    assert hook["event"] == "pressure" and hook["subject"] == "PRESSURE" and hook["details"]["state"] == "entered"
    assert hook["message"].startswith("memory PRESSURE after phase fetch_candidates: ")  # the first phase
    [request] = telegram.requests
    assert request.path == f"/bot{TOKEN}/sendMessage" and request.body["chat_id"] == "-100200"
    assert request.body["text"].startswith("crypto-bot pressure: memory PRESSURE after phase fetch_candidates")


def test_leaving_pressure_is_told_too(
    start: Callable[..., Session],
    notified_settings: Callable[..., Settings],
    webhook: Receiver,
    system_memory_used: Callable[[float], None],
) -> None:
    system_memory_used(85.0)
    session = start(notified_settings(events=["pressure"], rate_limit_seconds=300))  # leaving is not held back
    session.cycle()
    system_memory_used(10.0)
    for _ in range(200):  # the runner reuses a reading for up to ~0.1 s (its cost bound), then sees the drop
        session.cycle()
        if session.bot.runner.last_report[-1].pressure_level < PressureLevel.PRESSURE:
            break
    flushed(session)
    bodies = webhook.bodies()
    assert [body["details"]["state"] for body in bodies] == ["entered", "left"]
    assert bodies[-1]["subject"] == "left PRESSURE" and bodies[-1]["message"].startswith("memory left PRESSURE after phase")


def test_fills_are_sent_with_their_figures(
    start: Callable[..., Session], notified_settings: Callable[..., Settings], webhook: Receiver
) -> None:
    session = start(notified_settings(events=["fill"]))
    session.until_a_position_opens()
    flushed(session)
    fill = webhook.bodies()[0]
    position = next(iter(session.bot.broker.positions.values()))
    assert fill["event"] == "fill" and fill["message"].startswith("opened ")
    assert fill["details"]["action"] == "open" and fill["details"]["symbol"] in {p.symbol for p in session.bot.broker.positions.values()}
    assert fill["details"]["price"] > 0 and position.symbol in {body["subject"] for body in webhook.bodies()}


class PausingMarket:
    """The simulated market, reporting a paused source (as CcxtMarket.stats() does in an outage) while `down`."""

    def __init__(self, market: Any) -> None:
        self.market = market
        self.down = False

    def stats(self) -> dict[str, Any]:
        stats = self.market.stats()
        return {**stats, "paused": self.down, "pause_reason": "binance unavailable (503)" if self.down else None}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.market, name)


def test_an_exchange_outage_and_its_recovery_are_told_once_each(
    start: Callable[..., Session], notified_settings: Callable[..., Settings], webhook: Receiver
) -> None:
    settings = notified_settings(events=["exchange"])
    market = PausingMarket(build_market(settings))
    session = start(settings, market=market)
    session.cycle()
    market.down = True
    for _ in range(3):
        session.cycle()
    assert session.bot.exchange_down == "binance unavailable (503)"
    market.down = False
    session.cycle()
    flushed(session)
    assert [body["message"] for body in webhook.bodies()] == [
        "exchange outage: binance unavailable (503)",
        "exchange recovered after: binance unavailable (503)",
    ]


def test_a_failing_phase_is_told_with_its_name(
    start: Callable[..., Session], notified_settings: Callable[..., Settings], webhook: Receiver
) -> None:
    session = start(notified_settings(events=["phase_failure"]))

    def broken(*args: Any) -> None:
        raise RuntimeError("plugin exploded")

    session.bot.strategy.on_cycle_end = broken
    session.cycle()
    flushed(session)
    [body] = webhook.bodies()
    assert body["subject"] == "monitor" and body["message"] == "phase monitor failed: RuntimeError('plugin exploded')"


def test_a_diagnosed_leak_is_sent_with_the_line_it_names(
    start: Callable[..., Session], notified_settings: Callable[..., Settings], webhook: Receiver, tmp_path: Path
) -> None:
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is already tracing in this interpreter")
    clock, probe = FakeClock(), FakeProbe()
    config = MemoryConfig(enable_background_cleanup=False, leak_window_samples=3, leak_slope_threshold_mb_per_hour=1)
    memory = MemoryManager(config, probe=probe, clock=clock, diagnosis=DiagnosisSettings(window_passes=2),
                           report_dir=tmp_path / "data")
    session = start(notified_settings(events=["leak"]), memory=memory)
    try:
        leak_cycles(memory, clock, probe, 12)  # a confirmed leak, then a diagnosis over two maintenance passes
    finally:
        memory.stop()
        _LEAKED.clear()
    flushed(session)
    [body] = webhook.bodies()
    assert body["event"] == "leak" and body["subject"] == leaking_line()
    assert body["message"].startswith("leak diagnosis") and leaking_line() in body["message"]
