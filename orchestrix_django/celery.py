"""Celery wiring for Orchestrix: the beat schedule of the periodic catch-up and saga sweep.

A lost wake-up only delays a projection: beat runs ``orchestrix.catch_up_projections``
every ``ORCHESTRIX["CATCH_UP_INTERVAL"]`` seconds. How to add the schedule to a
project's Celery app, and the recommended Celery settings: docs/celery.md.
"""

from __future__ import annotations

from typing import Any

from orchestrix_django.settings import orchestrix_settings

__all__ = ["CATCH_UP_ENTRY", "SWEEP_ENTRY", "beat_schedule", "saga_beat_schedule"]

#: The name of the schedule entry :func:`beat_schedule` returns.
CATCH_UP_ENTRY = "orchestrix-catch-up-projections"

#: The name of the schedule entry :func:`saga_beat_schedule` returns.
SWEEP_ENTRY = "orchestrix-sweep-sagas"


def beat_schedule(interval: float | None = None) -> dict[str, dict[str, Any]]:
    """A schedule to merge into ``app.conf.beat_schedule``.

    It runs ``orchestrix.catch_up_projections`` every ``interval`` seconds
    (``ORCHESTRIX["CATCH_UP_INTERVAL"]`` by default). A run that could not
    start within one interval expires, so that ticks piled up while the
    workers were down don't all run when they come back.
    """
    return _every(
        CATCH_UP_ENTRY,
        "orchestrix.catch_up_projections",
        orchestrix_settings.CATCH_UP_INTERVAL if interval is None else interval,
        "the catch-up interval",
    )


def saga_beat_schedule(interval: float | None = None) -> dict[str, dict[str, Any]]:
    """The schedule entry of ``orchestrix.sweep_sagas`` (see :mod:`orchestrix_django.tasks`).

    Merge it too when the project runs sagas or process managers
    (``sender.conf.beat_schedule.update(saga_beat_schedule())``): every
    ``interval`` seconds (``ORCHESTRIX["SAGA_SWEEP_INTERVAL"]`` by default) it
    times out overdue sagas, fires process managers' deadlines and resumes
    sagas whose task was lost. A run that could not start within one
    interval expires.
    """
    return _every(
        SWEEP_ENTRY,
        "orchestrix.sweep_sagas",
        orchestrix_settings.SAGA_SWEEP_INTERVAL if interval is None else interval,
        "the saga sweep interval",
    )


def _every(entry: str, task: str, interval: float, what: str) -> dict[str, dict[str, Any]]:
    """A beat entry running ``task`` every ``interval`` seconds, each run expiring after one."""
    seconds = float(interval)
    if seconds <= 0:
        raise ValueError(f"{what} must be positive, got {seconds}")
    return {entry: {"task": task, "schedule": seconds, "options": {"expires": seconds}}}
