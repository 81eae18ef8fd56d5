"""Secrets never reach a log: a handler-level filter that redacts every registered secret value
and credential-style query parameters (`apiKey=`, `signature=`, ...) in each record's message,
exception text and stack, whichever logger the record came from (ccxt, aiohttp, ours).

Secrets are registered where they are read from the environment (`register_secret`); the CLI
installs the filter on the root logger's handlers (`install`).
"""

from __future__ import annotations

import logging
import os
import re
import threading

REDACTED = "***"
_MIN_SECRET_CHARS = 4  # shorter values would redact ordinary words and numbers

# key=value in URLs, query strings and form bodies; also "key": "value" in echoed JSON
_CREDENTIAL_PARAMETER = re.compile(
    r"""(?ix)
    (?P<name>\b(?:api[_-]?key|apikey|api[_-]?secret|secret|signature|sign|passphrase|password|token|access[_-]?key)\b
        ["']?\s*[=:]\s*["']?)
    (?P<value>[^&\s"',;}]+)
    """
)

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register_secret(value: str) -> None:
    """Redact `value` from every log record from now on (values shorter than 4 characters are refused)."""
    global _secrets
    if not isinstance(value, str) or len(value) < _MIN_SECRET_CHARS:
        raise ValueError(f"a secret must be a string of at least {_MIN_SECRET_CHARS} characters")
    with _lock:
        if value not in _secrets:
            # longest first, so a secret that contains another is replaced whole
            _secrets = tuple(sorted((*_secrets, value), key=len, reverse=True))


def secret_from_environment(argument: str, variable: str) -> str:
    """The value of environment `variable`, registered for redaction; ValueError naming `argument` (the key that
    names the variable) when it is unset, empty or too short to redact."""
    value = os.environ.get(variable, "")
    if not value:
        raise ValueError(f"{argument} names environment variable {variable!r}, which is unset or empty")
    try:
        register_secret(value)
    except ValueError:
        raise ValueError(
            f"{argument} names environment variable {variable!r}, whose value is too short to be a real "
            "credential or to be redacted from logs (fewer than 4 characters)"
        ) from None
    return value


def redact(text: str) -> str:
    """`text` with registered secrets and credential parameters replaced by ***."""
    for secret in _secrets:
        text = text.replace(secret, REDACTED)
    return _CREDENTIAL_PARAMETER.sub(lambda match: match["name"] + REDACTED, text)


class RedactingFilter(logging.Filter):
    """Rewrites each record in place before its handler formats it; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            # formatters render exc_text when it is set, so exc_info stays for code that inspects it
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add one RedactingFilter to every handler of `logger` (the root logger by default)."""
    target = logger if logger is not None else logging.getLogger()
    redacting = RedactingFilter()
    for handler in target.handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(redacting)
    return redacting
