"""The bot's footprint, as README "Footprint" reports it: run it with the runtime venv's interpreter.

    .venv-run/bin/python bench/bench_footprint.py            # ./scripts/run's venv: the runtime dependencies only
    .venv/bin/python bench/bench_footprint.py --models       # the dev venv: the model comparison needs scikit-learn

Tables, each measured in fresh child processes of this interpreter:
1. import weight: RSS added by each module on the way to a trading bot, in import order, one child;
2. steady state: the default `./scripts/run` (the repository config, supervised, `--cycles 60`) in a scratch
   folder: the bot's RSS at cycle 60 from its status line and the supervisor's own RSS, first run (trains the
   signal model) and second run (loads it);
3. RSS per symbol: the universe grown from 6 to 200 simulated symbols (default timeframes and history, batch 6),
   one child per size, each run until every symbol was analysed, and the least-squares line through them:
   `limit = base + symbols x per_symbol`;
4. `crypto-bot config check` of the repository config beside the interpreter's bare start: wall and CPU time,
   median of 9 runs after one that writes the bytecode caches (PYTHONDONTWRITEBYTECODE is removed from the
   children's environment), and the load average, since wall time on a busy machine says little;
5. with --models: the signal model against the scikit-learn gradient-boosted trees it replaced, trained on the
   bot's training history and scored on held-out simulated history (other symbols, other seed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / "production_config_enhanced.yaml"
IMPORT_CHAIN = (
    "numpy",
    "pandas",
    "psutil",
    "yaml",
    "tenacity",
    "crypto_bot.memory.manager",
    "crypto_bot.settings",
    "crypto_bot.market.simulated",
    "crypto_bot.strategy.builtin",
    "crypto_bot.strategy.signal_model",
    "crypto_bot.bot",
    "prometheus_client",
)
SYMBOL_COUNTS = (6, 25, 50, 100, 200)
CONFIG_CHECK_RUNS = 9
MIB = 2**20


def child_environment() -> dict[str, str]:
    """This environment, minus what would make a child unlike a user's process."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    environment["PYTHONPATH"] = str(REPO_ROOT)
    return environment


def import_weights() -> list[tuple[str, float, float]]:
    """(module, MiB its import added, RSS after it) along IMPORT_CHAIN in one fresh interpreter."""
    probe = (
        "import importlib, sys\n"
        "def rss():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')) / 1024\n"
        "print('interpreter', rss(), flush=True)\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        print(name, 'absent', flush=True); continue\n"
        "    print(name, rss(), flush=True)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe, *IMPORT_CHAIN],
        capture_output=True, text=True, check=True, env=child_environment(),
    ).stdout
    rows, previous = [], 0.0
    for line in output.splitlines():
        name, value = line.split()
        if value == "absent":
            rows.append((f"{name} (not installed)", 0.0, previous))
            continue
        rss = float(value)
        rows.append((name, rss - previous, rss))
        previous = rss
    return rows


OUTSIDE_THE_RUNTIME = {  # module: what is imported before it (pandas 3 imports pyarrow itself whenever it is there)
    "pyarrow": "numpy",
    "sklearn.ensemble": "numpy, pandas",
    "matplotlib.pyplot": "numpy, pandas",
}


def heavy_optional_imports() -> list[tuple[str, str, float]]:
    """(module, imported before it, MiB it adds) for modules outside the runtime that this interpreter has."""
    rows = []
    for name, before in OUTSIDE_THE_RUNTIME.items():
        probe = (
            f"import importlib, {before}\n"
            "def rss():\n"
            "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')) / 1024\n"
            f"before = rss()\nimportlib.import_module({name!r})\nprint(rss() - before)\n"
        )
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=child_environment())
        if result.returncode == 0:
            rows.append((name, before, float(result.stdout.strip())))
    return rows


def run_bot(folder: Path, config: Path, cycles: int, *extra: str) -> tuple[str, float]:
    """Run `crypto-bot run` in folder; (its stdout, the largest RSS of the first process, in MiB)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "crypto_bot.cli", "run", "--config", str(config), "--cycles", str(cycles),
         "--interval", "0", *extra],
        cwd=folder, env=child_environment(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    first_process_mib = 0.0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            kib = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmRSS"))
            first_process_mib = max(first_process_mib, kib / 1024)
        except (OSError, StopIteration):
            pass
        time.sleep(0.05)
    output = process.stdout.read() if process.stdout else ""
    if process.returncode != 0:
        raise RuntimeError(f"crypto-bot run exited {process.returncode}")
    return output, first_process_mib


def status_rss_mib(output: str, cycle: int) -> int:
    """The RSS the status line of `cycle` reports."""
    line = next(line for line in output.splitlines() if re.search(rf"\| cycle +{cycle} \|", line))
    return int(re.search(r"\| rss (\d+) MiB", line)[1])


def steady_state() -> list[tuple[str, int, float]]:
    """(run, the bot's RSS at cycle 60, the supervisor's largest RSS), first and second run in one folder."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="footprint-") as name:
        folder = Path(name)
        shutil.copy(CONFIG, folder / CONFIG.name)
        for run in ("first run (trains the model)", "second run (loads it)"):
            output, supervisor_mib = run_bot(folder, folder / CONFIG.name, 60)
            rows.append((run, status_rss_mib(output, 60), supervisor_mib))
    return rows


def rss_per_symbol() -> tuple[list[tuple[int, int, int]], float, float]:
    """([(symbols, cycles run, the bot's RSS at the last cycle)], base MiB, MiB per symbol) by least squares."""
    rows = []
    base_config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="footprint-symbols-") as name:
        folder = Path(name)
        for count in SYMBOL_COUNTS:
            config = {**base_config, "symbols": [f"SIM{number:04d}/USDT" for number in range(1, count + 1)]}
            config["storage"] = {"journal_path": str(folder / f"journal-{count}.sqlite")}
            config["strategy"] = {**base_config["strategy"], "model_path": str(folder / "signal_model.npz")}
            path = folder / f"symbols-{count}.yaml"
            path.write_text(yaml.safe_dump(config), encoding="utf-8")
            cycles = -(-count // config["strategy"]["batch_size"]) + 10  # every symbol analysed, then ten more cycles
            output, _ = run_bot(folder, path, cycles, "--no-supervisor")
            rows.append((count, cycles, status_rss_mib(output, cycles)))
    xs = [float(count) for count, _, _ in rows]
    ys = [float(rss) for _, _, rss in rows]
    slope, intercept = statistics.linear_regression(xs, ys)
    return rows, intercept, slope


def command_times(command: list[str]) -> tuple[float, float, float]:
    """(median wall seconds, median CPU seconds, largest wall seconds) of `command`, after one run that writes the
    bytecode caches."""
    subprocess.run(command, check=True, capture_output=True, env=child_environment())
    walls, cpus = [], []
    for _ in range(CONFIG_CHECK_RUNS):
        before = os.times()
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=child_environment())
        walls.append(time.perf_counter() - started)
        after = os.times()
        cpus.append((after.children_user - before.children_user) + (after.children_system - before.children_system))
    return statistics.median(walls), statistics.median(cpus), max(walls)


def model_comparison() -> list[tuple[str, float, float, float, int]]:
    """(model, held-out accuracy, held-out AUC, training seconds, file bytes) for ours and, if installed, the trees."""
    import numpy as np

    from crypto_bot.market import SimulatedMarket, generated_symbols
    from crypto_bot.strategy import labelled_rows, save_model, train_signal_model

    async def history(symbols: list[str], seed: int, candles: int) -> list:
        market = SimulatedMarket(symbols, timeframes=["1m"], base_timeframe="1m", seed=seed, history_candles=candles)
        return [await market.fetch_ohlcv(symbol, "1m", limit=candles) for symbol in market.universe()]

    # the bot's own training history (strategy.model_training_symbols x model_training_candles, market.seed + 1)
    training = asyncio.run(history(generated_symbols(4, quote="TRAIN"), 43, 3000))
    held_out = asyncio.run(history(generated_symbols(20, quote="TEST", first_number=100), 7, 5000))
    features = np.concatenate([labelled_rows(frame, 5)[0] for frame in held_out])
    labels = np.concatenate([labelled_rows(frame, 5)[1] for frame in held_out])

    def scores(probabilities: np.ndarray) -> tuple[float, float]:
        accuracy = float(((probabilities > 0.5) == labels).mean())
        ranks = np.empty(len(probabilities))
        ranks[np.argsort(probabilities)] = np.arange(1, len(probabilities) + 1)
        positives = labels.sum()
        auc = (ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * (len(labels) - positives))
        return accuracy, float(auc)

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        ours = train_signal_model(training, horizon=5)
        seconds = time.perf_counter() - started
        save_model(ours, Path(folder) / "model.npz")
        rows.append(("logistic regression, numpy (the bot's)", *scores(ours.up_probabilities(features)), seconds,
                     (Path(folder) / "model.npz").stat().st_size))
        try:
            import joblib
            from sklearn.ensemble import HistGradientBoostingClassifier
        except ImportError:
            return rows
        train_features = np.concatenate([labelled_rows(frame, 5)[0] for frame in training])
        train_labels = np.concatenate([labelled_rows(frame, 5)[1] for frame in training])
        trees = HistGradientBoostingClassifier(max_iter=100, max_depth=3, learning_rate=0.05, early_stopping=False,
                                               random_state=0)
        started = time.perf_counter()
        trees.fit(train_features, train_labels)
        seconds = time.perf_counter() - started
        joblib.dump(trees, Path(folder) / "trees.joblib")
        rows.append(("gradient-boosted trees, scikit-learn (before)", *scores(trees.predict_proba(features)[:, 1]),
                     seconds, (Path(folder) / "trees.joblib").stat().st_size))
    base_rate = max(labels.mean(), 1 - labels.mean())
    rows.append((f"always the majority class ({len(labels):,} held-out candles)", float(base_rate), 0.5, 0.0, 0))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", action="store_true", help="also compare the signal model with scikit-learn's trees")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} at {sys.executable}\n")

    print("| module (imported in this order) | MiB it adds | RSS after |\n|---|---|---|")
    for name, added, total in import_weights():
        print(f"| {name} | {added:.1f} | {total:.1f} |")
    optional = heavy_optional_imports()
    if optional:
        print("\n| outside the runtime | imported after | MiB it adds |\n|---|---|---|")
        for name, before, added in optional:
            print(f"| {name} | {before} | {added:.1f} |")

    print("\n| ./scripts/run (60 cycles, supervised) | bot RSS at cycle 60 | supervisor RSS |\n|---|---|---|")
    for run, bot_mib, supervisor_mib in steady_state():
        print(f"| {run} | {bot_mib} MiB | {supervisor_mib:.1f} MiB |")

    rows, base, per_symbol = rss_per_symbol()
    print("\n| symbols in the universe | cycles run | bot RSS at the last cycle |\n|---|---|---|")
    for count, cycles, rss in rows:
        print(f"| {count} | {cycles} | {rss} MiB |")
    print(f"\nleast squares: RSS = {base:.1f} MiB + symbols x {per_symbol * 1024:.0f} KiB")

    print(f"\n| command (median of {CONFIG_CHECK_RUNS} runs) | wall | CPU | slowest wall |\n|---|---|---|---|")
    commands = {
        "crypto-bot config check (the repository config)": ["-m", "crypto_bot.cli", "config", "check", str(CONFIG)],
        "python -c pass (the interpreter's start, for scale)": ["-c", "pass"],
    }
    for name, arguments in commands.items():
        wall, cpu, slowest = command_times([sys.executable, *arguments])
        print(f"| {name} | {wall * 1000:.0f} ms | {cpu * 1000:.0f} ms | {slowest * 1000:.0f} ms |")
    print(f"(load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")

    if args.models:
        print("\n| signal model | held-out accuracy | AUC | training | file |\n|---|---|---|---|---|")
        for name, accuracy, auc, seconds, size in model_comparison():
            print(f"| {name} | {accuracy:.1%} | {auc:.3f} | {seconds:.2f} s | {size / 1024:.0f} KiB |")


if __name__ == "__main__":
    main()
