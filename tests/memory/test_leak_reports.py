"""The manager diagnoses a confirmed leak on its own and delivers it: a warning naming path:line,
stats["leak"], an alert, a JSON report file; the on-demand report, and SIGUSR1 writing it."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import signal
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto_bot.memory import MemoryConfig, MemoryManager
from crypto_bot.memory.diagnosis import DiagnosisSettings, Verdict
from crypto_bot.memory.reports import ReportSignal, write_json_report
from tests.fakes import FakeClock
from tests.memory.support import THREAD_WAIT_SECONDS, FakeProbe

KIB = 1024
MIB = 1024 * KIB
PASS_SECONDS = 60.0

_LEAKED: list[bytearray] = []


def leak_one_cycle() -> None:
    _LEAKED.append(bytearray(200 * KIB))  # the leaking line


def leaking_line() -> str:
    lines, first = inspect.getsourcelines(leak_one_cycle)
    offset = next(index for index, line in enumerate(lines) if "bytearray(" in line)
    return f"{inspect.getsourcefile(leak_one_cycle)}:{first + offset}"


@pytest.fixture
def not_tracing() -> Iterator[None]:
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is already tracing in this interpreter")
    yield
    assert not tracemalloc.is_tracing()
    _LEAKED.clear()


@pytest.fixture
def manager(clock: FakeClock, probe: FakeProbe, alerts: list, tmp_path: Path, not_tracing) -> Iterator[MemoryManager]:
    """Leak detection over 3-reading windows at 1 MiB/hour, diagnosis windows of 2 passes, reports in tmp_path."""
    config = MemoryConfig(enable_background_cleanup=False, leak_window_samples=3, leak_slope_threshold_mb_per_hour=1)
    made = MemoryManager(
        config,
        probe=probe,
        clock=clock,
        on_alert=lambda *alert: alerts.append(alert),
        diagnosis=DiagnosisSettings(window_passes=2),
        report_dir=tmp_path / "data",
    )
    yield made
    made.stop()


def cycles(manager: MemoryManager, clock: FakeClock, probe: FakeProbe, count: int, *, leak=leak_one_cycle) -> None:
    """`count` cycles, each leaking what `leak` allocates while the probe's RSS grows 200 KiB."""
    for _ in range(count):
        leak()
        probe.rss += 200 * KIB
        manager.note_cycle()
        clock.advance(PASS_SECONDS)
        manager.perform_maintenance()


def test_a_confirmed_leak_is_named_in_a_warning_with_path_and_line(manager, clock, probe, caplog):
    with caplog.at_level(logging.WARNING, logger="crypto_bot.memory"):
        cycles(manager, clock, probe, 12)

    named = [record.getMessage() for record in caplog.records if record.getMessage().startswith("leak diagnosis")]
    assert len(named) == 1
    assert leaking_line() in named[0]
    assert "KiB/cycle" in named[0]
    assert not tracemalloc.is_tracing()


def test_the_diagnosis_is_in_the_stats(manager, clock, probe):
    cycles(manager, clock, probe, 12)

    leak = manager.get_memory_stats()["leak"]

    assert leak["suspected"] is True
    assert leak["diagnosis"]["diagnoses"] == 1 and leak["diagnosis"]["window_open"] is False
    last = leak["last_diagnosis"]
    assert last["verdict"] == Verdict.PYTHON
    assert last["sites"][0]["site"] == leaking_line()
    assert last["sites"][0]["bytes_per_cycle"] == pytest.approx(200 * KIB, rel=0.05)
    json.dumps(leak)  # JSON types only


def test_the_diagnosis_is_written_as_a_json_report_named_in_the_warning(manager, clock, probe, caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="crypto_bot.memory"):
        cycles(manager, clock, probe, 12)

    reports = sorted((tmp_path / "data").glob("leak-diagnosis-*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["kind"] == "leak-diagnosis" and report["pid"] == os.getpid()
    assert report["sites"][0]["site"] == leaking_line()
    assert str(reports[0]) in next(r.getMessage() for r in caplog.records if r.getMessage().startswith("leak diagnosis"))
    assert manager.get_memory_stats()["leak"]["last_report_path"] == str(reports[0])


def test_the_diagnosis_is_sent_to_the_alert_callbacks(manager, clock, probe, alerts):
    cycles(manager, clock, probe, 12)
    (message, details), = [alert for alert in alerts if alert[1]["kind"] == "leak_diagnosis"]
    assert leaking_line() in message
    assert details["sites"][0] == leaking_line()
    assert details["verdict"] == Verdict.PYTHON


def test_unmanaged_growth_without_python_allocations_is_not_blamed_on_a_line(manager, clock, probe, caplog):
    with caplog.at_level(logging.WARNING, logger="crypto_bot.memory"):
        cycles(manager, clock, probe, 12, leak=lambda: None)

    message = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("leak diagnosis"))
    assert "unmanaged growth not explained by Python allocations" in message
    assert __file__ not in message
    assert manager.get_memory_stats()["leak"]["last_diagnosis"]["verdict"] == Verdict.UNEXPLAINED


def test_an_unwritable_report_folder_is_said_in_the_warning(manager, clock, probe, caplog, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be")
    manager.report_dir = blocked
    with caplog.at_level(logging.WARNING, logger="crypto_bot.memory"):
        cycles(manager, clock, probe, 12)
    message = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("leak diagnosis"))
    assert leaking_line() in message and f"could not be written to {blocked}" in message


def test_a_clean_run_never_traces_and_never_diagnoses(manager, clock, probe):
    for _ in range(300):
        manager.note_cycle()
        clock.advance(PASS_SECONDS)
        manager.perform_maintenance()
        assert not tracemalloc.is_tracing()
    leak = manager.get_memory_stats()["leak"]
    assert leak["suspected"] is False and leak["diagnosis"]["diagnoses"] == 0 and leak["last_diagnosis"] is None


def test_stopping_the_manager_ends_an_open_window(manager, clock, probe):
    cycles(manager, clock, probe, 6)  # suspected at the 6th pass: tracing
    assert manager.diagnoser.window_open and tracemalloc.is_tracing()
    manager.stop()
    assert not tracemalloc.is_tracing()


# ----------------------------------------------------------------- on-demand report


def test_write_report_writes_reading_caches_models_leak_and_census(manager, clock, probe, tmp_path):
    manager.register_cache("candles").put("BTC/USDT", b"x" * 100)
    cycles(manager, clock, probe, 12)

    path = manager.write_report()

    report = json.loads(path.read_text())
    assert path.parent == tmp_path / "data" and path.name.startswith("memory-report-")
    assert report["reading"]["rss_bytes"] == probe.rss
    assert report["caches"]["candles"]["entries"] == 1
    assert report["models"] == {}
    assert report["leak"]["last_diagnosis"]["sites"][0]["site"] == leaking_line()
    assert report["leak"]["last_diagnosis"]["types"] is not None
    assert {"type", "count"} <= set(report["census"][0])


def test_write_report_needs_a_folder(clock, probe):
    manager = MemoryManager(MemoryConfig(enable_background_cleanup=False), probe=probe, clock=clock)
    with pytest.raises(ValueError, match="directory"):
        manager.write_report()


def test_report_files_keep_the_newest_of_each_kind(tmp_path):
    written = [write_json_report(tmp_path, "memory-report", {"n": n}, keep=3) for n in range(5)]
    write_json_report(tmp_path, "leak-diagnosis", {"n": 0}, keep=3)
    kept = sorted(path.name for path in tmp_path.glob("memory-report-*.json"))
    assert kept == sorted(path.name for path in written[-3:])
    assert len(list(tmp_path.glob("leak-diagnosis-*.json"))) == 1
    assert not list(tmp_path.glob(".*.tmp"))


# ----------------------------------------------------------------- SIGUSR1


@pytest.fixture
def installed(manager: MemoryManager, tmp_path: Path) -> Iterator[ReportSignal]:
    handle = manager.install_report_signal(tmp_path / "usr1")
    yield handle
    handle.uninstall()


def test_sigusr1_writes_the_report_to_the_data_folder_and_logs_its_path(installed, manager, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="crypto_bot.memory"):
        os.kill(os.getpid(), signal.SIGUSR1)
        assert installed.wait(1, timeout=THREAD_WAIT_SECONDS)

    (path,) = installed.paths
    assert path.parent == tmp_path / "usr1" and json.loads(path.read_text())["pid"] == os.getpid()
    assert any(str(path) in record.getMessage() for record in caplog.records)
    assert manager.report_dir == tmp_path / "usr1"  # leak diagnoses go to the same folder


def test_each_signal_writes_a_report(installed):
    for count in (1, 2):
        os.kill(os.getpid(), signal.SIGUSR1)
        assert installed.wait(count, timeout=THREAD_WAIT_SECONDS)
    assert len(set(installed.paths)) == 2


def test_uninstall_restores_the_previous_handler(manager, tmp_path):
    calls: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))
    try:
        manager.install_report_signal(tmp_path).uninstall()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert calls == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_an_asyncio_loop_handles_the_signal(manager, tmp_path):
    async def main() -> ReportSignal:
        handle = manager.install_report_signal(tmp_path, loop=asyncio.get_running_loop())
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.to_thread(handle.wait, 1, THREAD_WAIT_SECONDS)
        finally:
            handle.uninstall()
        return handle

    handle = asyncio.run(main())
    assert len(handle.paths) == 1 and handle.paths[0].exists()


def test_installing_from_another_thread_without_a_loop_is_refused(manager, tmp_path):
    errors: list[BaseException] = []
    worker = threading.Thread(target=lambda: _install(manager, tmp_path, errors))
    worker.start()
    worker.join(THREAD_WAIT_SECONDS)
    assert len(errors) == 1 and "main thread" in str(errors[0])


def _install(manager: MemoryManager, folder: Path, errors: list[BaseException]) -> None:
    try:
        manager.install_report_signal(folder)
    except ValueError as error:
        errors.append(error)


def test_installing_needs_a_folder(clock, probe):
    manager = MemoryManager(MemoryConfig(enable_background_cleanup=False), probe=probe, clock=clock)
    with pytest.raises(ValueError, match="report_dir"):
        manager.install_report_signal()


def test_a_report_that_cannot_be_written_is_logged_and_counted(manager, tmp_path, caplog):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    handle = manager.install_report_signal(blocked)
    try:
        with caplog.at_level(logging.ERROR, logger="crypto_bot.memory"):
            os.kill(os.getpid(), signal.SIGUSR1)
            assert handle.wait(1, timeout=THREAD_WAIT_SECONDS)
    finally:
        handle.uninstall()
    assert handle.failures == 1 and handle.paths == []
    assert any(str(blocked) in record.getMessage() for record in caplog.records)


def test_an_unexplained_diagnosis_alerts_without_sites(manager, clock, probe, alerts):
    cycles(manager, clock, probe, 12, leak=lambda: None)
    (message, details), = [alert for alert in alerts if alert[1]["kind"] == "leak_diagnosis"]
    assert details["verdict"] == Verdict.UNEXPLAINED and details["sites"] == []
    assert "not explained by Python allocations" in message
