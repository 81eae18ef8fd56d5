"""Argument checks shared by every module: one message format, `<name> must be <allowed>, got <value>`.

These guard function and constructor arguments (a programming error raises ValueError or
TypeError at the call). Configuration files are validated by `config.py` and `crypto_bot.settings`,
which name the config key instead.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable
from typing import Any

# Sizes above this are not real (256 TiB): refusing them keeps every byte sum far from overflow.
MAX_SIZE_BYTES = 1 << 48


def _reject(name: str, allowed: str, value: Any) -> ValueError:
    return ValueError(f"{name} must be {allowed}, got {value!r}")


def _bounds(minimum: float | None, maximum: float | None, minimum_open: bool) -> str:
    if minimum is not None and maximum is not None:
        return f" in {'(' if minimum_open else '['}{minimum}, {maximum}]"
    if minimum is not None:
        return f" {'>' if minimum_open else '>='} {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def _within(value: float, minimum: float | None, maximum: float | None, minimum_open: bool) -> bool:
    if minimum is not None and (value <= minimum if minimum_open else value < minimum):
        return False
    return maximum is None or value <= maximum


def integer(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None, optional: bool = False
) -> int | None:
    """An int (numpy integers too, never a bool) within [minimum, maximum]; None passes when optional."""
    if value is None and optional:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and _within(value, minimum, maximum, False):
        return int(value)
    raise _reject(name, f"an integer{_bounds(minimum, maximum, False)}{' or None' if optional else ''}", value)


def number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    minimum_open: bool = False,
    optional: bool = False,
) -> float | None:
    """A finite real number (never a bool) within the bounds; None passes when optional."""
    if value is None and optional:
        return None
    if (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and _within(value, minimum, maximum, minimum_open)
    ):
        return float(value)
    bounds = _bounds(minimum, maximum, minimum_open)
    raise _reject(name, f"a finite number{bounds}{' or None' if optional else ''}", value)


def positive(name: str, value: Any, *, optional: bool = False) -> float | None:
    """A finite number > 0 (seconds, prices, periods); None passes when optional."""
    return number(name, value, minimum=0, minimum_open=True, optional=optional)


def size_bytes(name: str, value: Any, *, optional: bool = False) -> int | None:
    """A whole number of bytes in [0, MAX_SIZE_BYTES]; a float with no fraction is accepted."""
    if value is None and optional:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value <= MAX_SIZE_BYTES:
        return int(value)
    raise _reject(name, f"a number of bytes in [0, 2**48]{' or None' if optional else ''}", value)


def text(name: str, value: Any) -> str:
    """A non-empty string."""
    if isinstance(value, str) and value:
        return value
    raise _reject(name, "a non-empty string", value)


def hashable(name: str, value: Any) -> Hashable:
    """A value that can be hashed (TypeError otherwise, as dict raises)."""
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"{name} must be hashable, got an unhashable {type(value).__name__}") from None
    return value
