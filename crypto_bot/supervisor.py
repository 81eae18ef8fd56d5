"""The supervisor: runs the bot in a child process and starts a fresh one when the child asks for it.

Long-running servers survive memory they cannot reclaim by restarting workers (gunicorn
`max_requests`, uWSGI `reload-on-rss`, Celery `worker_max_memory_per_child`). Here the child
decides when, at a safe point: it finishes its cycle, flushes the journal, closes the exchange,
writes why and how many cycles it ran (`request_recycle`) and exits with `RECYCLE_EXIT_CODE`; the
supervisor logs the reason and starts a fresh child, which resumes the open positions from the
journal and reads the cycles run so far from `CYCLES_DONE_VARIABLE` and the recycles so far from
`RECYCLES_VARIABLE` (its status page shows them).

Covers: starting and restarting the child (in the environment given, e.g. an allocator preloaded),
crash-loop protection (restarts back off, and too many in a window end the supervisor with
`EXIT_RESTART_LOOP`), SIGINT/SIGTERM, which are passed on so the child stops cleanly, and SIGUSR1
(the memory report), passed on as it is. Exit codes 2 and 3 (configuration, environment) are not
retried: the same child would fail the same way.
Not covered: when the child should recycle (`crypto_bot.memory.recycle`) or the bot itself.
This module imports neither pandas nor scikit-learn, so the supervisor costs a few MiB.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

logger = logging.getLogger(__name__)

RECYCLE_EXIT_CODE = 75  # EX_TEMPFAIL: "try again": the child ended its cycle cleanly and wants a fresh process
EXIT_RESTART_LOOP = 4  # the child kept ending: too many restarts in the window
_NOT_RETRIED = frozenset({2, 3})  # usage/config and environment errors: a new child would fail alike
REASON_FILE_VARIABLE = "CRYPTO_BOT_RECYCLE_REASON_FILE"  # where a recycling child writes its handover
CYCLES_DONE_VARIABLE = "CRYPTO_BOT_CYCLES_DONE"  # cycles the children before this one ran
RECYCLES_VARIABLE = "CRYPTO_BOT_RECYCLES"  # recycles so far: the child shows them on its status page


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How often the child may be restarted: at most `max_restarts` in `window_seconds`, each restart
    after the first in the window waiting twice as long as the one before, from `backoff_seconds` up
    to `max_backoff_seconds`."""

    max_restarts: int = 10
    window_seconds: float = 3600.0
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0

    def delay(self, recent_restarts: int) -> float:
        """Seconds to wait before a restart that follows `recent_restarts` others in the window."""
        if recent_restarts == 0:
            return 0.0
        return min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (recent_restarts - 1))


def request_recycle(reason: str, cycles: int = 0) -> int:
    """In the child: tell the supervisor (if there is one) why and how many cycles this child ran; the exit
    code that asks for a fresh child."""
    path = os.environ.get(REASON_FILE_VARIABLE)
    if path:
        Path(path).write_text(json.dumps({"reason": reason, "cycles": cycles}), encoding="utf-8")
    return RECYCLE_EXIT_CODE


def supervised() -> bool:
    """Whether this process is a child of a Supervisor (a recycle then hands over instead of ending the bot)."""
    return REASON_FILE_VARIABLE in os.environ


def cycles_done() -> int:
    """In a child: the cycles its predecessors ran (0 in the first child or without a supervisor)."""
    return _count_variable(CYCLES_DONE_VARIABLE)


def recycles_done() -> int:
    """In a child: how often the supervisor recycled the bot process before starting this one (0 without one)."""
    return _count_variable(RECYCLES_VARIABLE)


def _count_variable(name: str) -> int:
    try:
        return max(0, int(os.environ.get(name, "0")))
    except ValueError:
        return 0


class Supervisor:
    """Runs `command` as a child until it ends for good; `run()` returns the exit code to end with.

    Children run in `environment` (default: this process's), plus the handover variables.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        policy: RestartPolicy = RestartPolicy(),
        environment: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.command = list(command)
        self.policy = policy
        self.environment = dict(os.environ if environment is None else environment)
        self.restarts = 0
        self.recycles = 0
        self.cycles_done = 0
        self._clock = clock
        self._recent: deque[float] = deque()
        self._stop = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None

    def stop(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        """Stop: pass SIGTERM to the child (it finishes its phase and exits) and start no other (a signal handler)."""
        self._stop.set()
        self.forward(signal.SIGTERM)

    def forward(self, signum: int, frame: FrameType | None = None) -> None:
        """Pass a signal on to the running child (a signal handler)."""
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM stop the child cleanly, SIGUSR1 reaches it (call from the main thread)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.stop)
        signal.signal(signal.SIGUSR1, self.forward)

    def run(self) -> int:
        with tempfile.TemporaryDirectory(prefix="crypto-bot-supervisor-") as folder:
            reason_file = Path(folder) / "reason"
            while True:
                code = self._run_child(reason_file)
                if self._stop.is_set() or code == 0:
                    return code
                if code in _NOT_RETRIED:  # the child said why in one line on stderr; nothing to add there
                    logger.debug("the bot exited with %d (a configuration or environment error): not restarted", code)
                    return code
                delay = self._restart_delay(code, reason_file)
                if delay is None:
                    return EXIT_RESTART_LOOP
                if self._stop.wait(delay):
                    return 0  # stopped while waiting to restart: no child is running

    def _run_child(self, reason_file: Path) -> int:
        reason_file.unlink(missing_ok=True)
        environment = {
            **self.environment,
            REASON_FILE_VARIABLE: str(reason_file),
            CYCLES_DONE_VARIABLE: str(self.cycles_done),
            RECYCLES_VARIABLE: str(self.recycles),
        }
        self._child = subprocess.Popen(self.command, env=environment)  # noqa: S603 - our own command line
        if self._stop.is_set():  # a stop that came while it started
            self._child.send_signal(signal.SIGTERM)
        return self._child.wait()

    def _restart_delay(self, code: int, reason_file: Path) -> float | None:
        """Log why the child ended; the seconds to wait before the next one, or None when restarts came too often."""
        now = self._clock()
        while self._recent and now - self._recent[0] > self.policy.window_seconds:
            self._recent.popleft()
        if len(self._recent) >= self.policy.max_restarts:
            logger.error(
                "the bot ended %d times within %.0f s (last: %s): not restarting; the log above says why",
                len(self._recent) + 1,
                self.policy.window_seconds,
                _describe(code),
            )
            return None
        if code == RECYCLE_EXIT_CODE:
            reason = self._take_handover(reason_file)
            self.recycles += 1
            logger.warning("recycling the bot process (%d so far): %s", self.recycles, reason)
        else:
            logger.error("the bot exited with %s; restarting it", _describe(code))
        delay = self.policy.delay(len(self._recent))
        self._recent.append(now)
        self.restarts += 1
        if delay:
            logger.info(
                "waiting %.1f s before the restart (%d in the last %.0f s)",
                delay,
                len(self._recent),
                self.policy.window_seconds,
            )
        return delay

    def _take_handover(self, reason_file: Path) -> str:
        """The reason a recycling child gave; its cycles are added to the count the next child starts from."""
        try:
            handover = json.loads(reason_file.read_text(encoding="utf-8"))
            self.cycles_done += max(0, int(handover.get("cycles", 0)))
            return str(handover["reason"])
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return "no reason given"


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def child_command(argv: Sequence[str]) -> list[str]:
    """The command line of a child that runs `crypto-bot` with `argv` in this interpreter."""
    return [sys.executable, "-m", "crypto_bot.cli", *argv]
