"""``python -m benchmarks.markdown REPORT.json``: a run's report as Markdown tables.

What ``docs/performance.md`` shows is pasted from this output: one table per
workload (figures, and ratios of Orchestrix against each other contender at
the same point), then the targets with their verdicts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "render"]

_VERDICT = {True: "met", False: "**missed**", None: "not measured"}


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ratio(workload: dict[str, Any], point: str, implementation: str) -> str:
    ratio = workload["ratios_orchestrix_vs"].get(point, {}).get(implementation)
    return "" if ratio is None else f"{ratio:.2f}x"


def render(report: dict[str, Any]) -> str:
    """The Markdown of a report (as written by ``python -m benchmarks``).

    One table per workload: a row per point, a column per contender; each
    cell is the figure and, for contenders other than Orchestrix, Orchestrix's
    ratio against it (above 1: Orchestrix does better).
    """
    out: list[str] = []
    for workload in report["workloads"]:
        out.append(f"### {workload['key']}. {workload['title']}\n")
        if workload["status"] != "ok":
            out.append(f"*{workload['status']}* {workload.get('error') or ''}\n")
        figures = workload["figures"]
        if figures:
            contenders = list(dict.fromkeys(f["implementation"] for f in figures))
            points = list(dict.fromkeys(f["point"] for f in figures))
            out.append("| | " + " | ".join(contenders) + " |")
            out.append("|---|" + "---:|" * len(contenders))
            for point in points:
                cells = []
                for contender in contenders:
                    found = [
                        f
                        for f in figures
                        if f["point"] == point and f["implementation"] == contender
                    ]
                    cells.append(_cell(workload, found[0]) if found else "")
                out.append(f"| {point} | " + " | ".join(cells) + " |")
            out.append("")
        for name, value in workload.get("checks", {}).items():
            out.append(f"- check `{name}`: {value}")
        for target in workload["targets"]:
            shown = "—" if target["value"] is None else f"{target['value']:.2f}"
            sign = "≥" if target["at_least"] else "≤"
            out.append(
                f"- target {target['description']}: {shown} (needs {sign} "
                f"{target['threshold']:g}): {_VERDICT[target['met']]}"
            )
        for note in workload["notes"]:
            out.append(f"- {note}")
        out.append("")
    return "\n".join(out)


def _cell(workload: dict[str, Any], figure: dict[str, Any]) -> str:
    text = f"{_number(figure['value'])} {figure['unit']}"
    ratio = _ratio(workload, figure["point"], figure["implementation"])
    if ratio:
        text += f" ({ratio})"
    conflicts = figure["extra"].get("conflicts_per_success")
    if conflicts is not None:
        text += f", {conflicts:.2f} conflicts/success"
    p95 = figure["extra"].get("p95")
    if p95 is not None:
        text += f", p95 {p95:.3g}"
    return text


def main(argv: list[str]) -> int:
    """Print the Markdown of the report named on the command line."""
    if len(argv) != 1:
        print("usage: python -m benchmarks.markdown REPORT.json", file=sys.stderr)
        return 2
    print(render(json.loads(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
