"""Celery wiring for Orchestrix: the periodic catch-up's beat schedule.

With ``ORCHESTRIX["WAKE_UP"] = "celery"``, each commit wakes the
projections it concerns (:mod:`orchestrix_django.wakeup`). A wake-up can be
lost (the broker was down, a worker died before acknowledging it, the broker
dropped its queue), so Celery beat also runs ``orchestrix.catch_up_projections``
every ``ORCHESTRIX["CATCH_UP_INTERVAL"]`` seconds: a lost wake-up then only
delays the projection, it never loses an event.

In the project's Celery module (the usual ``proj/celery.py``)::

    from celery import Celery
    from orchestrix_django.celery import beat_schedule

    app = Celery("proj")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.autodiscover_tasks()  # finds orchestrix_django.tasks

    @app.on_after_finalize.connect
    def add_orchestrix_schedule(sender, **kwargs):
        sender.conf.beat_schedule.update(beat_schedule())

(or ``app.conf.beat_schedule.update(beat_schedule())`` right after
``config_from_object``, once Django settings can be read), and start a beat
next to the workers: ``celery -A proj beat`` (or ``celery -A proj worker -B``
for one machine). As for any Django project, ``proj/__init__.py`` imports
the Celery app so that the web processes send the wake-ups to it.

Recommended Celery settings: ``task_acks_late = True`` (the tasks set it
anyway), ``worker_prefetch_multiplier = 1``, JSON only (``accept_content =
["json"]``), and, with Redis as the broker, a ``visibility_timeout`` in
``broker_transport_options`` as short as your longest catch-up allows, since
it is how long the message of a worker killed mid-task waits before another
worker gets it. ``worker_cancel_long_running_tasks_on_connection_loss = True``
(Celery 6's default) is safe: a cancelled catch-up rolls its batch back and
its message is delivered again.
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
