"""Configuration schema: every key once, with its meaning, allowed values and default; MemoryConfig.

Covers: `Setting` (one key), `ConfigSection` (a frozen dataclass of settings, validated once at
construction, cross-field rules as named `_validate_*` methods), `ConfigError` (every problem at
once, each naming its key), the unknown-key message (an old name says what to use instead, a typo
gets "did you mean"), and `MemoryConfig`, the memory subsystem's section.
Not covered: the bot's other sections (`crypto_bot.market.config`, `crypto_bot.execution`,
`crypto_bot.settings`, which composes them) and argument checks of functions (`validation.py`).

The seed's memory keys keep their names and defaults; the newer keys add the container limit, the
pressure target, model idling, the maintenance cadence and leak detection. Strict validation
raises `ConfigError`; the seed-compatible facade's lenient MemoryConfig logs each problem and falls
back to the default, so a running bot keeps running.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import numbers
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """Configuration problems, all of them; each names its key (`problems`, one line each)."""

    problems: tuple[str, ...]

    def __init__(self, *problems: str) -> None:
        self.problems = problems or ("invalid configuration",)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class Setting:
    """One key: what it means, its default and the values it allows (`kind` bool, int, float or str)."""

    default: Any
    meaning: str
    kind: type
    minimum: float | None = None
    maximum: float | None = None
    minimum_open: bool = False
    maximum_open: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False  # null allowed

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is str:
            return isinstance(value, str) and bool(value) and (not self.choices or value in self.choices)
        if isinstance(value, bool):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if self.minimum is not None and (value <= self.minimum if self.minimum_open else value < self.minimum):
            return False
        return self.maximum is None or (value < self.maximum if self.maximum_open else value <= self.maximum)

    @property
    def allowed(self) -> str:
        """The allowed values as a person reads them: "a number in [0, 0.1)"."""
        if self.kind is bool:
            text = "true or false"
        elif self.choices:
            text = "one of " + ", ".join(self.choices)
        elif self.kind is str:
            text = "a non-empty string"
        else:
            text = self._range("an integer" if self.kind is int else "a number")
        return f"{text} or null" if self.optional else text

    def _range(self, noun: str) -> str:
        low, high, low_open, high_open = self.minimum, self.maximum, self.minimum_open, self.maximum_open
        if self.kind is int:  # integers read best with closed bounds: (0, 10) is [1, 9]
            if low is not None and low_open:
                low, low_open = math.floor(low) + 1, False
            if high is not None and high_open:
                high, high_open = math.ceil(high) - 1, False
            if low == 1 and high is None:
                return "a positive integer"
        elif low == 0 and low_open and high is None:
            return "a positive number"
        if low is not None and high is not None:
            return f"{noun} in {'(' if low_open else '['}{_figure(low)}, {_figure(high)}{')' if high_open else ']'}"
        if low is not None:
            return f"{noun} {'>' if low_open else '>='} {_figure(low)}"
        if high is not None:
            return f"{noun} {'<' if high_open else '<='} {_figure(high)}"
        return noun


def _figure(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def setting(default: Any, meaning: str, kind: type, **limits: Any) -> Any:
    """A dataclass field for one key of a ConfigSection (`limits`: the other Setting fields)."""
    return field(default=default, metadata={"setting": Setting(default, meaning, kind, **limits)})


@dataclass(frozen=True, slots=True)
class MappingSetting(Setting):
    """A key whose value is a mapping from names to values (`strategy.params`, `notify.webhook_headers`)."""

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        return isinstance(value, Mapping) and all(isinstance(key, str) for key in value)

    @property
    def allowed(self) -> str:
        return "a mapping of names to values" + (" or null" if self.optional else "")


def mapping_setting(meaning: str) -> Any:
    """A dataclass field for a mapping-valued key, empty by default (null is allowed and reads as empty)."""
    rule = MappingSetting({}, meaning, dict, optional=True)
    return field(default_factory=dict, hash=False, metadata={"setting": rule})


@dataclass(frozen=True, slots=True)
class ChoicesSetting(Setting):
    """A key whose value is a list of some of `choices` (`notify.events`), without repeats."""

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, list | tuple)
            and all(isinstance(item, str) and item in self.choices for item in value)
            and len(set(value)) == len(value)
        )

    @property
    def allowed(self) -> str:
        return "a list of some of " + ", ".join(self.choices)


def choices_setting(default: tuple[str, ...], meaning: str, choices: tuple[str, ...]) -> Any:
    """A dataclass field for a list-of-choices key (read as a tuple)."""
    return field(default=default, metadata={"setting": ChoicesSetting(default, meaning, list, choices=choices)})


def settings_of(section: type) -> dict[str, Setting]:
    """The keys of a ConfigSection class, in file order."""
    return {item.name: item.metadata["setting"] for item in dataclasses.fields(section)}


def invalid(key: str, value: Any, allowed: str) -> str:
    """The one message format for a value outside its allowed values."""
    return f"invalid {key}={value!r}: allowed {allowed}"


def unknown_keys(
    keys: Iterable[Any],
    known: Iterable[str],
    prefix: str = "",
    *,
    renamed: Mapping[str, str] | None = None,
    elsewhere: Mapping[str, str] | None = None,
) -> list[str]:
    """A problem per key that is not in `known`: an old name says what to use instead, a key of
    another section or a typo gets "did you mean", anything else the allowed keys.

    `renamed` maps old dotted keys to what to do instead; `elsewhere` maps the keys of every
    section to their dotted names (a key written in the wrong section).
    """
    known = list(known)
    problems = []
    for key in keys:
        if key in known:
            continue
        dotted = f"{prefix}{key}"
        if renamed and dotted in renamed:
            problems.append(f"{dotted} is not a key of this version: {renamed[dotted]}")
            continue
        close = difflib.get_close_matches(str(key), known, n=1)
        if elsewhere and key in elsewhere:
            problems.append(f"unknown key {dotted}: did you mean {elsewhere[key]}?")
        elif close:
            problems.append(f"unknown key {dotted}: did you mean {prefix}{close[0]}?")
        else:
            problems.append(f"unknown key {dotted}; allowed: {', '.join(known)}")
    return problems


class ConfigSection:
    """Base of the config sections: frozen dataclasses whose fields are `setting`s, checked once.

    `key_prefix` is how the section's keys are written in the file ("risk." for
    risk.max_open_positions). Cross-field rules are methods named `_validate_*` returning the
    problems they find; they run only when every key holds an allowed value. Components take the
    section object and never check it again.
    """

    __slots__ = ()
    key_prefix: ClassVar[str] = ""

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(*problems)

    def problems(self) -> list[str]:
        """Every problem of this section; empty when it is valid."""
        problems = [
            invalid(self.written_prefix() + name, value, rule.allowed)
            for name, rule in settings_of(type(self)).items()
            if not rule.accepts(value := getattr(self, name))
        ]
        if problems:
            return problems
        return [problem for rule in self._rules() for problem in rule(self)]

    @classmethod
    def written_prefix(cls) -> str:
        """`key_prefix`; a section with a key of that name (market.redis.key_prefix) overrides this instead."""
        return cls.key_prefix

    @classmethod
    def _rules(cls) -> list[Callable[[Self], list[str]]]:
        rules: dict[str, Callable[[Self], list[str]]] = {}
        for klass in reversed(cls.__mro__):
            rules.update((name, value) for name, value in vars(klass).items() if name.startswith("_validate_"))
        return list(rules.values())

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], **unknown_options: Any) -> Self:
        """Build from a mapping (a YAML section); unknown keys and invalid values are reported together."""
        known = settings_of(cls)
        problems = unknown_keys(values, known, cls.written_prefix(), **unknown_options)
        try:
            section = cls(**{key: value for key, value in values.items() if key in known})
        except ConfigError as error:
            problems.extend(error.problems)
        if problems:
            raise ConfigError(*problems)
        return section

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def _ratio(default: float, meaning: str) -> Any:
    return setting(default, meaning, float, minimum=0, minimum_open=True, maximum=1)


# Sizes stop at 256 TiB (2**28 MiB), as sizes do everywhere (validation.MAX_SIZE_BYTES); seconds at a
# year: a longer wait overflows the platform's timeout (threading.TIMEOUT_MAX) on some systems.
MAX_MB = 2**28
MAX_SECONDS = 365 * 24 * 3600


def _positive(default: float | None, meaning: str, kind: type = float, maximum: float | None = None) -> Any:
    return setting(default, meaning, kind, minimum=0, minimum_open=True, maximum=maximum, optional=default is None)


def _megabytes(default: float | None, meaning: str) -> Any:
    return _positive(default, meaning, maximum=MAX_MB)


def _seconds(default: float, meaning: str) -> Any:
    return _positive(default, meaning, maximum=MAX_SECONDS)


def _flag(default: bool, meaning: str) -> Any:
    return setting(default, meaning, bool)


@dataclass(frozen=True)
class MemoryConfig(ConfigSection):
    """Settings of the memory manager (thresholds are fractions of the effective memory limit)."""

    strict: ClassVar[bool] = True

    # The seed's keys.
    memory_threshold: float = _ratio(
        0.8, "PRESSURE tier: shrink the lowest-priority caches back to pressure_target_ratio, unload idle models"
    )
    gc_threshold: float = _ratio(0.7, "GC tier: throttled gc.collect() and malloc_trim(0)")
    aggressive_cleanup_threshold: float = _ratio(
        0.9, "CRITICAL tier: clear every evictable cache, unload every unpinned model, alert"
    )
    cache_size_limit_mb: float = _megabytes(500, "one byte budget (MiB) across all managed caches")
    model_cleanup_interval: float = _seconds(300, "seconds between idle-model checks")
    cache_cleanup_interval: float = _seconds(600, "seconds between TTL sweeps")
    max_cache_entries: int = _positive(1000, "default entry limit of new caches", int, maximum=sys.maxsize)
    cache_ttl_seconds: float = _seconds(3600, "default time to live of new caches' entries")
    enable_background_cleanup: bool = _flag(True, "run maintenance on a daemon thread")
    # Container limit, pressure policy, models, maintenance and leak detection.
    process_memory_limit_mb: float | None = _megabytes(None, "a limit (MiB) below the cgroup's and the host's")
    pressure_target_ratio: float = setting(
        0.6, "where the PRESSURE tier shrinks usage back to", float, minimum=0, minimum_open=True, maximum=1,
        maximum_open=True,
    )
    hysteresis_margin_ratio: float = setting(
        0.05, "how far below its threshold usage must fall to leave a level", float, minimum=0, maximum=0.5,
        maximum_open=True,
    )
    maintenance_interval_seconds: float = _seconds(30, "cadence of the maintenance thread")
    model_idle_seconds: float = _seconds(3600, "a model unused this long is unloaded")
    gc_time_fraction: float = _ratio(0.05, "most of the wall time forced collections may take")
    leak_window_samples: int = setting(60, "readings in the leak regression's window", int, minimum=3)
    leak_slope_threshold_mb_per_hour: float = _positive(50, "unmanaged growth (MiB/hour) reported as a leak")
    track_evicted_values: bool = _flag(False, "report evicted values something still holds")

    def _validate_threshold_order(self) -> list[str]:
        if self.gc_threshold <= self.memory_threshold <= self.aggressive_cleanup_threshold:
            return []
        return [
            "thresholds must satisfy gc_threshold <= memory_threshold <= aggressive_cleanup_threshold, got "
            f"{self.gc_threshold} / {self.memory_threshold} / {self.aggressive_cleanup_threshold}"
        ]

    def _validate_pressure_target_below_gc_threshold(self) -> list[str]:
        if self.pressure_target_ratio < self.gc_threshold:
            return []
        allowed = f"a number below gc_threshold ({self.gc_threshold})"
        return [invalid("pressure_target_ratio", self.pressure_target_ratio, allowed)]

    def _validate_hysteresis_margin_below_gc_threshold(self) -> list[str]:
        # A margin as wide as gc_threshold would make the GC level impossible to leave (PressurePolicy refuses it).
        if self.hysteresis_margin_ratio < self.gc_threshold:
            return []
        allowed = f"a number in [0, 0.5) below gc_threshold ({self.gc_threshold})"
        return [invalid("hysteresis_margin_ratio", self.hysteresis_margin_ratio, allowed)]

    def __post_init__(self) -> None:
        if self.strict:
            super().__post_init__()
        else:
            self._fall_back_to_defaults()

    def _fall_back_to_defaults(self) -> None:
        """Lenient: log each problem and use the default (or, for a rule, a value that satisfies it)."""
        for name, rule in settings_of(type(self)).items():
            value = getattr(self, name)
            if not rule.accepts(value):
                self._use(name, rule.default, invalid(name, value, rule.allowed))
        for problem in self._validate_threshold_order():
            logger.warning("%s; using the defaults", problem)
            for name in ("gc_threshold", "memory_threshold", "aggressive_cleanup_threshold"):
                object.__setattr__(self, name, DEFAULTS[name])
        # Both must stay below gc_threshold: the fallback is scaled down to fit a low gc_threshold.
        for problem in self._validate_pressure_target_below_gc_threshold():
            scaled = self.gc_threshold * DEFAULTS["pressure_target_ratio"] / DEFAULTS["gc_threshold"]
            self._use("pressure_target_ratio", min(DEFAULTS["pressure_target_ratio"], scaled), problem)
        for problem in self._validate_hysteresis_margin_below_gc_threshold():
            margin = min(DEFAULTS["hysteresis_margin_ratio"], self.gc_threshold / 2)
            self._use("hysteresis_margin_ratio", margin, problem)

    def _use(self, name: str, value: Any, problem: str) -> None:
        logger.warning("%s; using the default %s=%r", problem, name, value)
        object.__setattr__(self, name, value)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], **unknown_options: Any) -> Self:
        """Build from a mapping (a YAML section); unknown keys are errors, or warnings when lenient."""
        if cls.strict:
            return super().from_mapping(values, **unknown_options)
        for problem in unknown_keys(values, KEYS_IN_ORDER):
            logger.warning("%s; ignored", problem)
        return cls(**{key: value for key, value in values.items() if key in KEYS})

    # A limit below one byte is a one-byte limit: the budget and the probe need a whole, positive number.
    @property
    def cache_size_limit_bytes(self) -> int:
        return max(1, int(self.cache_size_limit_mb * 1024 * 1024))

    @property
    def process_memory_limit_bytes(self) -> int | None:
        mb = self.process_memory_limit_mb
        return None if mb is None else max(1, int(mb * 1024 * 1024))


KEYS_IN_ORDER = tuple(settings_of(MemoryConfig))
DEFAULTS: dict[str, Any] = {name: rule.default for name, rule in settings_of(MemoryConfig).items()}
KEYS = frozenset(DEFAULTS)
