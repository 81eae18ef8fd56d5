"""Where events go: the log, a JSON webhook, a Telegram chat. Each `send(event)` raises on failure.

Covers the request each target makes (urllib, with a timeout; nothing else is imported). Not
covered: queueing, retries and the rate limit (`notifier.py`): a target sends once, on the
notifier's worker thread, never on the bot's event loop.
"""

from __future__ import annotations

import json
import logging
import string
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from .events import TROUBLE, Event

logger = logging.getLogger("crypto_bot.notify")

__all__ = ["LogTarget", "Target", "TelegramTarget", "WebhookTarget", "post_json"]


class Target(Protocol):
    name: str

    def send(self, event: Event) -> None: ...


class LogTarget:
    """Each event as one log line: a warning for trouble, else INFO; fills are left out (the broker logs each
    with its fee already)."""

    name = "log"

    def send(self, event: Event) -> None:
        if event.kind == "fill":
            return
        logger.log(logging.WARNING if event.kind in TROUBLE else logging.INFO, "[%s] %s", event.kind, event.text)


def post_json(url: str, body: Any, *, headers: Mapping[str, str], timeout_seconds: float) -> None:
    """POST `body` as JSON; an HTTP error status or a network failure raises (urllib's errors, OSError)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body, default=str).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "crypto-bot", **headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_seconds) as response:  # noqa: S310 - an operator's URL
        response.read()


class WebhookTarget:
    """POSTs each event as JSON: the event itself, or `template` with `$event`, `$message`, `$time` and
    `$subject` filled in its strings (Slack's `{text: "$message"}`, Discord's `{content: "$message"}`)."""

    name = "webhook"

    def __init__(
        self, url: str, *, headers: Mapping[str, str], template: Mapping[str, Any], timeout_seconds: float
    ) -> None:
        self.url = url
        self.headers = dict(headers)
        self.template = dict(template)
        self.timeout_seconds = timeout_seconds

    def body(self, event: Event) -> Any:
        if not self.template:
            return event.to_dict()
        values = {
            "event": event.kind,
            "message": event.text,
            "subject": event.subject,
            "time": datetime.fromtimestamp(event.timestamp, UTC).isoformat(timespec="seconds"),
        }
        return _filled(self.template, values)

    def send(self, event: Event) -> None:
        post_json(self.url, self.body(event), headers=self.headers, timeout_seconds=self.timeout_seconds)


def _filled(template: Any, values: Mapping[str, str]) -> Any:
    """`template` with `$name` placeholders of its strings (keys and nested values too) replaced."""
    if isinstance(template, str):
        return string.Template(template).safe_substitute(values)
    if isinstance(template, Mapping):
        return {_filled(key, values): _filled(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [_filled(item, values) for item in template]
    return template


class TelegramTarget:
    """Bot API `sendMessage` to one chat; the token is part of the URL, so it is never logged (the caller
    registers it with `crypto_bot.redaction`) and errors name the chat, not the URL."""

    name = "telegram"

    def __init__(self, token: str, chat_id: str, *, api_url: str, timeout_seconds: float) -> None:
        self._url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"
        self.chat_id = chat_id
        self.timeout_seconds = timeout_seconds

    def send(self, event: Event) -> None:
        body = {
            "chat_id": self.chat_id,
            "text": f"crypto-bot {event.kind}: {event.text}",
            "disable_web_page_preview": True,
        }
        post_json(self._url, body, headers={}, timeout_seconds=self.timeout_seconds)
