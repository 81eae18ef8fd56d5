"""MemoryConfig: every setting of the memory subsystem, validated once, in one place.

The seed's keys keep their names and defaults; the newer keys add the container limit, the
pressure target, model idling, the maintenance cadence and leak detection. Strict validation
raises `ConfigError` naming the key and the allowed range; a lenient config (the seed-compatible
facade's) logs that message and falls back to the default, so a running bot keeps running.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration value outside its allowed range; the message names the key."""


def _setting(default: Any, allowed: str, check) -> Any:
    return field(default=default, metadata={"check": check, "allowed": allowed})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ratio(default: float) -> Any:
    return _setting(default, "a number in (0, 1]", lambda v: _is_number(v) and 0 < v <= 1)


def _positive(default: float | None, allowed: str = "a positive number") -> Any:
    if default is None:
        return _setting(None, f"{allowed} or null", lambda v: v is None or (_is_number(v) and v > 0))
    return _setting(default, allowed, lambda v: _is_number(v) and v > 0)


def _flag(default: bool) -> Any:
    return _setting(default, "true or false", lambda v: isinstance(v, bool))


@dataclass
class MemoryConfig:
    """Settings of the memory manager (thresholds are fractions of the effective memory limit)."""

    strict: ClassVar[bool] = True

    # The seed's keys.
    memory_threshold: float = _ratio(0.8)
    gc_threshold: float = _ratio(0.7)
    aggressive_cleanup_threshold: float = _ratio(0.9)
    cache_size_limit_mb: float = _positive(500)
    model_cleanup_interval: float = _positive(300, "a positive number of seconds")
    cache_cleanup_interval: float = _positive(600, "a positive number of seconds")
    max_cache_entries: int = _setting(1000, "a positive integer", lambda v: _is_int(v) and v > 0)
    cache_ttl_seconds: float = _positive(3600, "a positive number of seconds")
    enable_background_cleanup: bool = _flag(True)
    # Container limit, pressure policy, models, maintenance and leak detection.
    process_memory_limit_mb: float | None = _positive(None)
    pressure_target_ratio: float = _setting(0.6, "a number in (0, 1)", lambda v: _is_number(v) and 0 < v < 1)
    hysteresis_margin_ratio: float = _setting(0.05, "a number in [0, 0.5)", lambda v: _is_number(v) and 0 <= v < 0.5)
    maintenance_interval_seconds: float = _positive(30, "a positive number of seconds")
    model_idle_seconds: float = _positive(3600, "a positive number of seconds")
    gc_time_fraction: float = _ratio(0.05)
    leak_window_samples: int = _setting(60, "an integer >= 3", lambda v: _is_int(v) and v >= 3)
    leak_slope_threshold_mb_per_hour: float = _positive(50)
    track_evicted_values: bool = _flag(False)

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if not item.metadata["check"](value):
                self._reject(item.name, value, item.metadata["allowed"])
        if not self.gc_threshold <= self.memory_threshold <= self.aggressive_cleanup_threshold:
            message = (
                "thresholds must satisfy gc_threshold <= memory_threshold <= aggressive_cleanup_threshold, got "
                f"{self.gc_threshold} / {self.memory_threshold} / {self.aggressive_cleanup_threshold}"
            )
            self._fail(message)
            for name in ("gc_threshold", "memory_threshold", "aggressive_cleanup_threshold"):
                setattr(self, name, DEFAULTS[name])
        # Both must stay below gc_threshold; when lenient, the fallback is scaled down to fit a low gc_threshold.
        gc_threshold = self.gc_threshold
        if self.pressure_target_ratio >= gc_threshold:
            self._reject(
                "pressure_target_ratio",
                self.pressure_target_ratio,
                f"a number below gc_threshold ({gc_threshold})",
                fallback=min(
                    DEFAULTS["pressure_target_ratio"],
                    gc_threshold * DEFAULTS["pressure_target_ratio"] / DEFAULTS["gc_threshold"],
                ),
            )
        # A margin as wide as gc_threshold would make the GC level impossible to leave (PressurePolicy refuses it).
        if self.hysteresis_margin_ratio >= gc_threshold:
            self._reject(
                "hysteresis_margin_ratio",
                self.hysteresis_margin_ratio,
                f"a number in [0, 0.5) below gc_threshold ({gc_threshold})",
                fallback=min(DEFAULTS["hysteresis_margin_ratio"], gc_threshold / 2),
            )

    def _reject(self, name: str, value: Any, allowed: str, fallback: Any = None) -> None:
        default = DEFAULTS[name] if fallback is None else fallback
        self._fail(f"invalid memory setting {name}={value!r}: allowed {allowed}", default=(name, default))
        setattr(self, name, default)

    def _fail(self, message: str, default: tuple[str, Any] | None = None) -> None:
        if self.strict:
            raise ConfigError(message)
        suffix = f"; using the default {default[0]}={default[1]!r}" if default else "; using the defaults"
        logger.warning("%s%s", message, suffix)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> MemoryConfig:
        """Build from a mapping (a YAML section); unknown keys are errors (or warnings when lenient)."""
        unknown = sorted(set(values) - KEYS)
        if unknown:
            message = f"unknown memory setting(s) {', '.join(unknown)}; allowed keys: {', '.join(sorted(KEYS))}"
            if cls.strict:
                raise ConfigError(message)
            logger.warning("%s; ignored", message)
        return cls(**{key: value for key, value in values.items() if key in KEYS})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def cache_size_limit_bytes(self) -> int:
        return int(self.cache_size_limit_mb * 1024 * 1024)

    @property
    def process_memory_limit_bytes(self) -> int | None:
        mb = self.process_memory_limit_mb
        return None if mb is None else int(mb * 1024 * 1024)


DEFAULTS: dict[str, Any] = {item.name: item.default for item in dataclasses.fields(MemoryConfig)}
KEYS = frozenset(DEFAULTS)
