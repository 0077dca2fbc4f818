"""Celery tasks that keep projections up to date. Thin: they pass ids only.

* ``orchestrix.advance_projection(projection_id)``: the wake-up sent after a
  commit (:mod:`orchestrix_django.wakeup`). It clears the projection's
  pending-wake-up marker first, so that events committed while it runs send
  a new wake-up, then runs :func:`orchestrix_django.projections.runner.catch_up`.
  ``acks_late`` with ``reject_on_worker_lost``: a worker that dies mid-batch
  leaves the message to be delivered again, and the batch it was applying
  rolled back with its transaction, so every event is applied exactly once.
* ``orchestrix.catch_up_projections(inline=False)``: the periodic safety net
  (:func:`orchestrix_django.celery.beat_schedule`) for wake-ups lost to a
  broker outage or a dead worker. It wakes every configured projection that
  lags behind the head of the log or never ran (paused ones excepted)
  through the same at-most-one-pending marker, rather than catching up
  inline: the work spreads over all workers, one projection's long replay
  never delays the others, and ticks that pile up while workers are down
  add no duplicate tasks. ``inline=True`` catches up in the task itself
  (one worker, one projection after the other), for set-ups without a
  separate queue for the wake-ups.

The saga tasks, ``orchestrix.run_saga`` and ``orchestrix.sweep_sagas``, are
defined in :mod:`orchestrix_django.saga_tasks` and registered with these.

Both tasks use the JSON serializer and store no result. The logic lives in
:mod:`orchestrix_django.projections.runner`; a failing catch-up is logged by
Celery and retried by the next wake-up or periodic run.

**Database faults** (a lost connection, a restart, a deadlock: see
:mod:`orchestrix_django.storage.faults`) never fail a task. ``advance_projection``
and an inline periodic catch-up ride them out inside
:func:`~orchestrix_django.projections.runner.catch_up`: the batch rolls back, the
task reconnects after a capped backoff (at most 5 s) and goes on, holding
its worker until the database is back; its message stays unacknowledged
(``acks_late``), so a worker stopped meanwhile loses nothing. The periodic
task's own query notes a fault (warning, ``orchestrix.faults``) and leaves
the work to the next tick.

The correlation, causation and trace ids of the event whose commit sent a
wake-up travel in its message headers; the task logs them (``extra``
fields ``correlation_id``, ``causation_id``, ``trace_id``, ``event_id`` and
the text of its messages), and :class:`MessageIdsFilter` adds them to every
record logged while the task runs, projection handlers' included::

    LOGGING = {
        "filters": {"orchestrix_ids": {"()": "orchestrix_django.tasks.MessageIdsFilter"}},
        "handlers": {"console": {"class": "logging.StreamHandler",
                                 "filters": ["orchestrix_ids"]}},
        ...
    }
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from celery import shared_task

from orchestrix_django.projections.registry import get_projection
from orchestrix_django.projections.runner import catch_up
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.configured import configured_observability
from orchestrix_django.storage.faults import FaultComponent, note_fault
from orchestrix_django.wakeup import (
    HEADER_NAMES,
    clear_wake_up,
    lagging_projections,
    request_wake_up,
)

__all__ = ["MessageIdsFilter", "advance_projection", "catch_up_projections", "current_ids"]

logger = logging.getLogger("orchestrix.tasks")

#: The log record attributes the ids are exposed as.
ID_FIELDS = ("correlation_id", "causation_id", "trace_id", "event_id")

_current_ids: contextvars.ContextVar[dict[str, str | None] | None] = contextvars.ContextVar(
    "orchestrix_task_ids", default=None
)


def current_ids() -> dict[str, str | None]:
    """The ids of the message the running task was woken by (all None outside a task)."""
    return dict(_current_ids.get() or dict.fromkeys(ID_FIELDS))


class MessageIdsFilter(logging.Filter):
    """Adds ``correlation_id``, ``causation_id``, ``trace_id`` and ``event_id`` to records.

    The values are those of the task running in this context (None outside
    one); a record that already carries a value keeps it. Attach it to a
    handler, so that records of every logger get the fields.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields; never drops a record."""
        for name, value in current_ids().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def _ids_from_request(request: Any) -> dict[str, str | None]:
    """The ids in the task's message headers (a worker) or ``headers=`` (``apply``)."""
    custom = getattr(request, "headers", None) or {}
    ids: dict[str, str | None] = {}
    for header, attribute in HEADER_NAMES.items():
        value = custom.get(header) if isinstance(custom, dict) else None
        if value is None:
            value = getattr(request, header, None)
        ids["event_id" if attribute == "id" else attribute] = value
    return ids


def _describe(ids: dict[str, str | None]) -> str:
    return " ".join(f"{name}={ids.get(name) or '-'}" for name in ID_FIELDS)


@shared_task(  # type: ignore[untyped-decorator]
    bind=True,
    name="orchestrix.advance_projection",
    acks_late=True,
    reject_on_worker_lost=True,
    serializer="json",
    ignore_result=True,
)
def advance_projection(self: Any, projection_id: str) -> dict[str, Any] | None:
    """Catch ``projection_id`` up with the log (the wake-up sent after a commit)."""
    ids = _ids_from_request(self.request)
    token = _current_ids.set(ids)
    try:
        # First: a commit from now on sends a new wake-up, and this run
        # reads the log after this point, so no commit falls in between.
        clear_wake_up(projection_id)
        try:
            projection = get_projection(projection_id)
        except KeyError as error:
            # The settings changed between the commit and this task.
            logger.warning("cannot advance: %s", error.args[0], extra=ids)
            return None
        logger.info("advancing projection %s (%s)", projection_id, _describe(ids), extra=ids)
        result = catch_up(projection)
        logger.info(
            "projection %s advanced: %d events applied in %d batches, at position %d of %d%s (%s)",
            projection_id,
            result.applied,
            result.batches,
            result.position,
            result.head,
            f", stopped: {result.stopped}" if result.stopped else "",
            _describe(ids),
            extra=ids,
        )
        return {
            "projection_id": projection_id,
            "applied": result.applied,
            "position": result.position,
            "stopped": result.stopped,
        }
    finally:
        _current_ids.reset(token)


@shared_task(  # type: ignore[untyped-decorator]
    name="orchestrix.catch_up_projections",
    serializer="json",
    ignore_result=True,
)
def catch_up_projections(inline: bool = False) -> list[str]:
    """Wake (or, with ``inline``, catch up) every lagging or never-run projection.

    Returns the ids of the projections it acted on. One projection that
    fails to catch up inline does not keep the others from it.
    """
    try:
        lagging = lagging_projections()
    except Exception as error:
        if note_fault(
            error,
            FaultComponent.PERIODIC_CATCH_UP,
            "projections",
            using=str(orchestrix_settings.DATABASE),
            observability=configured_observability(),
            retry="at the next tick",
        ):
            return []
        raise
    for projection_id in lagging:
        if not inline:
            # A wake-up pending for a whole interval was lost: replace it.
            request_wake_up(projection_id, stale_after=float(orchestrix_settings.CATCH_UP_INTERVAL))
            continue
        try:
            result = catch_up(get_projection(projection_id))
        except Exception:
            logger.exception("periodic catch-up of projection %s failed", projection_id)
            continue
        logger.info(
            "periodic catch-up of projection %s: %d events applied, at position %d of %d",
            projection_id,
            result.applied,
            result.position,
            result.head,
        )
    if lagging:
        logger.info(
            "periodic catch-up %s %s",
            "advanced" if inline else "woke",
            ", ".join(lagging),
        )
    return lagging


# The saga tasks (orchestrix.run_saga, orchestrix.sweep_sagas) live in their own
# module; importing it here registers them wherever Celery finds this one
# (``app.autodiscover_tasks()``, ``include=["orchestrix_django.tasks"]``).
from orchestrix_django import saga_tasks  # noqa: E402, F401
