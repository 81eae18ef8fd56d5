"""Proof: the fleet as real processes (`crypto-bot feed` and three `crypto-bot run --shard i/3` under their
supervisors) on a real redis-server, through a crash of Redis and of a worker, seen by `status --fleet`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crypto_bot.execution import TradeJournal
from crypto_bot.fleet import read_fleet
from crypto_bot.market import generated_symbols
from crypto_bot.settings import parse_settings
from tests.bot.conftest import crypto_bot
from tests.redis_server import RedisServer, redis_server  # noqa: F401 - the fixture

pytestmark = pytest.mark.proof

WORKERS = ("1/3", "2/3", "3/3")
POLLS = 600  # of the fleet view, 0.1 s apart: how long the fleet may take to reach a state before the test fails


@pytest.fixture
def fleet_file(config_dict: Callable[..., dict[str, Any]], redis_server: RedisServer, tmp_path: Path) -> Path:
    config = config_dict(
        symbols=generated_symbols(12),
        market={"source": "redis", "redis": {"address": redis_server.address}},
        strategy={"batch_size": 12},
        risk={"max_open_positions": 100, "max_position_ratio": 0.05},
    )
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture
def processes(fleet_file: Path, tmp_path: Path) -> Iterator[dict[str, subprocess.Popen]]:
    started = {"feeder": crypto_bot("feed", "--config", str(fleet_file), "--interval", "0.2", cwd=tmp_path,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)}
    for shard in WORKERS:
        started[shard] = crypto_bot("run", "--config", str(fleet_file), "--shard", shard, "--interval", "2", cwd=tmp_path,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    yield started
    for process in started.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def view_when(fleet_file: Path, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The fleet view (processes by name) once `ready` holds for it; fails after POLLS looks."""
    config = parse_settings(yaml.safe_load(fleet_file.read_text())).market.redis
    seen: dict[str, Any] = {}
    for _ in range(POLLS):
        try:
            seen = {h.name: h for h in read_fleet(config).heartbeats}
        except Exception:  # Redis restarting: look again
            seen = {}
        if seen and ready(seen):
            return seen
        time.sleep(0.1)
    pytest.fail(f"the fleet never reached the state; last seen: {sorted(seen)}")


def all_workers(condition: Callable[[Any], bool]) -> Callable[[dict[str, Any]], bool]:
    return lambda seen: all(f"worker {shard}" in seen and condition(seen[f"worker {shard}"]) for shard in WORKERS)


def test_the_fleet_survives_redis_and_a_worker_dying_and_stops_cleanly(
    processes: dict[str, subprocess.Popen], fleet_file: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    before = view_when(fleet_file, all_workers(lambda h: h.cycle >= 3 and h.l2_hits > 0))
    assert before["feeder"].exchange_requests > 0 and all(before[f"worker {s}"].exchange_requests == 0 for s in WORKERS)

    redis_server.kill()
    time.sleep(3)  # an outage of several of the feeder's cycles
    assert all(process.poll() is None for process in processes.values())  # nobody crashed
    redis_server.start()
    after = view_when(fleet_file, all_workers(lambda h: h.connected and h.stale_series == 0 and h.l2_hits > 0))
    assert after["feeder"].connected

    victim = after["worker 2/3"]
    os.kill(victim.pid, signal.SIGKILL)  # the bot process under worker 2/3's supervisor
    view_when(fleet_file, lambda seen: "worker 2/3" in seen and seen["worker 2/3"].pid != victim.pid
              and seen["worker 2/3"].cycle >= 2)

    for process in processes.values():
        process.send_signal(signal.SIGTERM)
    for name, process in processes.items():
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, f"{name}: {errors[-2000:]}"
    entries = 0
    for shard in WORKERS:
        number = shard.split("/")[0]
        journal = TradeJournal(str(tmp_path / f"journal.shard-{number}-of-3.sqlite"), read_only=True)
        try:
            entries += len(journal.open_positions()) + journal.trade_totals()[0]
        finally:
            journal.close()
    assert entries > 0
