"""The soak's RSS under each malloc setting, each in a fresh child process, measured in one run.

Each setting runs `crypto-bot soak` (managed, the same config, seed and cycles) in a child started
with that setting's environment; the named settings are what `allocator.name` ships
(`crypto_bot.memory.allocator.child_environment`), the others are built here for comparison. The
signal model is trained once before the runs, so every run loads the same file. While a child runs,
its /proc/PID/maps shows which allocator library it really mapped (a preload the loader ignored
would read "glibc") and /proc/PID/status its VmHWM.
Columns: RSS peak (the soak's per-cycle maximum) and VmHWM (the kernel's high-water mark, model
loading included); steady RSS, the median after warm-up; the slope after warm-up by least squares
(KiB/cycle, from summary.json); the mean cycle time after warm-up against glibc's default.
Run: .venv/bin/python bench/bench_allocators.py [--cycles 360] [--workloads steady,churn] [--only jemalloc,mimalloc]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crypto_bot.memory.allocator import ALLOCATOR_NAMES, AllocatorConfig, child_environment  # noqa: E402

MIB = 1024 * 1024
# Variables that choose or tune an allocator: cleared from this process's environment so every
# row starts from the same place, whatever the shell running the bench had set.
_ALLOCATOR_VARIABLES = ("LD_PRELOAD", "MALLOC_CONF", "PYTHONMALLOC")
_ALLOCATOR_PREFIXES = ("MALLOC_", "MIMALLOC_", "JE_MALLOC_")
_MAPPED_NAMES = ("libjemalloc", "libmimalloc", "libtcmalloc")


@dataclass(frozen=True)
class Setting:
    environment: Callable[[dict[str, str]], dict[str, str]]  # the child's environment from the clean base

    def label(self, base: dict[str, str]) -> str:
        """The allocator and the variables this setting adds, read from the environment it builds."""
        environment = self.environment(base)
        added = {key: value for key, value in environment.items() if base.get(key) != value}
        preload = added.pop("LD_PRELOAD", None)
        allocator = os.path.basename(preload).split(".so")[0].removeprefix("lib") if preload else "glibc"
        return ", ".join([allocator, *(f"{key}={value}" for key, value in added.items())] or [allocator])

    def ships_as(self, base: dict[str, str]) -> str:
        """The allocator.name values whose child environment is exactly this one."""
        names = []
        for name in ALLOCATOR_NAMES:
            try:
                if child_environment(AllocatorConfig(name=name), base)[0] == self.environment(base):
                    names.append(name)
            except FileNotFoundError:
                continue
        return ", ".join(names) or "-"


def _shipped(name: str, **extra: str | None) -> Callable[[dict[str, str]], dict[str, str]]:
    """allocator.name's environment, with `extra` variables added (None removes one)."""

    def environment(base: dict[str, str]) -> dict[str, str]:
        shipped = child_environment(AllocatorConfig(name=name), base)[0]
        for key, value in extra.items():
            if value is None:
                shipped.pop(key, None)
            else:
                shipped[key] = value
        return shipped

    return environment


def _with(**variables: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda base: {**base, **variables}


SETTINGS = (
    Setting(_with()),
    Setting(_with(MALLOC_ARENA_MAX="2")),
    Setting(_with(MALLOC_ARENA_MAX="2", MALLOC_TRIM_THRESHOLD_=str(128 * 1024))),
    Setting(_with(PYTHONMALLOC="malloc")),
    Setting(_shipped("jemalloc", MALLOC_CONF=None)),
    Setting(_shipped("jemalloc")),
    Setting(_shipped("jemalloc", PYTHONMALLOC="malloc")),
    Setting(_shipped("mimalloc")),
)
# The soak at the config's cache budget (the caches settle well below it), and with the budget cut
# below what the caches would hold, so they evict by size every cycle: the churn that fragments a heap.
WORKLOADS = {"steady": None, "churn": 24.0}


@dataclass(frozen=True)
class Result:
    workload: str
    setting: str
    ships_as: str
    mapped: str
    peak_mib: float
    hwm_mib: float
    steady_mib: float
    slope_kib_per_cycle: float
    cycle_seconds: float
    seconds: float


def clean_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if key not in _ALLOCATOR_VARIABLES and not key.startswith(_ALLOCATOR_PREFIXES)
    }


def write_config(path: Path, source: Path, model_path: Path, cache_limit_mb: float | None) -> Path:
    """The config under test with the model file at `model_path` (trained once, loaded by every run)."""
    config = yaml.safe_load(source.read_text())
    config.setdefault("strategy", {})["model_path"] = str(model_path)
    if cache_limit_mb is not None:
        config["cache_size_limit_mb"] = cache_limit_mb
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def soak_command(config: Path, cycles: int, warmup: int, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "crypto_bot.cli", "soak", "--config", str(config), "--cycles", str(cycles),
        "--warmup-cycles", str(warmup), "--out", str(out), "--no-plot",
    ]


def mapped_allocator(pid: int) -> str | None:
    """The allocator library mapped into process `pid` ("glibc" for none); None once the process is gone."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return None
    names = {os.path.basename(line.split()[-1]) for line in maps.splitlines() if any(n in line for n in _MAPPED_NAMES)}
    return ", ".join(sorted(names)) or "glibc"


def high_water_bytes(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def run(
    workload: str, setting: Setting, base: dict[str, str], config: Path, cycles: int, warmup: int, out: Path
) -> Result:
    out.mkdir(parents=True, exist_ok=True)
    log = out / "soak.log"
    started = time.perf_counter()
    mapped, hwm = "not seen", 0
    with open(log, "w") as handle:
        child = subprocess.Popen(
            soak_command(config, cycles, warmup, out), env=setting.environment(base), cwd=ROOT,
            stdout=handle, stderr=subprocess.STDOUT,
        )
        while child.poll() is None:
            # The maps are read once the soak runs cycles: the bot, numpy and the model are loaded by then.
            if mapped == "not seen" and (out / "soak.csv").exists():
                mapped = mapped_allocator(child.pid) or mapped
            hwm = max(hwm, high_water_bytes(child.pid) or 0)
            time.sleep(0.5)
    if child.returncode != 0:
        raise SystemExit(f"{setting.label(base)}: the soak ended with exit code {child.returncode}; see {log}")
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "soak.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    after = rows[warmup:]
    cycle_seconds = (float(after[-1]["seconds"]) - float(rows[warmup - 1]["seconds"])) / len(after)
    return Result(
        workload=workload,
        setting=setting.label(base),
        ships_as=setting.ships_as(base),
        mapped=mapped,
        peak_mib=summary["rss_peak_mib"],
        hwm_mib=hwm / MIB,
        steady_mib=statistics.median(int(row["rss_bytes"]) for row in after) / MIB,
        slope_kib_per_cycle=summary["rss_slope_kib_per_cycle"],
        cycle_seconds=cycle_seconds,
        seconds=time.perf_counter() - started,
    )


def table(results: list[Result], cycles: int, warmup: int) -> str:
    baselines = {}
    lines = [
        f"Soak, managed, {cycles} cycles (steady RSS, slope and cycle time after {warmup} warm-up cycles), "
        "one fresh child per row, all rows in one run",
        "",
        "| workload | setting | allocator.name | mapped (/proc/PID/maps) | RSS peak MiB | VmHWM MiB | steady RSS MiB "
        "| slope KiB/cycle | cycle ms | cycle time vs glibc defaults |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        baseline = baselines.setdefault(r.workload, r.cycle_seconds)  # each workload's first row: glibc defaults
        lines.append(
            f"| {r.workload} | {r.setting} | {r.ships_as} | {r.mapped} | {r.peak_mib:.1f} | {r.hwm_mib:.1f} | "
            f"{r.steady_mib:.1f} | {r.slope_kib_per_cycle:+.1f} | {r.cycle_seconds * 1000:.0f} | "
            f"{r.cycle_seconds / baseline:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=360)
    parser.add_argument("--warmup-cycles", type=int, default=None, help="default: a third of the cycles")
    parser.add_argument("--config", default=str(ROOT / "production_config_enhanced.yaml"))
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, of {', '.join(WORKLOADS)}")
    parser.add_argument("--only", default=None, help="comma-separated words; run the settings whose label has one")
    parser.add_argument("--keep", default=None, help="folder to keep each run's soak.csv and log in")
    args = parser.parse_args()
    warmup = args.warmup_cycles if args.warmup_cycles is not None else args.cycles // 3
    base = clean_environment()
    settings = []
    for index, setting in enumerate(SETTINGS):
        try:
            label = setting.label(base)
        except FileNotFoundError as error:  # an allocator this machine does not have
            print(f"skipped: {error}", file=sys.stderr)
            continue
        if index == 0 or args.only is None or any(word in label for word in args.only.split(",")):
            settings.append(setting)
    with tempfile.TemporaryDirectory(prefix="bench_allocators_") as scratch:
        folder = Path(args.keep) if args.keep else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        model_path = folder / "signal_model.npz"
        results = []
        for workload in args.workloads.split(","):
            config = write_config(folder / f"{workload}.yaml", Path(args.config), model_path, WORKLOADS[workload])
            if not model_path.exists():  # trained once, so every run loads the same model
                prepare = subprocess.run(
                    soak_command(config, 1, 0, folder / "prepare"), env=base, cwd=ROOT, capture_output=True, text=True
                )
                if prepare.returncode != 0:
                    raise SystemExit(f"training the model failed:\n{prepare.stdout}{prepare.stderr}")
            for number, setting in enumerate(settings):
                result = run(workload, setting, base, config, args.cycles, warmup, folder / f"{workload}-{number}")
                print(
                    f"{workload} | {result.setting}: {result.seconds:.0f} s, peak {result.peak_mib:.1f} MiB",
                    file=sys.stderr, flush=True,
                )
                results.append(result)
    print(table(results, args.cycles, warmup))


if __name__ == "__main__":
    main()
