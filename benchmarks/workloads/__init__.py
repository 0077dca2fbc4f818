"""The workloads, numbered as in the issue; each has ``run(ctx) -> WorkloadResult``."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.context import Context
from benchmarks.report import WorkloadResult

__all__ = ["WORKLOADS", "Workload"]

Workload = Callable[[Context], WorkloadResult]


def _load() -> dict[str, tuple[str, str]]:
    # name -> (module, title); imported lazily so that --only imports one.
    return {
        "append": ("benchmarks.workloads.append", "1. append sweep"),
        "concurrent": ("benchmarks.workloads.concurrent", "2. concurrent writers"),
        "contention": ("benchmarks.workloads.contention", "3. contention on hot streams"),
        "load": ("benchmarks.workloads.load", "4. aggregate load"),
        "catchup": ("benchmarks.workloads.catchup", "5. projection catch-up"),
        "celery": ("benchmarks.workloads.celery_e2e", "6. Celery end to end"),
        "memory": ("benchmarks.workloads.memory", "7. memory"),
    }


#: Workload name -> (module, title), in the order they run.
WORKLOADS: dict[str, tuple[str, str]] = _load()
