"""Run one stored saga to its end, in this thread, riding out database faults."""

from __future__ import annotations

import logging
from collections.abc import Callable

from orchestrix.core.execution.saga import SagaState
from orchestrix_django.sagas.errors import SagaBusyError
from orchestrix_django.sagas.registry import get_saga
from orchestrix_django.storage.configured import configured_observability
from orchestrix_django.storage.faults import FaultComponent, FaultRetry
from orchestrix_django.storage.saga_state import DjangoSagaStateStore

__all__ = ["run_saga", "run_saga_logged"]

logger = logging.getLogger("orchestrix.sagas")


def run_saga(
    saga_id: str, *, using: str | None = None, should_stop: Callable[[], bool] | None = None
) -> SagaState | None:
    """Execute (or resume) the stored saga ``saga_id`` in this thread, to its end.

    Returns its state, or None when it does not exist, is of a type not
    configured here, or another runner is executing it (all logged). For sync
    code, not from a running event loop. ``should_stop`` is asked between
    steps. A database fault is ridden out: the saga resumes from its stored
    state once the database answers; when ``should_stop()`` says so meanwhile,
    the fault is raised and the saga left resumable.
    """
    store = DjangoSagaStateStore(using)
    faults = FaultRetry(
        FaultComponent.SAGA,
        "unknown",
        detail=saga_id,
        using=store.using,
        observability=configured_observability(),
        should_stop=should_stop,
    )
    while True:
        try:
            return _run_once(saga_id, store, faults, should_stop)
        except Exception as error:
            if faults.absorb(error) and not (should_stop is not None and should_stop()):
                continue  # resume from the stored state
            raise


def _run_once(
    saga_id: str,
    store: DjangoSagaStateStore,
    faults: FaultRetry,
    should_stop: Callable[[], bool] | None,
) -> SagaState | None:
    """One try of :func:`run_saga`: load, execute under the run lock; faults propagate."""
    stored = store.load(saga_id)
    if stored is None:
        logger.warning("cannot run saga %s: no such saga", saga_id)
        return None
    try:
        definition = get_saga(stored.saga_type)
    except KeyError as error:
        logger.warning("cannot run saga %s: %s", saga_id, error.args[0])
        return None
    faults.name, faults.observability = definition.saga_type, definition.observability
    if stored.is_finished:
        return stored
    try:
        final = definition.fresh(saga_id, should_stop=should_stop).run()
    except SagaBusyError:
        logger.info("saga %s is being executed by another runner: left to it", saga_id)
        return None
    logger.info(
        "saga %s %s: %s%s",
        final.saga_type,
        saga_id,
        final.status.value,
        f" ({final.error})" if final.error else "",
    )
    return final


def run_saga_logged(
    saga_id: str, using: str, should_stop: Callable[[], bool] | None = None
) -> None:
    """:func:`run_saga` for loops over many sagas: one that raises does not stop the others."""
    try:
        run_saga(saga_id, using=using, should_stop=should_stop)
    except Exception:
        logger.exception("running saga %s failed; it is tried again later", saga_id)
