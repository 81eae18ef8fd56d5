"""Run one corpus case in this process and print what the diagnosis found as JSON (the corpus tests run
each case in a fresh interpreter, as a bot runs: memory an earlier test freed would otherwise be reused
without growing RSS, and the leak would be seen late).

Usage: python -m tests.leak_corpus.run CASE [MAX_CYCLES]
"""

from __future__ import annotations

import json
import logging
import sys

from tests.leak_corpus.harness import leak_lines, load_case, run_case


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main(argv: list[str]) -> int:
    name = argv[0]
    max_cycles = int(argv[1]) if len(argv) > 1 else 60
    warnings = _Warnings()
    logging.getLogger("crypto_bot.memory").addHandler(warnings)
    module = load_case(name)
    strategy = module.STRATEGY()
    try:
        run = run_case(strategy, max_cycles=max_cycles)
    finally:
        strategy.close()
    run.manager.stop()
    print(
        json.dumps(
            {
                "case": name,
                "expected": module.EXPECTED,
                "growing_type": module.GROWING_TYPE,
                "marked": sorted(leak_lines(module)),
                "named_at_cycle": run.named_at_cycle,
                "diagnosis": None if run.diagnosis is None else run.diagnosis.to_dict(),
                "warnings": [message for message in warnings.messages if message.startswith("leak diagnosis")],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
