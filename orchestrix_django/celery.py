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
    seconds = float(interval if interval is not None else orchestrix_settings.CATCH_UP_INTERVAL)
    if seconds <= 0:
        raise ValueError(f"the catch-up interval must be positive, got {seconds}")
    return {
        CATCH_UP_ENTRY: {
            "task": "orchestrix.catch_up_projections",
            "schedule": seconds,
            "options": {"expires": seconds},
        }
    }


def saga_beat_schedule(interval: float | None = None) -> dict[str, dict[str, Any]]:
    """The schedule entry of ``orchestrix.sweep_sagas`` (see :mod:`orchestrix_django.tasks`).

    Merge it too when the project runs sagas or process managers
    (``sender.conf.beat_schedule.update(saga_beat_schedule())``): every
    ``interval`` seconds (``ORCHESTRIX["SAGA_SWEEP_INTERVAL"]`` by default) it
    times out overdue sagas, fires process managers' deadlines and resumes
    sagas whose task was lost. A run that could not start within one
    interval expires.
    """
    seconds = float(interval if interval is not None else orchestrix_settings.SAGA_SWEEP_INTERVAL)
    if seconds <= 0:
        raise ValueError(f"the saga sweep interval must be positive, got {seconds}")
    return {
        SWEEP_ENTRY: {
            "task": "orchestrix.sweep_sagas",
            "schedule": seconds,
            "options": {"expires": seconds},
        }
    }
