"""Notifications people actually receive: the log, a JSON webhook, Telegram; never blocking a cycle.

See `notifier.py` for the delivery rules and `config.py` for the `notify:` section.
"""

from .config import EVENTS, NotifyConfig
from .events import Event
from .notifier import Notifier, build_targets
from .targets import LogTarget, TelegramTarget, WebhookTarget

__all__ = [
    "EVENTS",
    "Event",
    "LogTarget",
    "Notifier",
    "NotifyConfig",
    "TelegramTarget",
    "WebhookTarget",
    "build_targets",
]
