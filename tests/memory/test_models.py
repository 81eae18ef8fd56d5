"""ModelRegistry behaviour: on-demand loading, single flight, pinning, idle unloading, release checks, sizes."""

from __future__ import annotations

import logging
import pickle
import sys
import threading
import time

import numpy as np
import pytest

from crypto_bot.memory.models import ModelRecord, ModelRegistry, ModelUnavailableError
from crypto_bot.memory.sizing import sizeof
from tests.fakes import FakeClock

MIB = 1024 * 1024
THREADS = 8


class Model:
    """A picklable, weakly referenceable model with a known payload."""

    def __init__(self, payload_bytes: int = 1000) -> None:
        self.payload = bytes(payload_bytes)


class UnpicklableModel:
    def __init__(self) -> None:
        self.lock = threading.Lock()


class CountingLoader:
    """Builds a fresh Model per call, optionally after `release` is set, optionally failing."""

    def __init__(self, *, release: threading.Event | None = None, error: Exception | None = None) -> None:
        self.calls = 0
        self.release = release
        self.error = error

    def __call__(self) -> Model:
        self.calls += 1
        if self.release is not None:
            self.release.wait(timeout=10)
        if self.error is not None:
            raise self.error
        return Model()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def leaks() -> list[tuple[str, int]]:
    return []


@pytest.fixture
def registry(clock, leaks) -> ModelRegistry:
    return ModelRegistry(idle_seconds=3600, clock=clock, on_leak=lambda name, size: leaks.append((name, size)))


def blocked_in_threading_wait(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "wait" and frame.f_globals.get("__name__") == "threading":
            return True
        frame = frame.f_back
    return False


def wait_until_all_blocked(threads: list[threading.Thread]) -> None:
    """Poll until every thread waits on a threading primitive (the loader's event or the in-flight load)."""
    deadline = time.monotonic() + 10
    while not all(blocked_in_threading_wait(sys._current_frames().get(t.ident)) for t in threads):
        if time.monotonic() > deadline:
            pytest.fail("the threads never all blocked waiting for the load")
        time.sleep(0.001)


def get_from_threads(registry: ModelRegistry, name: str, release: threading.Event) -> tuple[list, list]:
    """Call get(name) from THREADS threads at once, letting the loader finish only when all wait."""
    results: list = []
    errors: list = []

    def call() -> None:
        try:
            results.append(registry.get(name))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    wait_until_all_blocked(threads)
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    return results, errors


# ----------------------------------------------------------------- loading


def test_get_loads_on_demand_and_only_once(registry):
    loader = CountingLoader()
    registry.register("m", loader=loader)
    assert loader.calls == 0
    first = registry.get("m")
    assert registry.get("m") is first
    assert loader.calls == 1
    record = registry.record("m")
    assert record.loaded and record.loads == 1


def test_concurrent_gets_share_one_load(registry):
    release = threading.Event()
    loader = CountingLoader(release=release)
    registry.register("m", loader=loader)
    results, errors = get_from_threads(registry, "m", release)
    assert errors == []
    assert loader.calls == 1
    assert len(results) == THREADS
    assert all(result is results[0] for result in results)


def test_loader_failure_reaches_every_waiter(registry):
    release = threading.Event()
    registry.register("m", loader=CountingLoader(release=release, error=RuntimeError("disk gone")))
    results, errors = get_from_threads(registry, "m", release)
    assert results == []
    assert len(errors) == THREADS
    assert all(isinstance(error, RuntimeError) and str(error) == "disk gone" for error in errors)


def test_failed_load_caches_nothing_and_counts_a_failure(registry):
    loader = CountingLoader(error=RuntimeError("disk gone"))
    registry.register("m", loader=loader)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            registry.get("m")
    assert loader.calls == 2
    record = registry.record("m")
    assert not record.loaded
    assert record.load_failures == 2
    assert registry.loaded_bytes == 0


def test_loader_returning_none_is_a_load_failure(registry):
    registry.register("m", loader=lambda: None)
    with pytest.raises(ModelUnavailableError, match="returned None"):
        registry.get("m")
    assert registry.record("m").load_failures == 1


def test_loader_runs_outside_the_registry_lock(registry):
    seen = []

    def loader() -> Model:
        other_thread = threading.Thread(target=lambda: seen.append(len(registry)))
        other_thread.start()
        other_thread.join(timeout=10)
        return Model()

    registry.register("m", loader=loader)
    registry.get("m")
    assert seen == [1]


def test_load_time_is_recorded_on_the_registry_clock(registry, clock):
    def slow_loader() -> Model:
        clock.now += 2.5
        return Model()

    registry.register("m", loader=slow_loader)
    registry.get("m")
    assert registry.record("m").load_seconds == pytest.approx(2.5)


# ----------------------------------------------------------------- pinning and unloading


@pytest.mark.parametrize(
    "unload",
    [
        lambda registry: registry.unload_all(),
        lambda registry: registry.unload_idle(now=1e12),
        lambda registry: registry.unload("m"),
    ],
    ids=["unload_all", "unload_idle", "unload"],
)
def test_model_in_use_is_never_unloaded(registry, unload):
    registry.register("m", loader=CountingLoader(), size_bytes=100)
    with registry.use("m") as model:
        assert unload(registry) == 0
        assert registry.record("m").loaded
        assert registry.get("m") is model


def test_use_releases_its_pin_on_exit(registry):
    registry.register("m", loader=CountingLoader(), size_bytes=100)
    with registry.use("m"):
        assert registry.record("m").in_use == 1
    assert registry.record("m").in_use == 0
    assert registry.unload_all() == 100


def test_use_releases_its_pin_when_the_load_fails(registry):
    registry.register("m", loader=CountingLoader(error=RuntimeError("disk gone")))
    with pytest.raises(RuntimeError):
        with registry.use("m"):
            pass
    assert registry.record("m").in_use == 0


def test_pinned_model_survives_unload_all_and_unload_idle(registry):
    registry.register("m", Model(), size_bytes=100, pinned=True)
    assert registry.unload_all() == 0
    assert registry.unload_idle(now=1e12) == 0
    assert registry.record("m").loaded


def test_explicit_unload_frees_a_pinned_model(registry):
    registry.register("m", loader=CountingLoader(), size_bytes=100, pinned=True)
    registry.get("m")
    assert registry.unload("m") == 100
    assert not registry.record("m").loaded


def test_idle_model_is_unloaded_and_reloaded_through_its_loader(registry, clock):
    loader = CountingLoader()
    registry.register("m", loader=loader, size_bytes=100)
    registry.get("m")
    clock.now += 3600
    assert registry.unload_idle() == 0  # idle exactly idle_seconds: not yet
    clock.now += 1
    assert registry.unload_idle() == 100
    assert not registry.record("m").loaded
    registry.get("m")
    assert loader.calls == 2
    assert registry.record("m").loads == 2


def test_touch_postpones_the_idle_unload(registry, clock):
    registry.register("m", Model(), size_bytes=100)
    clock.now += 3000
    registry.touch("m")
    clock.now += 3000
    assert registry.unload_idle() == 0


def test_unload_of_an_unloaded_model_frees_nothing(registry):
    registry.register("m", loader=CountingLoader())
    assert registry.unload("m") == 0


def test_model_without_loader_is_unavailable_after_unload(registry):
    registry.register("m", Model())
    registry.unload("m")
    with pytest.raises(ModelUnavailableError, match="without a loader") as raised:
        registry.get("m")
    assert isinstance(raised.value, LookupError)


def test_loaded_bytes_follow_loads_and_unloads(registry):
    registry.register("a", Model(), size_bytes=100)
    registry.register("b", loader=CountingLoader(), size_bytes=50)
    assert registry.loaded_bytes == 100
    registry.get("b")
    assert registry.loaded_bytes == 150
    registry.unload("a")
    assert registry.loaded_bytes == 50
    registry.unregister("b")
    assert registry.loaded_bytes == 0


def test_reregistering_replaces_and_unloads_the_old_model(registry, leaks):
    old = Model()
    registry.register("m", old, size_bytes=100)
    registry.register("m", Model(), size_bytes=30)
    assert registry.loaded_bytes == 30
    assert len(registry) == 1
    assert registry.get("m") is not old
    assert registry.check_released() == ["m"]  # `old` is still held by this test
    assert leaks == [("m", 100)]


def test_unregister_forgets_the_model(registry):
    registry.register("m", Model())
    assert registry.unregister("m")
    assert "m" not in registry
    assert not registry.unregister("m")


@pytest.mark.parametrize(
    "call",
    [
        lambda registry: registry.get("nope"),
        lambda registry: registry.unload("nope"),
        lambda registry: registry.touch("nope"),
        lambda registry: registry.record("nope"),
        lambda registry: registry.use("nope").__enter__(),
    ],
    ids=["get", "unload", "touch", "record", "use"],
)
def test_unknown_name_raises_key_error(registry, call):
    with pytest.raises(KeyError, match="no model registered as 'nope'"):
        call(registry)


# ----------------------------------------------------------------- release checks


def test_unloaded_model_held_elsewhere_is_reported(registry, leaks, caplog):
    registry.register("m", loader=CountingLoader(), size_bytes=3 * MIB)
    held = registry.get("m")
    registry.unload("m")
    with caplog.at_level(logging.WARNING, logger="crypto_bot.memory.models"):
        assert registry.check_released() == ["m"]
    assert leaks == [("m", 3 * MIB)]
    assert "'m' (3.0 MiB) is still alive" in caplog.text
    assert held is not None


def test_released_model_is_not_reported(registry, leaks):
    registry.register("m", loader=CountingLoader(), size_bytes=3 * MIB)
    registry.get("m")
    registry.unload_all()
    assert registry.check_released() == []
    assert leaks == []


def test_model_that_cannot_be_weakly_referenced_is_not_checked(registry, leaks):
    held = {"weights": [1.0, 2.0]}
    registry.register("m", held)
    registry.unload("m")
    assert registry.check_released() == []
    assert leaks == []


def test_failing_leak_callback_is_logged_not_raised(clock, caplog):
    def broken_callback(name: str, size_bytes: int) -> None:
        raise RuntimeError("callback bug")

    registry = ModelRegistry(clock=clock, on_leak=broken_callback)
    held = Model()
    registry.register("m", held)
    registry.unload("m")
    with caplog.at_level(logging.ERROR, logger="crypto_bot.memory.models"):
        assert registry.check_released() == ["m"]
    assert "on_leak callback failed" in caplog.text


# ----------------------------------------------------------------- records


def test_records_outlive_the_model_object(registry, clock):
    registry.register("m", loader=CountingLoader(), size_bytes=100)
    registry.get("m")
    clock.now += 5
    registry.unload("m")
    registry.check_released()
    record = registry.record("m")
    assert record == ModelRecord(
        name="m", size_bytes=100, last_used=1000.0, loaded=False, pinned=False, in_use=0, loads=1, unloads=1
    )


def test_records_are_snapshots(registry):
    registry.register("m", Model(), size_bytes=100)
    snapshot = registry.records()[0]
    snapshot.size_bytes = 1
    assert registry.record("m").size_bytes == 100


# ----------------------------------------------------------------- sizes


def test_given_size_is_used_as_is(registry):
    assert registry.register("m", Model(10_000), size_bytes=7).size_bytes == 7


def test_size_is_the_pickle_size(registry):
    model = Model(100_000)
    assert registry.register("m", model).size_bytes == len(pickle.dumps(model, protocol=5))


def test_size_counts_array_buffers(registry):
    weights = np.zeros(1_000_000)
    size_bytes = registry.register("m", weights).size_bytes
    assert weights.nbytes <= size_bytes < weights.nbytes + 1000


def test_size_falls_back_to_rss_growth_during_the_load(clock):
    rss_readings = iter([100 * MIB, 108 * MIB])
    registry = ModelRegistry(clock=clock, rss_probe=lambda: next(rss_readings))
    registry.register("m", loader=UnpicklableModel)
    registry.get("m")
    assert registry.record("m").size_bytes == 8 * MIB


def test_size_falls_back_to_the_sizeof_estimate_when_nothing_else_is_known(clock):
    registry = ModelRegistry(clock=clock, rss_probe=lambda: None)
    registry.register("m", loader=UnpicklableModel)
    model = registry.get("m")
    assert registry.record("m").size_bytes == sizeof(model) > 0


def test_size_of_an_unloaded_model_without_a_given_size_is_zero(registry):
    assert registry.register("m", loader=CountingLoader()).size_bytes == 0


# ----------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "args, kwargs, argument",
    [
        (("",), {"loader": Model}, "name"),
        ((42,), {"loader": Model}, "name"),
        (("m",), {"loader": Model, "size_bytes": -1}, "size_bytes"),
        (("m",), {"loader": Model, "size_bytes": 1.5}, "size_bytes"),
        (("m",), {"loader": Model, "size_bytes": True}, "size_bytes"),
        (("m",), {}, "a model or a loader"),
    ],
)
def test_register_rejects_bad_arguments(registry, args, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        registry.register(*args, **kwargs)


def test_register_rejects_a_loader_that_is_not_callable(registry):
    with pytest.raises(TypeError, match="loader"):
        registry.register("m", loader="not callable")


@pytest.mark.parametrize("idle_seconds", [0, -1, float("inf"), float("nan"), True])
def test_registry_rejects_bad_idle_seconds(idle_seconds):
    with pytest.raises(ValueError, match="idle_seconds"):
        ModelRegistry(idle_seconds=idle_seconds)


def test_changing_idle_seconds_is_validated_too(registry):
    with pytest.raises(ValueError, match="idle_seconds"):
        registry.idle_seconds = 0
    registry.idle_seconds = 60
    assert registry.idle_seconds == 60.0
