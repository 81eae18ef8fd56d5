"""The soak's memory.png: what a run recorded, drawn for an operator (the `soak` extra: matplotlib).

Draws the limit and the pressure thresholds the run itself read and used (recorded in `soak.csv` and
`summary.json`, so a plot drawn on another machine shows the run's, not its own), shades the cycles
spent at GC, PRESSURE and CRITICAL, puts wall time on a second axis, uses a log scale so the limit
and every line fit, and zooms on the managed RSS in an inset so a slow creep shows beside the
unmanaged line. Apart from crypto_bot.soak so that numpy and matplotlib load only to draw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from crypto_bot.memory.units import MIB as _MIB
from crypto_bot.soak import _soak_extra, read_rows

_LEVEL_COLOURS = {"GC": "#f2d14b", "PRESSURE": "#f28e2b", "CRITICAL": "#e15759"}


def draw(out: Path, *, compare: Path | None = None) -> Any:
    """The figure of memory.png: RSS and cache bytes per cycle (and another run's, when comparing) on a log
    scale, the run's recorded limit and thresholds, its pressure levels shaded, wall time on a second axis,
    and the managed RSS zoomed in an inset."""
    _soak_extra("matplotlib").use("Agg")
    plt = _soak_extra("matplotlib.pyplot")

    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    runs = [_Run(out, "")] + ([_Run(compare, " (compared run)")] if compare is not None else [])
    for index, run in enumerate(runs):
        style = "-" if index == 0 else "--"
        ax.plot(run.cycles, run.column("rss_bytes") / _MIB, style, lw=2, label=f"RSS, {run.mode}{run.suffix}")
        cache_label = f"cache bytes, {run.mode}{run.suffix}"
        ax.plot(run.cycles, run.column("cache_bytes") / _MIB, style, lw=1, alpha=0.8, label=cache_label)
    ax.set_yscale("log")  # the limit and a few-MiB cache on one axis; growth reads as a slope either way
    managed = next((run for run in runs if run.mode == "managed"), None)
    _draw_limits(ax, runs[0] if managed is None else managed)
    if managed is not None:
        _shade_levels(ax, managed)
        _zoom(ax, managed)
    _wall_time_axis(ax, runs[0])
    ax.set_xlabel("cycle")
    ax.set_ylabel("MiB (log scale)")
    ax.set_title("crypto_bot soak: memory per cycle")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


class _Run:
    """One soak's recorded rows and summary."""

    def __init__(self, directory: Path, suffix: str) -> None:
        self.rows = read_rows(directory / "soak.csv")
        summary_path = directory / "summary.json"
        self.summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        self.mode = self.summary.get("mode", directory.name)
        self.suffix = suffix
        self.cycles = np.array([int(row["cycle"]) for row in self.rows])

    def column(self, name: str) -> np.ndarray:
        """A numeric column (nan where a row has no figure, or the run predates the column)."""
        return np.array([float(row[name]) if row.get(name) else np.nan for row in self.rows])


def _draw_limits(ax: Any, run: _Run) -> None:
    """The limit the run read (per cycle: a cgroup limit may change) and its thresholds as fractions of it."""
    limits = run.column("limit_bytes") / _MIB
    recorded = run.summary.get("memory", {})
    if np.isnan(limits).all() and recorded.get("limit_bytes") is not None:
        limits = np.full(len(run.cycles), recorded["limit_bytes"] / _MIB)
    if np.isnan(limits).all():
        return
    ax.plot(run.cycles, limits, color="#b00020", lw=1.5, label="memory limit (the run's reading)")
    for level, ratio in recorded.get("thresholds", {}).items():
        label = f"{level} threshold {ratio:.0%}"
        ax.plot(run.cycles, limits * ratio, color=_LEVEL_COLOURS[level], lw=1, ls=":", label=label)


def _shade_levels(ax: Any, run: _Run) -> None:
    """A band over each stretch of cycles the run spent at GC, PRESSURE or CRITICAL."""
    levels = [row["pressure_level"] for row in run.rows]
    labelled: set[str] = set()
    start = 0
    for index in range(1, len(levels) + 1):
        if index < len(levels) and levels[index] == levels[start]:
            continue
        level = levels[start]
        if level in _LEVEL_COLOURS:
            ax.axvspan(run.cycles[start] - 0.5, run.cycles[index - 1] + 0.5, color=_LEVEL_COLOURS[level], alpha=0.2,
                       label=None if level in labelled else f"at {level}")
            labelled.add(level)
        start = index


def _zoom(ax: Any, run: _Run) -> None:
    """The managed RSS on its own linear scale: a creep of a few KiB a cycle shows as a slope."""
    rss = run.column("rss_bytes") / _MIB
    if len(rss) < 2 or np.isnan(rss).all():
        return
    inset = ax.inset_axes([0.55, 0.6, 0.43, 0.26])  # between the lines and the limit, on the log scale
    inset.plot(run.cycles, rss, lw=1.2)
    inset.set_title("managed RSS, zoomed (MiB)", fontsize="x-small")
    inset.tick_params(labelsize="x-small")
    inset.grid(alpha=0.3)


def _wall_time_axis(ax: Any, run: _Run) -> None:
    """Seconds since the run started, on top, mapped from the cycles the run recorded."""
    seconds = run.column("seconds")
    if len(run.cycles) < 2 or np.isnan(seconds).any():
        return
    cycles = run.cycles.astype(float)
    top = ax.secondary_xaxis(
        "top", functions=(lambda c: np.interp(c, cycles, seconds), lambda s: np.interp(s, seconds, cycles))
    )
    top.set_xlabel("wall time since start (s)")
