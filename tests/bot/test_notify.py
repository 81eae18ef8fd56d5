"""Notifiers against loopback HTTP servers: what a webhook and Telegram receive, failures, drops, the rate limit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crypto_bot import redaction
from crypto_bot.memory import ConfigError
from crypto_bot.notify import Event, Notifier, NotifyConfig, TelegramTarget, WebhookTarget, build_targets
from crypto_bot.settings import parse_settings
from tests.bot.loopback import DELIVERY_WAIT_SECONDS, Receiver, receiving
from tests.fakes import FakeClock

TOKEN = "123456:loopback-telegram-token"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


def webhook(receiver: Receiver, **template: str) -> WebhookTarget:
    return WebhookTarget(receiver.url + "/hook", headers={"X-Team": "ops"}, template=template, timeout_seconds=5)


def delivered(notifier: Notifier) -> None:
    assert notifier.flush(DELIVERY_WAIT_SECONDS)
    notifier.close()


def test_a_webhook_receives_the_event_as_json_with_its_headers(receiver: Receiver) -> None:
    notifier = Notifier([webhook(receiver)])
    notifier.notify("memory PRESSURE after phase update_caches", event="pressure", subject="PRESSURE", details={"usage_ratio": 0.85})
    delivered(notifier)
    [request] = receiver.requests
    assert request.path == "/hook" and request.headers["X-Team"] == "ops"
    assert request.body["event"] == "pressure" and request.body["subject"] == "PRESSURE"
    assert request.body["message"] == "memory PRESSURE after phase update_caches"
    assert request.body["details"] == {"usage_ratio": 0.85}


def test_a_webhook_template_is_filled_with_the_event(receiver: Receiver) -> None:
    notifier = Notifier([webhook(receiver, text="crypto-bot $event: $message")])
    notifier.notify("opened long BTC/USDT 0.1 @ 50000", event="fill", subject="BTC/USDT")
    delivered(notifier)
    assert receiver.bodies() == [{"text": "crypto-bot fill: opened long BTC/USDT 0.1 @ 50000"}]


def test_telegram_gets_send_message_for_the_chat_with_the_token_in_the_path(receiver: Receiver) -> None:
    notifier = Notifier([TelegramTarget(TOKEN, "-1001", api_url=receiver.url, timeout_seconds=5)])
    notifier.notify("leak suspected at bot.py:12", event="leak", subject="bot.py:12")
    delivered(notifier)
    [request] = receiver.requests
    assert request.path == f"/bot{TOKEN}/sendMessage"
    assert request.body["chat_id"] == "-1001" and request.body["text"] == "crypto-bot leak: leak suspected at bot.py:12"


def test_a_failing_target_is_counted_and_the_others_still_deliver(receiver: Receiver) -> None:
    with receiving(status=500) as broken:
        notifier = Notifier([webhook(broken), TelegramTarget(TOKEN, "42", api_url=receiver.url, timeout_seconds=5)])
        notifier.notify("phase monitor failed", event="phase_failure", subject="monitor")
        delivered(notifier)
    assert len(receiver.requests) == 1
    targets = notifier.stats()["targets"]
    assert targets["webhook"]["failed"] == 1 and "500" in targets["webhook"]["last_error"]
    assert targets["telegram"]["delivered"] == 1 and targets["telegram"]["failed"] == 0


def test_an_unreachable_target_fails_alone_and_never_shows_the_telegram_token(receiver: Receiver) -> None:
    with receiving() as gone:
        url = gone.url
    notifier = Notifier([TelegramTarget(TOKEN, "42", api_url=url, timeout_seconds=5), webhook(receiver)])
    notifier.notify("started", event="start")
    delivered(notifier)
    targets = notifier.stats()["targets"]
    assert targets["telegram"]["failed"] == 1 and TOKEN not in targets["telegram"]["last_error"]
    assert targets["webhook"]["delivered"] == 1 and len(receiver.requests) == 1


def test_a_hung_target_never_blocks_publishing_and_a_full_queue_drops_and_counts(receiver: Receiver) -> None:
    receiver.gate.clear()  # the endpoint accepts and never answers until the gate opens
    notifier = Notifier([webhook(receiver)], queue_size=2)
    for number in range(6):  # one in flight, two queued, the rest dropped; publish returns each time
        notifier.notify(f"fill {number}", event="fill", subject=str(number))
    stats = notifier.stats()["targets"]["webhook"]
    assert stats["dropped"] >= 3 and stats["queued"] <= 2
    receiver.gate.set()
    delivered(notifier)
    assert len(receiver.requests) + notifier.stats()["targets"]["webhook"]["dropped"] == 6


def test_the_rate_limit_holds_back_a_flapping_level_and_names_the_count_later(receiver: Receiver) -> None:
    clock = FakeClock()
    notifier = Notifier([webhook(receiver)], rate_limit_seconds=300, clock=clock)
    assert notifier.publish(Event("pressure", "memory PRESSURE", "PRESSURE"))
    for _ in range(3):
        clock.advance(10)
        assert not notifier.publish(Event("pressure", "memory PRESSURE", "PRESSURE"))
    assert notifier.publish(Event("pressure", "memory CRITICAL", "CRITICAL"))  # another subject passes
    clock.advance(300)
    assert notifier.publish(Event("pressure", "memory PRESSURE", "PRESSURE"))
    delivered(notifier)
    messages = [body["message"] for body in receiver.bodies()]
    assert messages[0] == "memory PRESSURE" and messages[1] == "memory CRITICAL"
    assert messages[2] == "memory PRESSURE (3 more like it held back by notify.rate_limit_seconds)"
    assert notifier.suppressed == 3


def test_fills_start_and_stop_are_never_rate_limited(receiver: Receiver) -> None:
    notifier = Notifier([webhook(receiver)], rate_limit_seconds=300, clock=FakeClock())
    for _ in range(3):
        notifier.notify("closed BTC/USDT", event="fill", subject="BTC/USDT")
    notifier.notify("started", event="start")
    notifier.notify("started", event="start")
    delivered(notifier)
    assert len(receiver.requests) == 5


def test_events_not_enabled_are_not_sent(receiver: Receiver) -> None:
    notifier = Notifier([webhook(receiver)], events=["pressure"])
    assert not notifier.publish(Event("fill", "opened BTC/USDT"))
    assert notifier.publish(Event("pressure", "memory PRESSURE", "PRESSURE"))
    delivered(notifier)
    assert [body["event"] for body in receiver.bodies()] == ["pressure"]


def test_recent_events_are_newest_first() -> None:
    notifier = Notifier([])
    notifier.notify("started", event="start")
    notifier.notify("opened", event="fill")
    assert [event.kind for event in notifier.recent_events()] == ["fill", "start"]


# ---------------------------------------------------------------- configuration


def test_the_section_builds_the_log_webhook_and_telegram_targets() -> None:
    config = NotifyConfig(log=True, webhook_url="http://127.0.0.1:9/hook", telegram_chat_id="42")
    targets = build_targets(config, {"CRYPTO_BOT_TELEGRAM_TOKEN": TOKEN})
    assert [target.name for target in targets] == ["log", "webhook", "telegram"]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"webhook_url": "hooks.example.com/x"}, ["notify.webhook_url", "an http:// or https:// URL"]),
        ({"events": ["fill", "pressure", "weather"]}, ["notify.events", "a list of some of start, stop, fill"]),
        ({"rate_limit_seconds": -1}, ["notify.rate_limit_seconds", "[0, 86400]"]),
        ({"queue_size": 0}, ["notify.queue_size", "[1, 100000]"]),
        ({"webhook_headers": {"Authorization": 12}}, ["notify.webhook_headers.Authorization", "a string"]),
    ],
)
def test_a_bad_notify_key_is_named_with_its_allowed_values(section: dict, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        NotifyConfig.from_mapping(section)
    [problem] = raised.value.problems
    assert all(part in problem for part in expected), problem


def test_telegram_without_its_token_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRYPTO_BOT_TELEGRAM_TOKEN", raising=False)
    with pytest.raises(ConfigError) as raised:
        parse_settings({"notify": {"telegram_chat_id": "42"}})
    assert raised.value.problems == (
        "notify.telegram_chat_id is set but the environment variable CRYPTO_BOT_TELEGRAM_TOKEN "
        "(notify.telegram_token_variable) holding the bot token is not",
    )


def test_a_registered_secret_in_a_message_is_redacted_before_it_leaves(receiver: Receiver) -> None:
    redaction.register_secret("exchange-api-secret-42")
    notifier = Notifier([webhook(receiver)])
    notifier.notify("stopped after cycle 3: AuthenticationFailed: key exchange-api-secret-42 refused", event="stop")
    delivered(notifier)
    assert receiver.bodies()[0]["message"] == "stopped after cycle 3: AuthenticationFailed: key *** refused"
