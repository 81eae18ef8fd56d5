"""Run one corpus case in the real bot in this process and print what the diagnosis found as JSON;
`fresh_run` runs it so in a fresh interpreter (what the tests and the bench call).

A fresh interpreter per case, as a bot runs: memory an earlier run freed would otherwise be reused
without growing RSS, and the leak would be seen late.

Usage: python -m tests.leak_corpus.run CASE [--max-cycles 60] [--frames 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from crypto_bot.memory.diagnosis import DEFAULT_FRAMES
from tests.leak_corpus.harness import leak_lines, load_case, run_case

REPO_ROOT = Path(__file__).resolve().parents[2]


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def fresh_run(
    case: str, *, max_cycles: int, frames: int = DEFAULT_FRAMES, timeout_seconds: float = 600
) -> dict[str, Any]:
    """Run `case` with `python -m tests.leak_corpus.run` and return its JSON (`timeout_seconds`: a safety
    net for a hung child, not a speed target)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.leak_corpus.run", case, "--max-cycles", str(max_cycles), "--frames", str(frames)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{case} exited with {result.returncode}: {result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case")
    parser.add_argument("--max-cycles", type=int, default=60)
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    args = parser.parse_args(argv)
    warnings = _Warnings()
    logging.getLogger("crypto_bot").addHandler(warnings)
    module = load_case(args.case)
    with tempfile.TemporaryDirectory(prefix="leak-corpus-") as data_dir:
        run = run_case(args.case, Path(data_dir), max_cycles=args.max_cycles, frames=args.frames)
    print(
        json.dumps(
            {
                "case": args.case,
                "expected": module.EXPECTED,
                "growing_type": module.GROWING_TYPE,
                "marked": sorted(leak_lines(module)),
                **{name: value for name, value in dataclasses.asdict(run).items() if name != "timings"},
                "timings": run.timings.summary(),
                "warnings": [message for message in warnings.messages if message.startswith("leak diagnosis")],
                "plugin_failures": [message for message in warnings.messages if message.startswith("strategy plugin")],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
