"""The soak's plot, for operators: the run's own limit and thresholds, its pressure levels shaded, wall time on a
second axis, a log scale and an inset zoom of the managed RSS; and the soak records what the plot draws."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import matplotlib.colors
import numpy as np
import pytest

from crypto_bot.cli import main
from crypto_bot.soak import FIELDS
from crypto_bot.soak_plot import draw

MIB = 1024 * 1024
LIMIT_BYTES = 512 * MIB  # a container this machine is not: the plot must show the run's limit, not its own


def recorded_run(directory: Path, mode: str, levels: list[str]) -> Path:
    """A soak's soak.csv and summary.json as a run inside a 512 MiB container would have written them."""
    directory.mkdir()
    with open(directory / "soak.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for cycle, level in enumerate(levels, start=1):
            writer.writerow({
                "cycle": cycle, "seconds": 2.0 * cycle, "rss_bytes": (300 + cycle) * MIB, "working_set_bytes": "",
                "cache_bytes": 20 * MIB, "cache_entries": 10, "models_loaded": 1, "pressure_level": level,
                "gc_collections": 0, "unmanaged_bytes": "", "leak_suspected": 0, "limit_bytes": LIMIT_BYTES,
            })
    summary = {"mode": mode, "memory": {"limit_bytes": LIMIT_BYTES,
                                        "thresholds": {"GC": 0.7, "PRESSURE": 0.8, "CRITICAL": 0.9}}}
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


@pytest.fixture
def figure(tmp_path: Path) -> object:
    levels = ["NORMAL"] * 4 + ["PRESSURE"] * 3 + ["NORMAL"] * 3
    managed = recorded_run(tmp_path / "managed", "managed", levels)
    unmanaged = recorded_run(tmp_path / "unmanaged", "unmanaged", ["UNMANAGED"] * 10)
    figure = draw(managed, compare=unmanaged)
    yield figure
    import matplotlib.pyplot as plt

    plt.close(figure)


def lines_by_label(axes: object) -> dict[str, object]:
    return {line.get_label(): line for line in axes.get_lines()}


def test_the_limit_and_thresholds_are_the_runs_recorded_ones(figure: object) -> None:
    axes = figure.axes[0]
    lines = lines_by_label(axes)
    assert np.allclose(lines["memory limit (the run's reading)"].get_ydata(), 512)
    assert np.allclose(lines["PRESSURE threshold 80%"].get_ydata(), 0.8 * 512)
    assert {"GC threshold 70%", "CRITICAL threshold 90%"} <= set(lines)
    assert axes.get_yscale() == "log"


def test_the_cycles_at_pressure_are_shaded(figure: object) -> None:
    [band] = [patch for patch in figure.axes[0].patches if patch.get_label() == "at PRESSURE"]
    left, _, width, _ = band.get_window_extent().transformed(figure.axes[0].transData.inverted()).bounds
    assert left == pytest.approx(4.5) and left + width == pytest.approx(7.5)
    assert matplotlib.colors.to_hex(band.get_facecolor()) == "#f28e2b"


def test_wall_time_is_a_second_axis_and_the_managed_rss_is_zoomed(figure: object) -> None:
    axes = figure.axes[0]
    [wall_time] = [child for child in axes.child_axes if child.get_xlabel() == "wall time since start (s)"]
    assert wall_time.get_xaxis().get_ticks_position() == "top"
    [inset] = [child for child in axes.child_axes if child is not wall_time]
    assert inset.get_title().startswith("managed RSS, zoomed")
    [line] = inset.get_lines()
    assert list(line.get_ydata()) == [301 + cycle for cycle in range(10)]


def test_a_soak_records_the_limit_and_thresholds_it_ran_under(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    out = tmp_path / "soak"
    arguments = ["soak", "--config", str(config_file(memory_threshold=0.75)), "--cycles", "3", "--out", str(out),
                 "--symbols", "6", "--new-symbols-per-cycle", "1", "--history-candles", "100", "--no-plot"]
    assert main(arguments) == 0
    memory = json.loads((out / "summary.json").read_text())["memory"]
    assert memory["thresholds"] == {"GC": 0.7, "PRESSURE": 0.75, "CRITICAL": 0.9} and memory["limit_bytes"] > 0
    with open(out / "soak.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and all(int(row["limit_bytes"]) > 0 for row in rows)
