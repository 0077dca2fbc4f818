"""Results, ratios and targets: what each workload prints and what goes into the JSON report."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ORCHESTRIX",
    "Figure",
    "Target",
    "WorkloadResult",
    "percentiles",
    "write_json",
]

#: The name Orchestrix's own figures carry in the reports.
ORCHESTRIX = "orchestrix"


@dataclass
class Figure:
    """One measured figure: ``implementation`` at ``point`` did ``value`` ``unit``.

    ``higher_is_better`` says how ratios read: for throughput a ratio is
    orchestrix / baseline, for latency and memory baseline / orchestrix, so
    that a ratio above 1 always means Orchestrix does better.
    """

    point: str
    implementation: str
    value: float
    unit: str
    higher_is_better: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    """A target of the issue: ``value`` compared with ``threshold``."""

    description: str
    value: float | None
    threshold: float
    at_least: bool = True
    note: str = ""

    @property
    def met(self) -> bool | None:
        """True or False; None when it could not be measured in this run."""
        if self.value is None:
            return None
        return self.value >= self.threshold if self.at_least else self.value <= self.threshold

    def as_dict(self) -> dict[str, Any]:
        """The target with its verdict."""
        return {**asdict(self), "met": self.met}


@dataclass
class WorkloadResult:
    """Everything one workload measured."""

    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "ok"  # "ok", "skipped" or "error"
    error: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    checks: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        point: str,
        implementation: str,
        value: float,
        unit: str,
        *,
        higher_is_better: bool = True,
        **extra: Any,
    ) -> Figure:
        """Record one figure."""
        figure = Figure(point, implementation, value, unit, higher_is_better, dict(extra))
        self.figures.append(figure)
        return figure

    def value(self, point: str, implementation: str) -> float | None:
        """The figure of ``implementation`` at ``point`` (None if not measured)."""
        for figure in self.figures:
            if figure.point == point and figure.implementation == implementation:
                return figure.value
        return None

    def ratio(self, point: str, baseline: str, subject: str = ORCHESTRIX) -> float | None:
        """``subject`` against ``baseline`` at ``point`` (above 1: ``subject`` does better)."""
        mine = self.value(point, subject)
        theirs = self.value(point, baseline)
        if mine is None or theirs is None or mine <= 0 or theirs <= 0:
            return None
        higher = next(
            (f.higher_is_better for f in self.figures if f.point == point),
            True,
        )
        return mine / theirs if higher else theirs / mine

    def points(self) -> list[str]:
        """The points measured, in order."""
        seen: dict[str, None] = {}
        for figure in self.figures:
            seen.setdefault(figure.point, None)
        return list(seen)

    def implementations(self) -> list[str]:
        """The implementations measured, in order (Orchestrix's first)."""
        seen: dict[str, None] = {}
        for figure in self.figures:
            seen.setdefault(figure.implementation, None)
        names = list(seen)
        return sorted(names, key=lambda n: (not n.startswith(ORCHESTRIX), names.index(n)))

    def as_dict(self) -> dict[str, Any]:
        """The result with every ratio against Orchestrix's figure at the same point."""
        ratios: dict[str, dict[str, float]] = {}
        for point in self.points():
            for implementation in self.implementations():
                if implementation == ORCHESTRIX:
                    continue
                r = self.ratio(point, implementation)
                if r is not None:
                    ratios.setdefault(point, {})[implementation] = round(r, 4)
        return {
            "key": self.key,
            "title": self.title,
            "status": self.status,
            "error": self.error,
            "traceback": self.traceback,
            "seconds": round(self.seconds, 2),
            "figures": [asdict(f) for f in self.figures],
            "ratios_orchestrix_vs": ratios,
            "targets": [t.as_dict() for t in self.targets],
            "checks": self.checks,
            "notes": self.notes,
        }

    def render(self) -> str:
        """A plain-text table: one row per point and implementation, with ratios."""
        lines = [f"== {self.key}. {self.title} [{self.status}, {self.seconds:.1f} s]"]
        if self.error:
            lines.append(f"   error: {self.error}")
        for point in self.points():
            lines.append(f"   {point}")
            for figure in (f for f in self.figures if f.point == point):
                ratio = ""
                if figure.implementation != ORCHESTRIX:
                    r = self.ratio(point, figure.implementation)
                    ratio = f"   orchestrix ratio {r:.2f}x" if r is not None else ""
                extra = "".join(
                    f" {k}={_short(v)}"
                    for k, v in figure.extra.items()
                    if k not in ("x", "series") and not isinstance(v, list)
                )
                lines.append(
                    f"     {figure.implementation:<34} {_number(figure.value):>12} "
                    f"{figure.unit:<10}{ratio}{extra}"
                )
        for check, value in self.checks.items():
            lines.append(f"   check {check}: {value}")
        for target in self.targets:
            verdict = {True: "MET", False: "MISSED", None: "NOT MEASURED"}[target.met]
            shown = "-" if target.value is None else f"{target.value:.2f}"
            sign = ">=" if target.at_least else "<="
            lines.append(
                f"   target {verdict}: {target.description}: {shown} (needs {sign} "
                f"{target.threshold:g}){' — ' + target.note if target.note else ''}"
            )
        for note in self.notes:
            lines.append(f"   note: {note}")
        return "\n".join(lines)


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def percentiles(samples: Sequence[float], wanted: Iterable[int] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": …, "p95": …}`` of ``samples`` (nearest-rank, no interpolation)."""
    ordered = sorted(samples)
    out: dict[str, float] = {}
    for p in wanted:
        if not ordered:
            out[f"p{p}"] = float("nan")
            continue
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
        out[f"p{p}"] = ordered[index]
    out["mean"] = statistics.fmean(ordered) if ordered else float("nan")
    return out


def write_json(path: Path, meta: dict[str, Any], results: Sequence[WorkloadResult]) -> None:
    """Write the run's report."""
    payload = {"meta": meta, "workloads": [r.as_dict() for r in results]}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
