"""Celery tasks that run sagas. Thin: they pass ids only.

* ``orchestrix.run_saga(saga_id)``: executes (or resumes) one saga to its
  end (:func:`orchestrix_django.sagas.runner.run_saga`), sent by
  :meth:`~orchestrix_django.sagas.runner.DjangoSaga.start` after the commit that
  stored the saga. ``acks_late`` with ``reject_on_worker_lost``: a worker
  that dies mid-saga leaves the message to be delivered again, and the next
  worker resumes from the persisted state (see :mod:`orchestrix_django.sagas.runner`
  for why one task per saga, and not per step). A duplicate message finds the
  saga's run lock taken, or the saga finished, and does nothing.
* ``orchestrix.sweep_sagas()``: the periodic safety net
  (:func:`orchestrix_django.celery.saga_beat_schedule`): times out overdue sagas
  (:func:`~orchestrix_django.sagas.runner.expire_overdue_sagas`), fires the due
  deadlines of process managers
  (:func:`~orchestrix_django.sagas.process_managers.fire_due_timeouts`), and resumes
  unfinished sagas that nobody runs and that have been idle for
  ``ORCHESTRIX["SAGA_RESUME_AFTER"]`` seconds (their message was lost).

The saga's correlation, causation and trace ids, and its id, travel in the
task's message headers (``orchestrix_correlation_id``,
``orchestrix_causation_id``, ``orchestrix_trace_id``, ``orchestrix_saga_id``).
While the task runs, :func:`orchestrix_django.tasks.current_ids` returns the
saga's ids, so :class:`~orchestrix_django.tasks.MessageIdsFilter` adds them to
every record logged by its steps.

Add the sweep to Celery beat next to the projections' catch-up
(:mod:`orchestrix_django.celery`)::

    from orchestrix_django.celery import beat_schedule, saga_beat_schedule

    @app.on_after_finalize.connect
    def add_orchestrix_schedule(sender, **kwargs):
        sender.conf.beat_schedule.update(beat_schedule())
        sender.conf.beat_schedule.update(saga_beat_schedule())

A deadline is noticed within ``ORCHESTRIX["SAGA_SWEEP_INTERVAL"]`` seconds
once nobody runs its saga.

**Database faults** (see :mod:`orchestrix_django.storage.faults`) never fail a saga
nor a task: ``run_saga`` rides them out in the task (reconnecting after a
capped backoff, then resuming the saga from its stored state, the interrupted
step run again), holding its worker until the database is back; the sweep
notes a fault (warning, ``orchestrix.faults``) and leaves its work to the
next tick.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.configured import configured_observability
from orchestrix_django.storage.faults import FaultComponent, note_fault
from orchestrix_django.storage.saga_state import DjangoSagaStateStore
from orchestrix_django.tasks import ID_FIELDS, _current_ids
from orchestrix_django.wakeup import PUBLISH_RETRY_POLICY

__all__ = ["enqueue_saga", "run_saga_task", "sweep_sagas"]

logger = logging.getLogger("orchestrix.tasks")


def enqueue_saga(saga_id: str, *, using: str | None = None) -> bool:
    """Send ``orchestrix.run_saga(saga_id)`` with the saga's ids in its headers.

    Returns whether it was sent. Never raises for an unreachable broker: it
    logs a warning, and the periodic sweep resumes the saga later.
    """
    from orchestrix_django.sagas.runner import saga_headers

    headers: dict[str, str] = {"orchestrix_saga_id": saga_id}
    try:
        state = DjangoSagaStateStore(using).load(saga_id)
        if state is not None:
            headers = saga_headers(state)
        run_saga_task.apply_async(
            args=[saga_id], headers=headers, retry=True, retry_policy=PUBLISH_RETRY_POLICY
        )
    except Exception as error:
        logger.warning(
            "could not send saga %s to the workers (%s: %s); the periodic sweep will resume it",
            saga_id,
            type(error).__name__,
            error,
            extra=_log_ids(headers),
        )
        return False
    return True


def _log_ids(headers: dict[str, Any]) -> dict[str, str | None]:
    return {
        "correlation_id": headers.get("orchestrix_correlation_id"),
        "causation_id": headers.get("orchestrix_causation_id"),
        "trace_id": headers.get("orchestrix_trace_id"),
        "event_id": None,
        "saga_id": headers.get("orchestrix_saga_id"),
    }


def _headers(request: Any) -> dict[str, Any]:
    custom = getattr(request, "headers", None) or {}
    found = dict(custom) if isinstance(custom, dict) else {}
    for name in (
        "orchestrix_correlation_id",
        "orchestrix_causation_id",
        "orchestrix_trace_id",
        "orchestrix_saga_id",
    ):
        if found.get(name) is None and getattr(request, name, None) is not None:
            found[name] = getattr(request, name)
    return found


@shared_task(  # type: ignore[untyped-decorator]
    bind=True,
    name="orchestrix.run_saga",
    acks_late=True,
    reject_on_worker_lost=True,
    serializer="json",
    ignore_result=True,
)
def run_saga_task(self: Any, saga_id: str) -> dict[str, Any] | None:
    """Execute (or resume) saga ``saga_id`` to its end."""
    from orchestrix_django.sagas.runner import run_saga

    ids = _log_ids(_headers(self.request))
    ids["saga_id"] = saga_id
    token = _current_ids.set({name: ids.get(name) for name in ID_FIELDS})
    try:
        described = " ".join(f"{name}={ids.get(name) or '-'}" for name in ID_FIELDS[:3])
        logger.info("running saga %s (%s)", saga_id, described, extra=ids)
        state = run_saga(saga_id)
        if state is None:
            return None
        status = state.status.value
        logger.info("saga %s %s: %s (%s)", state.saga_type, saga_id, status, described, extra=ids)
        return {"saga_id": saga_id, "status": state.status.value, "error": state.error}
    finally:
        _current_ids.reset(token)


@shared_task(  # type: ignore[untyped-decorator]
    name="orchestrix.sweep_sagas",
    serializer="json",
    ignore_result=True,
)
def sweep_sagas() -> dict[str, list[str]]:
    """Time out overdue sagas, fire due process deadlines, resume lost sagas (see the module)."""
    from orchestrix_django.sagas.sweep import sweep

    try:
        outcome = sweep(inline=False, resume_after=float(orchestrix_settings.SAGA_RESUME_AFTER))
    except Exception as error:
        if note_fault(
            error,
            FaultComponent.SAGA_SWEEP,
            "sweep",
            using=str(orchestrix_settings.DATABASE),
            observability=configured_observability(),
            retry="at the next tick",
        ):
            return {"timed_out": [], "deadlines": [], "resumed": []}
        raise
    if any(outcome.values()):
        logger.info(
            "saga sweep: %s",
            ", ".join(f"{name} {', '.join(ids)}" for name, ids in outcome.items() if ids),
        )
    return outcome
