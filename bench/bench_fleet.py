"""One bot per process against a fleet (a feeder and N workers sharing candles through Redis): one run, side by side.

Universe: 300 simulated pairs x (1m, 5m, 1h), windows of 300 candles, every pair analysed every
cycle (batch_size 300; a worker analyses its whole shard). The "exchange" is the simulated market:
one fetch is one request (`CycleStatus.fetches` for a bot, `Feeder.requests_last_cycle` for the
feeder), one cycle one simulated minute for both. Measured:
- exchange requests per cycle (after the first): one independent bot, in a fresh process, times 3
  for 3 bots (each fetches exactly what the others do), against the feeder of a fleet of 3 over the
  same span of the simulated clock (both start at the same time and move a minute a cycle; the
  feeder runs on while the workers finish, its later cycles are not counted here);
- RSS (and L1: the df_cache's bytes) of that bot against each worker of the fleet of 3;
- L1 hit rate (df_cache) and L2 hit rate (windows found in Redis) of the workers;
- cycle time (run_cycle, mean over the workers' cycles after their first) with 1, 2, 3 and 4 workers,
  each a fresh process, all running at once with the feeder on this machine's cores: wall time, and
  the CPU time of the worker's process (which other processes on the cores do not inflate);
- Redis used_memory, sampled after every feeder cycle of every fleet run (the soak), against
  maxmemory (64 MiB, volatile-ttl), and keys evicted.
A redis-server is started on a free loopback port in a temporary directory (Debian's, on PATH).
Run: .venv/bin/python bench/bench_fleet.py [cycles]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the test's redis-server helper

import psutil  # noqa: E402

from crypto_bot.bot import TradingBot, build_market  # noqa: E402
from crypto_bot.fleet import Shard, feed, sync_client, worker_settings  # noqa: E402
from crypto_bot.market import generated_symbols  # noqa: E402
from crypto_bot.memory.units import MIB  # noqa: E402
from crypto_bot.settings import parse_settings  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

PAIRS = 300
TIMEFRAMES = ["1m", "5m", "1h"]
WORKER_COUNTS = (1, 2, 3, 4)
COMPARED_WORKERS = 3
MAXMEMORY_BYTES = 64 * MIB
FEEDER_INTERVAL_SECONDS = 1.0
CLOSE_WAIT_SECONDS = 30.0


def config(directory: Path, *, redis_address: str | None = None) -> dict[str, Any]:
    market: dict[str, Any] = {"seed": 42}
    if redis_address is not None:
        market.update(source="redis", redis={"address": redis_address})
    return {
        "enable_background_cleanup": False,
        "symbols": generated_symbols(PAIRS),
        "timeframes": TIMEFRAMES,
        "market": market,
        "strategy": {
            "batch_size": PAIRS,
            "model_path": str(directory / "signal_model.joblib"),
            "model_training_candles": 600,
            "model_training_symbols": 2,
        },
        "storage": {"journal_path": str(directory / "journal.sqlite")},
        "recycle": {"enabled": False},
    }


# ------------------------------------------------------------------ children (fresh processes)


async def bot_child(settings_dict: dict[str, Any], cycles: int) -> dict[str, Any]:
    """One bot holding the whole universe on the simulated exchange."""
    bot = TradingBot(parse_settings(settings_dict))
    await bot.prepare_model()
    timings, fetches = [], []
    for _ in range(cycles):
        timings.append(await _timed_cycle(bot))
        fetches.append(bot.last_status.fetches)  # type: ignore[union-attr]
    result = _figures(bot, timings) | {"fetches": fetches}
    await bot.close()
    return result


async def worker_child(settings_dict: dict[str, Any], number: int, count: int, cycles: int) -> dict[str, Any]:
    """Worker `number`/`count`: waits for the feeder's closes, runs a cycle on each."""
    shard = Shard(number, count)
    settings = worker_settings(parse_settings(settings_dict), shard)
    market = build_market(settings, shard=shard)
    bot = TradingBot(settings, market=market)
    await bot.prepare_model()
    timings = []
    for _ in range(cycles):
        await market.wait_for_closes(CLOSE_WAIT_SECONDS)  # type: ignore[attr-defined]
        timings.append(await _timed_cycle(bot))
    stats = market.stats()
    result = _figures(bot, timings) | {
        "symbols": len(market.universe()), "l2_hit_rate": stats["l2_hit_rate"], "rest_calls": stats["rest_calls"],
    }
    await bot.close()
    return result


async def _timed_cycle(bot: TradingBot) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one cycle: CPU time does not grow when other processes
    share the cores, wall time does."""
    wall, cpu = time.perf_counter(), time.process_time()
    await bot.run_cycle()
    return time.perf_counter() - wall, time.process_time() - cpu


def _figures(bot: TradingBot, timings: list[tuple[float, float]]) -> dict[str, Any]:
    cache = bot.ctx.managed_caches["df_cache"].stats()
    return {
        "rss_bytes": psutil.Process().memory_info().rss,
        "l1_bytes": cache["total_bytes"],
        "l1_hit_rate": cache["hit_rate"],
        "cycle_seconds": statistics.mean(wall for wall, _ in timings[1:]),
        "cycle_cpu_seconds": statistics.mean(cpu for _, cpu in timings[1:]),
    }


async def run_child(*arguments: Any) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", json.dumps(arguments), stdout=asyncio.subprocess.PIPE
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"bench child {arguments[0]} exited with {process.returncode}")
    return json.loads(output.decode().strip().splitlines()[-1])


# ------------------------------------------------------------------ the fleet runs


async def fleet_run(directory: Path, server: RedisServer, workers: int, cycles: int, soak: list[int]) -> dict[str, Any]:
    """A feeder in this process and `workers` worker processes; the feeder's requests, the workers' figures."""
    client = sync_client(parse_settings(config(directory, redis_address=server.address)).market.redis)
    client.flushdb()
    settings_dict = config(directory, redis_address=server.address)
    settings = parse_settings(settings_dict)
    stop, fed = asyncio.Event(), asyncio.Event()
    requests: list[int] = []

    def after_cycle(feeder: Any) -> None:
        requests.append(feeder.requests_last_cycle)
        soak.append(int(client.info("memory")["used_memory"]))
        fed.set()

    feeding = asyncio.create_task(
        feed(settings, cycles=None, interval_seconds=FEEDER_INTERVAL_SECONDS, stop=stop, on_cycle=after_cycle)
    )
    await fed.wait()  # the windows are in Redis before the workers start
    results = await asyncio.gather(
        *(run_child("worker", settings_dict, number, workers, cycles) for number in range(1, workers + 1))
    )
    stop.set()
    await feeding
    return {"feeder_requests": requests, "workers": results}


async def main(cycles: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as folder:
        directory = Path(folder)
        trainer = TradingBot(parse_settings(config(directory)))
        await trainer.prepare_model()  # trained once, read by every process
        await trainer.close()
        single = await run_child("bot", config(directory), cycles)
        server = RedisServer(_redis_executable(), directory, maxmemory_bytes=MAXMEMORY_BYTES)
        server.start()
        soak: list[int] = []
        try:
            runs = {n: await fleet_run(directory, server, n, cycles, soak) for n in WORKER_COUNTS}
            stats = sync_client(parse_settings(config(directory, redis_address=server.address)).market.redis).info()
        finally:
            server.stop()
    print(table(single, runs, soak, stats, cycles))


def _redis_executable() -> str:
    import shutil

    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not on PATH: apt-get install redis-server (scripts/_venv.sh does it as root)")
    return executable


def table(single: dict[str, Any], runs: dict[int, dict[str, Any]], soak: list[int], info: dict[str, Any], cycles: int) -> str:
    fleet = runs[COMPARED_WORKERS]
    # The same span of the simulated clock for both: the bot's cycles and the feeder's first as many (from the same start).
    bot_requests = statistics.mean(single["fetches"][1:])
    feeder_requests = statistics.mean(fleet["feeder_requests"][1:cycles])
    first_bot, first_feeder = single["fetches"][0], fleet["feeder_requests"][0]
    workers = fleet["workers"]
    three_bots = COMPARED_WORKERS * bot_requests
    lines = [
        f"{PAIRS} pairs x {len(TIMEFRAMES)} timeframes ({', '.join(TIMEFRAMES)}), {cycles} cycles a process, "
        f"simulated exchange; {psutil.cpu_count()} cores",
        "",
        f"| measure | {COMPARED_WORKERS} independent bots | feeder + {COMPARED_WORKERS} workers |",
        "|---|---|---|",
        f"| exchange requests per cycle (after the first) | {three_bots:.0f} ({COMPARED_WORKERS} x {bot_requests:.0f}) | "
        f"{feeder_requests:.0f} (feeder; workers {sum(w['rest_calls'] for w in workers)}): "
        f"{feeder_requests / three_bots:.2f} of the bots' |",
        f"| exchange requests, first cycle (whole windows) | {COMPARED_WORKERS * first_bot} ({COMPARED_WORKERS} x {first_bot}) | "
        f"{first_feeder} |",
        f"| RSS per process | {single['rss_bytes'] / MIB:.0f} MiB (one bot, whole universe) | "
        f"{_each(workers, 'rss_bytes', '.0f', MIB)} MiB |",
        f"| L1 (df_cache) per process | {single['l1_bytes'] / MIB:.1f} MiB | "
        f"{_each(workers, 'l1_bytes', '.1f', MIB)} MiB |",
        f"| L1 hit rate | {single['l1_hit_rate']:.1%} | {_each(workers, 'l1_hit_rate', '.1%')} |",
        f"| L2 (Redis) hit rate | n/a | {_each(workers, 'l2_hit_rate', '.1%')} |",
        f"| cycle time, wall (mean after the first) | {single['cycle_seconds']:.3f} s (alone) | "
        f"{_each(workers, 'cycle_seconds', '.3f')} s |",
        f"| cycle time, CPU of the process | {single['cycle_cpu_seconds']:.3f} s | "
        f"{_each(workers, 'cycle_cpu_seconds', '.3f')} s |",
        "",
        "| workers | pairs per worker | worker cycle, wall: mean (slowest worker) | worker cycle, CPU: mean | RSS per worker "
        "| L2 hit rate |",
        "|---|---|---|---|---|---|",
    ]
    for count, run in runs.items():
        shard = run["workers"]
        lines.append(
            f"| {count} | {', '.join(str(w['symbols']) for w in shard)} | "
            f"{statistics.mean(w['cycle_seconds'] for w in shard):.3f} s ({max(w['cycle_seconds'] for w in shard):.3f} s) | "
            f"{statistics.mean(w['cycle_cpu_seconds'] for w in shard):.3f} s | "
            f"{statistics.mean(w['rss_bytes'] for w in shard) / MIB:.0f} MiB | "
            f"{statistics.mean(w['l2_hit_rate'] for w in shard):.1%} |"
        )
    lines += [
        "",
        f"Redis over the soak ({len(soak)} feeder cycles): used_memory peak {max(soak) / MIB:.1f} MiB, last "
        f"{soak[-1] / MIB:.1f} MiB, maxmemory {int(info['maxmemory']) / MIB:.0f} MiB ({info['maxmemory_policy']}), "
        f"evicted keys {info.get('evicted_keys', 0)}, expired keys {info.get('expired_keys', 0)}",
    ]
    return "\n".join(lines)


def _each(workers: list[dict[str, Any]], key: str, spec: str, unit: float = 1.0) -> str:
    """One figure per worker, comma-separated."""
    return ", ".join(format(worker[key] / unit, spec) for worker in workers)


def child(arguments: list[Any]) -> None:
    role, *rest = arguments
    result = asyncio.run(bot_child(*rest) if role == "bot" else worker_child(*rest))
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
    else:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 12))
