"""Which worker of a fleet analyses which symbol: `--shard i/N` and rendezvous hashing.

Covers `Shard` (this worker's number and the fleet's size, parsed from "i/N") and `shard_of`. A symbol's
shard is the one whose hash of (symbol, shard number) is highest (rendezvous hashing, with blake2b:
Python's `hash()` changes per process): the same in every process and after every restart, and when
the fleet grows from N to N + 1 workers only the symbols the new worker wins move (about 1 in N + 1).
Not covered: what a worker does with its symbols (`redis_market`, the bot).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crypto_bot.settings import Settings

MAX_SHARDS = 1024


def shard_of(symbol: str, count: int) -> int:
    """The shard number, 1..count, that analyses `symbol` in a fleet of `count` workers."""
    return max(range(1, count + 1), key=lambda number: _weight(symbol, number))


def _weight(symbol: str, number: int) -> int:
    digest = hashlib.blake2b(f"{number}\x00{symbol}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True, slots=True)
class Shard:
    """Worker `number` of `count` (1-based: "1/3" .. "3/3", as jest's and Playwright's --shard)."""

    number: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS or not 1 <= self.number <= self.count:
            raise ValueError(f"a shard is i/N with N in 1..{MAX_SHARDS} and i in 1..N; got {self.number}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """"i/N"; "0/N" is read as "N/N", so a fleet numbered 0..N-1 covers every shard too."""
        number, separator, count = text.partition("/")
        if not separator or not number.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"a shard is written i/N, e.g. 1/3 (worker 1 of 3); got {text!r}")
        number_value, count_value = int(number), int(count)
        return cls(number_value or count_value, count_value)

    def owns(self, symbol: str) -> bool:
        return self.count == 1 or shard_of(symbol, self.count) == self.number

    @property
    def name(self) -> str:
        """"1/3": how the shard is shown and keyed (heartbeats)."""
        return f"{self.number}/{self.count}"

    def journal_path(self, path: str) -> str:
        """Each worker's own journal beside the configured one: data/journal.sqlite -> data/journal.shard-1-of-3.sqlite."""
        if self.count == 1:
            return path
        original = Path(path)
        return str(original.with_name(f"{original.stem}.shard-{self.number}-of-{self.count}{original.suffix}"))


def worker_settings(settings: Settings, shard: Shard) -> Settings:
    """The settings of worker `shard`: the same, with its own journal (`Shard.journal_path`)."""
    storage = replace(settings.storage, journal_path=shard.journal_path(settings.storage.journal_path))
    return replace(settings, storage=storage)
