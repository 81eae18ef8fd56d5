"""The supervisor with real child processes: recycles, crashes, the crash-loop limit, signals."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crypto_bot.supervisor import EXIT_RESTART_LOOP, RECYCLE_EXIT_CODE, RestartPolicy, Supervisor

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICK = RestartPolicy(max_restarts=3, window_seconds=3600, backoff_seconds=0.001, max_backoff_seconds=0.002)


def child(tmp_path: Path, exit_codes: list[int | str]) -> list[str]:
    """A child that, on its n-th start, ends with exit_codes[n] ("kill" kills itself with SIGKILL);
    a recycle says why through request_recycle, as the bot does."""
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys
            from pathlib import Path
            from crypto_bot.supervisor import request_recycle
            runs = Path({str(tmp_path / "runs")!r})
            run = len(runs.read_text()) if runs.exists() else 0
            runs.write_text("x" * (run + 1))
            codes = {exit_codes!r}
            code = codes[min(run, len(codes) - 1)]
            if code == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if code == {RECYCLE_EXIT_CODE}:
                code = request_recycle(f"run {{run}} reached its forecast limit")
            sys.exit(code)
            """
        )
    )
    return [sys.executable, str(script)]


def runs(tmp_path: Path) -> int:
    return len((tmp_path / "runs").read_text())


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))


def test_a_recycled_child_is_replaced_and_the_reason_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(child(tmp_path, [RECYCLE_EXIT_CODE, RECYCLE_EXIT_CODE, 0]), policy=QUICK)
    with caplog.at_level(logging.INFO, logger="crypto_bot.supervisor"):
        assert supervisor.run() == 0
    assert runs(tmp_path) == 3
    assert supervisor.restarts == 2
    assert supervisor.recycles == 2
    assert "recycling the bot process (1 so far): run 0 reached its forecast limit" in caplog.text
    assert "recycling the bot process (2 so far): run 1 reached its forecast limit" in caplog.text


def test_each_child_is_told_the_recycles_before_it(tmp_path: Path) -> None:
    seen = tmp_path / "recycles_seen"
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from crypto_bot.supervisor import RECYCLE_EXIT_CODE, recycles_done, request_recycle
        seen = Path({str(seen)!r})
        seen.write_text(seen.read_text() + str(recycles_done()) if seen.exists() else str(recycles_done()))
        sys.exit(request_recycle("forecast") if recycles_done() < 2 else 0)
        """
    )
    assert Supervisor([sys.executable, "-c", script], policy=QUICK).run() == 0
    assert seen.read_text() == "012"


def test_too_many_restarts_in_the_window_end_the_supervisor(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(child(tmp_path, [RECYCLE_EXIT_CODE]), policy=QUICK)
    with caplog.at_level(logging.ERROR, logger="crypto_bot.supervisor"):
        assert supervisor.run() == EXIT_RESTART_LOOP
    assert runs(tmp_path) == QUICK.max_restarts + 1
    assert "the bot ended 4 times within 3600 s" in caplog.text


def test_restarts_older_than_the_window_do_not_count(tmp_path: Path) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 2000.0  # each restart an age apart
        return now[0]

    supervisor = Supervisor(child(tmp_path, [1, 1, 1, 1, 1, 0]), policy=QUICK, clock=clock)
    assert supervisor.run() == 0
    assert supervisor.restarts == 5


def test_configuration_and_environment_errors_are_not_retried(tmp_path: Path) -> None:
    assert Supervisor(child(tmp_path, [2]), policy=QUICK).run() == 2
    assert runs(tmp_path) == 1


def test_a_crashed_or_killed_child_is_restarted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(child(tmp_path, [1, "kill", 0]), policy=QUICK)
    with caplog.at_level(logging.ERROR, logger="crypto_bot.supervisor"):
        assert supervisor.run() == 0
    assert runs(tmp_path) == 3
    assert "exited with code 1" in caplog.text and "exited with signal SIGKILL" in caplog.text


def test_restarts_back_off_exponentially_up_to_the_cap():
    policy = RestartPolicy(backoff_seconds=1.0, max_backoff_seconds=10.0)
    assert [policy.delay(n) for n in range(6)] == [0.0, 1.0, 2.0, 4.0, 8.0, 10.0]


SUPERVISED = textwrap.dedent(
    """
    import sys
    from crypto_bot.supervisor import Supervisor
    supervisor = Supervisor([sys.executable, "-c", sys.argv[1]])
    supervisor.install_signal_handlers()
    sys.exit(supervisor.run())
    """
)
STOPPABLE_CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    marker = Path({marker!r})
    def stop(signum, frame):
        marker.write_text("stopped cleanly")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    print("child ready", flush=True)
    while True:
        time.sleep(1)
    """
)


def test_sigterm_to_the_supervisor_stops_the_child_cleanly(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISED, STOPPABLE_CHILD.format(marker=str(marker))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert supervisor.stdout.readline().strip() == "child ready"
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        supervisor.stdout.close()
    assert marker.read_text() == "stopped cleanly"


def test_the_supervisor_imports_neither_pandas_nor_scikit_learn() -> None:
    probe = "import sys, crypto_bot.supervisor; print(sorted(m for m in ('pandas', 'sklearn', 'numpy') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=os.environ)
    assert output.stdout.strip() == "[]"
