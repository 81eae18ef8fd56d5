"""Reading a config file: duplicate and non-string keys, bad YAML, binary and non-UTF-8 files."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto_bot.config_file import parse_yaml, read_config_file
from crypto_bot.memory import ConfigError


def test_a_repeated_section_is_refused_naming_the_key_and_both_lines():
    text = "paper:\n  fee_rate: 0.001\n  slippage_bps: 5\nrisk: {}\npaper:\n  starting_balance: 1\n"
    with pytest.raises(ConfigError, match=r"duplicate key 'paper' on lines 1 and 5"):
        parse_yaml(text)


def test_a_duplicate_at_any_depth_is_refused():
    with pytest.raises(ConfigError, match=r"duplicate key 'fee_rate' on lines 2 and 3"):
        parse_yaml("paper:\n  fee_rate: 0.001\n  fee_rate: 0.002\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'a' on lines 2 and 2"):
        parse_yaml("items:\n  - {a: 1, a: 2}\n")


def test_merge_keys_may_be_overridden():
    assert parse_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")["other"] == {"x": 3, "y": 2}


def test_a_non_string_key_is_refused_with_its_line():
    with pytest.raises(ConfigError, match=r"line 2: key 1 must be a string"):
        parse_yaml("symbols: [BTC/USDT]\nmemory: {1: 2}\n")


def test_invalid_yaml_is_one_line_with_line_and_column():
    with pytest.raises(ConfigError, match=r"^not valid YAML at line 2, column 1: expected ',' or '\]'") as caught:
        parse_yaml("a: [1, 2\n")
    assert "\n" not in str(caught.value)


def test_a_non_utf8_file_is_refused_naming_the_file(tmp_path: Path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("paper:\n  note: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"config file {path} is not UTF-8 text \(line 2 has byte 0xe9\)"):
        read_config_file(path)


def test_a_binary_file_is_refused_naming_the_file(tmp_path: Path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(ConfigError, match=rf"config file {path} is binary"):
        read_config_file(path)


def test_a_missing_file_is_refused_naming_the_file(tmp_path: Path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match=rf"cannot read config file {path}: No such file"):
        read_config_file(path)


def test_errors_in_a_file_name_the_file(tmp_path: Path):
    path = tmp_path / "dup.yaml"
    path.write_text("a: 1\na: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"config file {path}: duplicate key 'a' on lines 1 and 2"):
        read_config_file(path)
