"""Hand a stored saga to a runner: the ``orchestrix.run_saga`` task, after the commit."""

from __future__ import annotations

import logging

from django.db import transaction

from orchestrix.core.execution.saga import SagaState
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.saga_state import DjangoSagaStateStore
from orchestrix_django.wakeup import (
    SAGA_ID_HEADER,
    TaskName,
    celery_wake_up,
    log_ids,
    send_task,
)

__all__ = ["dispatch_saga", "enqueue_saga", "saga_headers"]

logger = logging.getLogger("orchestrix.tasks")


def saga_headers(state: SagaState) -> dict[str, str]:
    """The Celery message headers of a saga's task: its id, correlation, causation and trace ids."""
    headers = {SAGA_ID_HEADER: state.saga_id}
    for header, value in (
        ("orchestrix_correlation_id", state.correlation_id),
        ("orchestrix_causation_id", state.causation_id),
        ("orchestrix_trace_id", state.trace_id),
    ):
        if value:
            headers[header] = value
    return headers


def enqueue_saga(saga_id: str, *, using: str | None = None) -> bool:
    """Send ``orchestrix.run_saga(saga_id)`` with the saga's ids in its headers.

    Returns whether it was sent. Never raises for an unreachable broker: it
    logs a warning, and the periodic sweep resumes the saga later.
    """
    headers: dict[str, str] = {SAGA_ID_HEADER: saga_id}
    try:
        state = DjangoSagaStateStore(using).load(saga_id)
        if state is not None:
            headers = saga_headers(state)
        send_task(TaskName.RUN_SAGA, [saga_id], headers)
    except Exception as error:
        logger.warning(
            "could not send saga %s to the workers (%s: %s); the periodic sweep will resume it",
            saga_id,
            type(error).__name__,
            error,
            extra=log_ids(headers),
        )
        return False
    return True


def dispatch_saga(saga_id: str, *, using: str | None = None) -> None:
    """Have a runner execute ``saga_id``, once the surrounding transaction commits.

    With ``ORCHESTRIX["WAKE_UP"] == "celery"`` it sends ``orchestrix.run_saga``;
    otherwise ``orchestrix_run`` finds the saga by polling.
    """
    if not celery_wake_up():
        return
    alias = using or str(orchestrix_settings.DATABASE)
    transaction.on_commit(lambda: enqueue_saga(saga_id, using=alias), using=alias)
