"""Reading a config file: YAML that refuses what YAML would silently accept.

PyYAML lets a repeated key win over the first (a second `paper:` section replaces the first whole);
here a duplicate at any depth is an error naming the key and both lines. Unreadable, binary or
non-UTF-8 files and non-string keys are errors that name the file (`ConfigFileError`, a ConfigError
whose every problem already names the file). Validation of the values is `crypto_bot.settings`'s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from crypto_bot.memory import ConfigError


class ConfigFileError(ConfigError):
    """The config file cannot be read as YAML; each problem names the file and says what to do."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader whose mappings refuse duplicate and non-string keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:  # the keys written here; `<<` merges may be overridden, so they do not count
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise ConfigError(f"line {line}: key {key!r} must be a string; quote it or use a key from crypto-bot config keys")
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} on lines {seen[key]} and {line}; keep one")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str) -> Any:
    """The document in `text`; ConfigError (with the line) for a duplicate or non-string key or bad YAML."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"not valid YAML{where}: {error.problem or error.context}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"not valid YAML: {error}") from error


def read_config_file(path: str | os.PathLike[str]) -> Any:
    """The YAML document in the file at `path`; every failure is a ConfigFileError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigFileError(
            f"cannot read config file {path}: {error.strerror or error}; give the path of a YAML config "
            "(production_config_enhanced.yaml is the reference)"
        ) from error
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigFileError(
            f"config file {path} is not UTF-8 text (line {line} has byte {data[error.start]:#04x}); "
            "save it as UTF-8 YAML"
        ) from error
    if "\x00" in text:
        raise ConfigFileError(f"config file {path} is binary, not YAML text; give the path of a YAML config")
    try:
        return parse_yaml(text)
    except ConfigError as error:
        raise ConfigFileError(f"config file {path}: {error}") from error
