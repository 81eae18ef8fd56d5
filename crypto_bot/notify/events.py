"""Event: one thing the bot tells people about (a fill, a pressure level entered, a leak site, ...)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# Events that report trouble: the log notifier writes them as warnings.
TROUBLE = frozenset({"pressure", "leak", "recycle", "exchange", "phase_failure"})


@dataclass(frozen=True, slots=True)
class Event:
    """`kind` is one of `config.EVENTS`; `subject` tells events of one kind apart for the rate limit
    (the level, the phase, the leaking site); `details` are JSON values for webhooks."""

    kind: str
    message: str
    subject: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)
    suppressed: int = 0  # events of the same kind and subject the rate limit held back before this one

    @property
    def text(self) -> str:
        """The message as a person reads it, with what the rate limit held back."""
        if not self.suppressed:
            return self.message
        return f"{self.message} ({self.suppressed} more like it held back by notify.rate_limit_seconds)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "subject": self.subject,
            "message": self.text,
            "time": self.timestamp,
            "suppressed": self.suppressed,
            "details": self.details,
        }
