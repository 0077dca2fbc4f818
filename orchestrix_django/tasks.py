"""Every Orchestrix Celery task (Celery's autodiscovery finds them here). Thin: they pass ids only.

``orchestrix.advance_projection`` and ``orchestrix.catch_up_projections`` keep
projections up to date; ``orchestrix.run_saga`` and ``orchestrix.sweep_sagas``
run sagas. While a task runs, :func:`current_ids` returns the ids of its
message and :class:`MessageIdsFilter` adds them to log records. Database faults
never fail a task. See docs/celery.md, "How it works".
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from celery import shared_task

from orchestrix_django.projections.registry import get_projection
from orchestrix_django.projections.runner import catch_up
from orchestrix_django.sagas.runner import run_saga
from orchestrix_django.sagas.sweep import no_outcome, sweep
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.configured import configured_observability
from orchestrix_django.storage.faults import FaultComponent, note_fault
from orchestrix_django.wakeup import (
    HEADER_NAMES,
    ID_FIELDS,
    SAGA_ID_HEADER,
    TaskName,
    clear_wake_up,
    lagging_projections,
    log_ids,
    request_wake_up,
)

__all__ = [
    "MessageIdsFilter",
    "advance_projection",
    "catch_up_projections",
    "current_ids",
    "run_saga_task",
    "sweep_sagas",
]

logger = logging.getLogger("orchestrix.tasks")

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


def _message_headers(request: Any) -> dict[str, Any]:
    """The Orchestrix headers of the task's message (a worker) or of ``headers=`` (``apply``)."""
    custom = getattr(request, "headers", None) or {}
    found: dict[str, Any] = {}
    for header in (*HEADER_NAMES, SAGA_ID_HEADER):
        value = custom.get(header) if isinstance(custom, dict) else None
        if value is None:
            value = getattr(request, header, None)
        if value is not None:
            found[header] = value
    return found


def _describe(ids: dict[str, str | None], fields: tuple[str, ...] = ID_FIELDS) -> str:
    return " ".join(f"{name}={ids.get(name) or '-'}" for name in fields)


@shared_task(
    bind=True,
    name=TaskName.ADVANCE_PROJECTION.value,
    acks_late=True,
    reject_on_worker_lost=True,
    serializer="json",
    ignore_result=True,
)
def advance_projection(self: Any, projection_id: str) -> dict[str, Any] | None:
    """Catch ``projection_id`` up with the log (the wake-up sent after a commit)."""
    ids = {name: log_ids(_message_headers(self.request))[name] for name in ID_FIELDS}
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


@shared_task(
    name=TaskName.CATCH_UP_PROJECTIONS.value,
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


@shared_task(
    bind=True,
    name=TaskName.RUN_SAGA.value,
    acks_late=True,
    reject_on_worker_lost=True,
    serializer="json",
    ignore_result=True,
)
def run_saga_task(self: Any, saga_id: str) -> dict[str, Any] | None:
    """Execute (or resume) saga ``saga_id`` to its end."""
    headers = _message_headers(self.request)
    ids = log_ids(headers)
    ids["event_id"] = None
    ids["saga_id"] = saga_id
    token = _current_ids.set({name: ids[name] for name in ID_FIELDS})
    try:
        described = _describe(ids, ID_FIELDS[:3])
        logger.info("running saga %s (%s)", saga_id, described, extra=ids)
        state = run_saga(saga_id)
        if state is None:
            return None
        status = state.status.value
        logger.info("saga %s %s: %s (%s)", state.saga_type, saga_id, status, described, extra=ids)
        return {"saga_id": saga_id, "status": status, "error": state.error}
    finally:
        _current_ids.reset(token)


@shared_task(
    name=TaskName.SWEEP_SAGAS.value,
    serializer="json",
    ignore_result=True,
)
def sweep_sagas() -> dict[str, list[str]]:
    """Time out overdue sagas, fire due process deadlines, resume lost sagas."""
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
            return no_outcome()
        raise
    if any(outcome.values()):
        logger.info(
            "saga sweep: %s",
            ", ".join(f"{name} {', '.join(ids)}" for name, ids in outcome.items() if ids),
        )
    return outcome
