"""Notifier: hands events to every target without ever blocking the caller.

Each target has its own bounded queue and worker thread, so a webhook that times out delays
neither Telegram nor the trading cycle; a full queue drops the event and counts it, a failed
delivery is logged and counted, and the next event is tried as usual. Trouble (pressure, leaks,
outages, failures) of one kind and subject passes at most once per `rate_limit_seconds`; what is
held back is counted and named in the next event that passes, so a flapping level does not spam.
Messages are redacted as log records are (`crypto_bot.redaction`): registered secrets never leave.
Start, stop and fills are never held back. Thread-safe: the event loop and the memory manager's
maintenance thread both publish.

See also: `targets.py` (what one delivery does), `config.py` (the `notify:` section).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from crypto_bot import redaction

from .config import EVENTS, NotifyConfig
from .events import TROUBLE, Event
from .targets import LogTarget, Target, TelegramTarget, WebhookTarget

logger = logging.getLogger(__name__)

__all__ = ["Notifier", "build_targets"]

RECENT_EVENTS = 50  # kept for the status page's alerts table
_STOP = object()


class _Worker:
    """One target's bounded queue and the daemon thread that delivers from it."""

    target: Target
    delivered: int
    failed: int
    dropped: int
    last_error: str | None

    def __init__(self, target: Target, queue_size: int) -> None:
        self.target = target
        self.delivered = self.failed = self.dropped = 0
        self.last_error = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name=f"notify-{target.name}", daemon=True)
        self._thread.start()

    def offer(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is _STOP:
                    return
                self.target.send(event)
                self.delivered += 1
            except Exception as error:  # the boundary: one target failing never stops the others or the bot
                self.failed += 1
                self.last_error = redaction.redact(f"{type(error).__name__}: {error}")
                logger.warning(
                    "notifier %s could not deliver a %s event: %s", self.target.name, event.kind, self.last_error
                )
            finally:
                self._queue.task_done()

    def flush(self, deadline: float) -> bool:
        """Wait until every queued event was delivered or failed, or `deadline` (time.monotonic) passed."""
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self, deadline: float) -> None:
        try:
            self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            return  # still busy with a slow target: the daemon thread ends with the process
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def stats(self) -> dict[str, Any]:
        return {
            "queued": self._queue.qsize(),
            "delivered": self.delivered,
            "failed": self.failed,
            "dropped": self.dropped,
            "last_error": self.last_error,
        }


class Notifier:
    """Publishes events to its targets (see the module docstring); `notify(...)` is the bot's notifier protocol."""

    events: frozenset[str]
    rate_limit_seconds: float
    suppressed: int

    def __init__(
        self,
        targets: Iterable[Target],
        *,
        events: Iterable[str] = EVENTS,
        rate_limit_seconds: float = 300.0,
        queue_size: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.events = frozenset(events)
        self.rate_limit_seconds = rate_limit_seconds
        self.suppressed = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._last_sent: dict[tuple[str, str], float] = {}
        self._held_back: dict[tuple[str, str], int] = {}
        self._workers = [_Worker(target, queue_size) for target in targets]
        self._recent: deque[Event] = deque(maxlen=RECENT_EVENTS)

    @classmethod
    def from_config(cls, config: NotifyConfig, environ: Mapping[str, str] = os.environ) -> Notifier:
        return cls(
            build_targets(config, environ),
            events=config.events,
            rate_limit_seconds=config.rate_limit_seconds,
            queue_size=config.queue_size,
        )

    @property
    def target_names(self) -> list[str]:
        return [worker.target.name for worker in self._workers]

    def notify(self, message: str, *, event: str, subject: str = "", details: dict[str, Any] | None = None) -> None:
        """Publish one event (the bot's notifier protocol; never blocks)."""
        self.publish(Event(event, message, subject, details or {}))

    def publish(self, event: Event) -> bool:
        """Queue `event` for every target; False when its kind is not enabled or the rate limit held it back."""
        if event.kind not in self.events:
            return False
        event = replace(event, message=redaction.redact(event.message))  # an error's text may echo a secret
        key = (event.kind, event.subject)
        with self._lock:
            now = self._clock()
            if event.kind in TROUBLE:
                last = self._last_sent.get(key)
                if last is not None and now - last < self.rate_limit_seconds:
                    self._held_back[key] = self._held_back.get(key, 0) + 1
                    self.suppressed += 1
                    return False
                self._last_sent[key] = now
                if held := self._held_back.pop(key, 0):
                    event = replace(event, suppressed=held)
            self._recent.append(event)
        for worker in self._workers:
            worker.offer(event)
        return True

    def recent_events(self) -> list[Event]:
        """The last events that passed, newest first (the status page's alerts table)."""
        with self._lock:
            return list(reversed(self._recent))

    def flush(self, timeout_seconds: float) -> bool:
        """Wait up to `timeout_seconds` for every queued event to be delivered or fail; True when none is left."""
        deadline = time.monotonic() + timeout_seconds
        return all([worker.flush(deadline) for worker in self._workers])

    def close(self, timeout_seconds: float = 5.0) -> None:
        """Deliver what is queued (waiting at most `timeout_seconds` in all), then end the workers."""
        deadline = time.monotonic() + timeout_seconds
        for worker in self._workers:
            worker.close(deadline)

    def stats(self) -> dict[str, Any]:
        """Per target: queued, delivered, failed, dropped, last error; and the events the rate limit held back."""
        return {
            "targets": {worker.target.name: worker.stats() for worker in self._workers},
            "suppressed": self.suppressed,
            "events": sorted(self.events),
        }


def build_targets(config: NotifyConfig, environ: Mapping[str, str] = os.environ) -> list[Target]:
    """The targets the section configures; the Telegram token is read here and registered as a secret."""
    targets: list[Target] = [LogTarget()] if config.log else []
    if config.webhook_url is not None:
        targets.append(
            WebhookTarget(
                config.webhook_url,
                headers=config.webhook_headers,
                template=config.webhook_template,
                timeout_seconds=config.timeout_seconds,
            )
        )
    if config.telegram_chat_id is not None:
        token = environ.get(config.telegram_token_variable, "")
        if not token:  # the settings' check refuses this config; a section built by hand gets the same words
            raise ValueError(
                f"notify.telegram_chat_id is set but the environment variable {config.telegram_token_variable} "
                "(notify.telegram_token_variable) holding the bot token is not"
            )
        redaction.register_secret(token)
        targets.append(
            TelegramTarget(
                token, config.telegram_chat_id, api_url=config.telegram_api_url, timeout_seconds=config.timeout_seconds
            )
        )
    return targets
