"""Which entry store ManagedCache runs on: CRYPTO_BOT_CACHE_BACKEND, the fallback when the C store
does not import (or would turn the GIL back on), and an install that builds without a C compiler."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crypto_bot.memory import _pystore
from crypto_bot.memory.cache import BACKEND_VARIABLE, _choose_store

ROOT = Path(__file__).resolve().parents[2]


class FakeCStore:
    """Stands in for the C store class."""


def c_store_imports() -> type:
    return FakeCStore


def c_store_missing() -> type:
    raise ImportError("No module named 'crypto_bot.memory._cachecore'")


def c_store_forbidden() -> type:
    raise AssertionError("the C store must not be imported")


def test_unset_means_the_c_store_when_it_imports():
    assert _choose_store(None, True, c_store_imports) == ("c", FakeCStore, None)
    assert _choose_store("", True, c_store_imports) == ("c", FakeCStore, None)


def test_unset_falls_back_to_the_python_store_and_says_why():
    backend, store, reason = _choose_store(None, True, c_store_missing)
    assert (backend, store) == ("python", _pystore.CacheCore)
    assert "does not import" in reason and "_cachecore" in reason


def test_python_forces_the_python_store_without_importing_the_c_one():
    assert _choose_store("python", True, c_store_forbidden) == ("python", _pystore.CacheCore, None)


def test_c_forces_the_c_store_and_a_missing_one_is_an_import_error_naming_the_variable():
    assert _choose_store("c", True, c_store_imports) == ("c", FakeCStore, None)
    with pytest.raises(ImportError, match=f"{BACKEND_VARIABLE}=c .*does not import"):
        _choose_store("c", True, c_store_missing)


@pytest.mark.parametrize("value", ["rust", "cpython", "1"])
def test_any_other_value_is_an_error_naming_the_variable_and_the_allowed_values(value):
    with pytest.raises(ValueError, match=f"{BACKEND_VARIABLE} must be one of c, python .*{value!r}"):
        _choose_store(value, True, c_store_forbidden)


def test_without_the_gil_the_default_is_the_python_store_and_c_is_only_taken_when_forced():
    backend, store, reason = _choose_store(None, False, c_store_forbidden)
    assert (backend, store) == ("python", _pystore.CacheCore)
    assert "GIL" in reason
    assert _choose_store("c", False, c_store_imports)[0] == "c"


def run_python(source: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """`source` in a fresh interpreter (the store is chosen once, at import), with the variable set as given."""
    env = {key: value for key, value in os.environ.items() if key != BACKEND_VARIABLE}
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


def test_the_variable_chooses_the_store_of_a_fresh_process():
    result = run_python(
        """
        import sys
        from crypto_bot.memory import ManagedCache, cache_backend
        print(cache_backend(), ManagedCache().stats()["backend"], "crypto_bot.memory._cachecore" in sys.modules)
        """,
        CRYPTO_BOT_CACHE_BACKEND="python",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["python", "python", "False"]


def test_a_process_whose_c_store_does_not_import_logs_the_fallback_once():
    result = run_python(
        """
        import logging, sys
        sys.modules["crypto_bot.memory._cachecore"] = None  # as if it had not been built
        from crypto_bot.memory import ManagedCache, cache_backend
        logging.basicConfig(level=logging.INFO)  # after the import, as the CLI does: the first cache logs
        ManagedCache(), ManagedCache()
        print(cache_backend())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "python"
    assert result.stderr.count("cache store: pure Python, because the C store does not import") == 1


def test_a_bad_value_stops_the_import_with_the_variable_named():
    result = run_python("from crypto_bot.memory import ManagedCache", CRYPTO_BOT_CACHE_BACKEND="rust")
    assert result.returncode != 0
    assert "CRYPTO_BOT_CACHE_BACKEND must be one of c, python (or unset), got 'rust'" in result.stderr


def test_the_build_succeeds_without_a_c_compiler_and_skips_the_c_store(tmp_path):
    for name in ("setup.py", "pyproject.toml", "README.md", "crypto_bot/memory/_cachecore.c"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    result = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", "lib", "--build-temp", "objects"],
        cwd=tmp_path,
        env={**os.environ, "CC": "/bin/false"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "could not be built" in result.stderr and "pure-Python entry store" in result.stderr
    assert list((tmp_path / "lib").rglob("_cachecore*")) == []
