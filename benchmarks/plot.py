"""The plot of a run: the sweeps as lines, the other workloads as bars (one PNG)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.report import WorkloadResult

__all__ = ["plot"]

#: Workloads drawn as sweeps: key -> (x label, y label, log y). Figures
#: without an ``x`` are left out (6: the catch-up comparison, in the tables).
_SWEEPS = {
    "1": ("events per save", "events/s", True),
    "2": ("writer processes", "events/s", False),
    "4": ("events in the stream", "ms per load (p50)", True),
    "6": ("events/s written (one per save)", "ms commit -> visible", True),
}


def plot(results: Sequence[WorkloadResult], path: Path, *, title: str) -> Path:
    """Draw every measured workload in one figure and save it as ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.status == "ok" and r.figures]
    columns = 2
    rows = max(1, math.ceil(len(shown) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(13, 4.2 * rows), squeeze=False)
    for ax, result in zip(axes.flat, shown, strict=False):
        if result.key in _SWEEPS:
            _sweep(ax, result, *_SWEEPS[result.key])
        else:
            _bars(ax, result)
        ax.set_title(f"{result.key}. {result.title}", fontsize=9)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    figure.suptitle(f"Orchestrix benchmarks ({title})", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _sweep(ax: Any, result: WorkloadResult, xlabel: str, ylabel: str, log: bool) -> None:
    series: dict[str, tuple[list[float], list[float]]] = {}
    for figure in result.figures:
        x = figure.extra.get("x")
        if x is None:
            continue
        label = figure.implementation
        if figure.extra.get("series"):
            label += f" ({figure.extra['series']})"
        xs, ys = series.setdefault(label, ([], []))
        xs.append(float(x))
        ys.append(figure.value)
    ticks: set[float] = set()
    for label, (xs, ys) in series.items():
        mine = label.startswith("orchestrix")
        style = ("-" if mine else "--") + ("s" if "snapshot" in label else "o")
        ax.plot(xs, ys, style, label=label, linewidth=2 if mine else 1, markersize=4)
        ticks.update(xs)
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks), [f"{t:g}" for t in sorted(ticks)])
    ax.minorticks_off()
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def _bars(ax: Any, result: WorkloadResult) -> None:
    labels = [f"{f.point}\n{f.implementation}" for f in result.figures]
    values = [f.value for f in result.figures]
    colours = [
        "tab:blue" if f.implementation.startswith("orchestrix") else "tab:gray"
        for f in result.figures
    ]
    positions = range(len(values))
    ax.barh(list(positions), values, color=colours)
    ax.set_yticks(list(positions), labels, fontsize=6)
    ax.invert_yaxis()
    units = sorted({f.unit for f in result.figures})
    ax.set_xlabel(" / ".join(units))
    ax.grid(True, axis="x", alpha=0.3)
