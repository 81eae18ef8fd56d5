"""NotifyConfig: the `notify:` section, who is told what and how often.

Covers the section's keys and its own cross-field rules. Not covered: whether the Telegram token's
environment variable is set (`crypto_bot.settings` checks the environment), or sending
(`targets.py`, `notifier.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from crypto_bot.memory.config import ConfigSection, choices_setting, invalid, mapping_setting, setting

# What the bot tells people about (README "Operator surface" lists them with an example each).
EVENTS = ("start", "stop", "fill", "pressure", "leak", "recycle", "exchange", "phase_failure")
DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"


@dataclass(frozen=True)
class NotifyConfig(ConfigSection):
    """The notifiers (the log, a JSON webhook, Telegram), the events they get and the rate limit."""

    key_prefix: ClassVar[str] = "notify."

    events: tuple[str, ...] = choices_setting(EVENTS, "the events sent to every notifier", EVENTS)
    rate_limit_seconds: float = setting(
        300.0, "one event of a kind and subject (a level, a phase, a site) at most this often; the rest are counted",
        float, minimum=0, maximum=86_400,
    )
    queue_size: int = setting(
        100, "events waiting per notifier; more are dropped and counted", int, minimum=1, maximum=100_000
    )
    timeout_seconds: float = setting(
        5.0, "timeout of one delivery (HTTP connect and answer)", float, minimum=0, minimum_open=True, maximum=300
    )
    log: bool = setting(
        False,
        "also write each event as one uniform line through the crypto_bot.notify logger (the parts that raise "
        "an event log it in their own words already)",
        bool,
    )
    webhook_url: str | None = setting(None, "POST each event as JSON to this http(s) URL", str, optional=True)
    webhook_headers: Mapping[str, Any] = mapping_setting("extra HTTP headers of the webhook's requests")
    webhook_template: Mapping[str, Any] = mapping_setting(
        "the webhook's JSON body, its strings filled with $event, $message, $time, $subject "
        "(empty: the event as JSON); e.g. {text: 'crypto-bot: $message'}"
    )
    telegram_chat_id: str | None = setting(None, "send each event to this Telegram chat", str, optional=True)
    telegram_token_variable: str = setting(
        "CRYPTO_BOT_TELEGRAM_TOKEN", "environment variable holding the Telegram bot token (never the token)", str
    )
    telegram_api_url: str = setting(DEFAULT_TELEGRAM_API_URL, "the Telegram Bot API's base URL", str)

    def __post_init__(self) -> None:
        if isinstance(self.events, list):  # as read from YAML; hashable and immutable from here
            object.__setattr__(self, "events", tuple(self.events))
        for name in ("webhook_headers", "webhook_template"):
            if getattr(self, name) is None:  # the key written with every entry commented out
                object.__setattr__(self, name, {})
        super().__post_init__()

    def _validate_urls(self) -> list[str]:
        urls = (("webhook_url", self.webhook_url), ("telegram_api_url", self.telegram_api_url))
        return [
            invalid(f"notify.{key}", url, "an http:// or https:// URL with a host")
            for key, url in urls
            if url is not None and not _http_url(url)
        ]

    def _validate_header_values(self) -> list[str]:
        return [
            invalid(f"notify.webhook_headers.{name}", value, "a string")
            for name, value in self.webhook_headers.items()
            if not isinstance(value, str)
        ]


def _http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)
