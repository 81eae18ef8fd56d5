"""Byte units and how memory figures are written in logs and alerts."""

from __future__ import annotations

KIB = 1024
MIB = 1024 * 1024


def format_mib(value_bytes: int | float | None) -> str:
    """`123.4 MiB`, or `n/a` for a figure that could not be read."""
    return "n/a" if value_bytes is None else f"{value_bytes / MIB:.1f} MiB"


def format_kib(value_bytes: int | float | None) -> str:
    """`12.3 KiB`, or `n/a` for a figure that could not be read."""
    return "n/a" if value_bytes is None else f"{value_bytes / KIB:.1f} KiB"
