"""The saga sweep (work no message asks for) and the in-process saga runner of ``orchestrix_run``.

:func:`sweep` times out overdue sagas, fires the due deadlines of process
managers and resumes unfinished sagas nobody runs. The Celery task
``orchestrix.sweep_sagas`` runs it with ``inline=False`` (the sagas go to
``orchestrix.run_saga`` tasks); :class:`EmbeddedSagaRunner`, the thread
``orchestrix_run`` starts, with ``inline=True``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from enum import StrEnum

from django.db import connections

from orchestrix.core.execution.saga import SagaStatus
from orchestrix_django.models import SagaStateRecord
from orchestrix_django.sagas.deadlines import now as current_time
from orchestrix_django.sagas.dispatch import dispatch_saga, enqueue_saga
from orchestrix_django.sagas.locks import SagaRunLock, saga_is_running
from orchestrix_django.sagas.process_managers import fire_due_timeouts, process_managers
from orchestrix_django.sagas.registry import get_saga, sagas
from orchestrix_django.sagas.runner import run_saga_logged
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.configured import configured_observability
from orchestrix_django.storage.faults import FaultComponent, FaultRetry, drop_broken_connections
from orchestrix_django.wakeup import celery_wake_up

__all__ = [
    "UNFINISHED",
    "EmbeddedSagaRunner",
    "SweepAction",
    "expire_overdue_sagas",
    "has_saga_work",
    "no_outcome",
    "resume_sagas",
    "sweep",
]

logger = logging.getLogger("orchestrix.runner")


class SweepAction(StrEnum):
    """What a sweep did to a saga: the keys of its outcome."""

    TIMED_OUT = "timed_out"
    DEADLINES = "deadlines"
    RESUMED = "resumed"


def no_outcome() -> dict[str, list[str]]:
    """The outcome of a sweep that did nothing."""
    return {action.value: [] for action in SweepAction}


#: Saga statuses a runner still has work for.
UNFINISHED = (SagaStatus.PENDING, SagaStatus.IN_PROGRESS, SagaStatus.COMPENSATING)


def _overdue(now: datetime, using: str, limit: int) -> list[tuple[str, str]]:
    types = list(sagas())
    if not types:
        return []
    rows = (
        SagaStateRecord.objects.using(using)
        .filter(
            deadline__lte=now,
            saga_type__in=types,
            status__in=[SagaStatus.PENDING.value, SagaStatus.IN_PROGRESS.value],
        )
        .order_by("deadline")
        .values_list("saga_id", "saga_type")[:limit]
    )
    return list(rows)


def expire_overdue_sagas(
    *,
    now: datetime | None = None,
    using: str | None = None,
    inline: bool | None = None,
    limit: int = 100,
) -> list[str]:
    """Time out the configured sagas whose deadline has passed and that nobody runs.

    Each is timed out under its run lock (``on_timeout``, the late step
    failed, COMPENSATING; a PENDING one ends FAILED), then compensated:
    in this thread when ``inline`` (default: unless ``WAKE_UP`` is
    ``"celery"``), else by a ``orchestrix.run_saga`` task. Sagas a runner holds
    are left to it (it notices the deadline itself). Returns the ids timed out.
    """
    alias = using or str(orchestrix_settings.DATABASE)
    now = now or current_time()
    if inline is None:
        inline = not celery_wake_up()
    expired: list[str] = []
    for saga_id, saga_type in _overdue(now, alias, limit):
        definition = get_saga(saga_type)
        lock = SagaRunLock(saga_id, alias)
        if not lock.acquire():
            continue
        try:
            run = definition.fresh(saga_id)
            stored = run.run_store.load(saga_id)
            reason = run.deadline_rules.missed(stored, now) if stored is not None else None
            if reason is None:
                continue  # it moved on since the query
            timed_out = run.time_out(saga_id, reason)
        finally:
            lock.release()
        expired.append(saga_id)
        if timed_out is not None and not timed_out.is_finished:
            if inline:
                run_saga_logged(saga_id, alias, None)
            else:
                dispatch_saga(saga_id, using=alias)
    return expired


def resume_sagas(
    *,
    older_than: float = 0.0,
    using: str | None = None,
    inline: bool | None = None,
    limit: int = 100,
    should_stop: Callable[[], bool] | None = None,
    exclude: Collection[str] = (),
) -> list[str]:
    """Resume the configured sagas that are unfinished, not running, and idle for ``older_than`` s.

    PENDING sagas never picked up, and IN_PROGRESS or COMPENSATING ones whose
    runner died, oldest first, except the ids in ``exclude``. ``inline``
    (default: unless ``WAKE_UP`` is ``"celery"``): run them here, one after
    the other, until ``should_stop()``; else send one ``orchestrix.run_saga``
    task each. Returns the ids resumed.
    """
    alias = using or str(orchestrix_settings.DATABASE)
    if inline is None:
        inline = not celery_wake_up()
    types = list(sagas())
    if not types:
        return []
    idle_since = current_time() - timedelta(seconds=older_than)
    candidates = (
        SagaStateRecord.objects.using(alias)
        .filter(
            saga_type__in=types,
            status__in=[status.value for status in UNFINISHED],
            updated_at__lte=idle_since,
        )
        .order_by("updated_at")
        .values_list("saga_id", flat=True)[:limit]
    )
    resumed: list[str] = []
    for saga_id in list(candidates):
        if should_stop is not None and should_stop():
            break
        if saga_id in exclude or saga_is_running(saga_id, alias):
            continue
        resumed.append(saga_id)
        if inline:
            run_saga_logged(saga_id, alias, should_stop)
        else:
            enqueue_saga(saga_id, using=alias)
    return resumed


def has_saga_work() -> bool:
    """Whether sagas or process managers are configured (something for :func:`sweep` to do)."""
    return bool(sagas()) or bool(process_managers())


def sweep(
    *,
    inline: bool,
    resume_after: float = 0.0,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, list[str]]:
    """One pass: time out, fire deadlines, resume. Returns the saga ids acted on, by action.

    ``resume_after``: only sagas idle for that many seconds are resumed
    (with Celery, a fresh saga's message is usually on its way). A saga
    timed out in this pass is not resumed in it too: it was run or sent already.
    """
    outcome = no_outcome()
    timed_out = outcome[SweepAction.TIMED_OUT] = expire_overdue_sagas(inline=inline)
    outcome[SweepAction.DEADLINES] = fire_due_timeouts()
    if should_stop is None or not should_stop():
        outcome[SweepAction.RESUMED] = resume_sagas(
            older_than=resume_after,
            inline=inline,
            should_stop=should_stop,
            exclude=frozenset(timed_out),
        )
    return outcome


class EmbeddedSagaRunner:
    """Runs :func:`sweep` (inline) every ``poll_interval`` seconds in a thread, until :meth:`stop`.

    ``on_pass`` is called with each pass's outcome (the command prints from it).
    A pass that raises is logged and retried at the next interval; a pass
    that meets a database fault is logged as such and counted
    (``orchestrix.faults``), and the next one waits a capped backoff more.
    """

    def __init__(
        self,
        *,
        poll_interval: float,
        on_pass: Callable[[dict[str, list[str]]], None] | None = None,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        self.poll_interval = poll_interval
        self.on_pass = on_pass
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Sagas run (resumed or timed out) and process deadlines fired since the start.
        self.ran = 0
        self.fired = 0
        self.errors = 0
        self._faults = FaultRetry(
            FaultComponent.SAGA_SWEEP,
            "sweep",
            using=str(orchestrix_settings.DATABASE),
            observability=configured_observability(),
            should_stop=self.should_stop,
        )

    def should_stop(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def run_pass(self) -> dict[str, list[str]]:
        """One sweep, in this thread; errors are logged and counted, not raised."""
        try:
            outcome = sweep(inline=True, should_stop=self.should_stop)
        except Exception as error:
            if not self._faults.absorb(error):
                self.errors += 1
                logger.exception("the saga sweep failed; tried again in %s s", self.poll_interval)
                drop_broken_connections()
            return no_outcome()
        self._faults.succeeded()
        self.ran += len(set(outcome[SweepAction.TIMED_OUT]) | set(outcome[SweepAction.RESUMED]))
        self.fired += len(outcome[SweepAction.DEADLINES])
        if self.on_pass is not None:
            self.on_pass(outcome)
        return outcome

    def run(self) -> None:
        """Sweep until :meth:`stop`, in this thread."""
        try:
            while not self.should_stop():
                self.run_pass()
                self._stop.wait(self.poll_interval)
        finally:
            connections.close_all()

    def start(self) -> EmbeddedSagaRunner:
        """Run :meth:`run` in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="orchestrix-sagas", daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: float | None = None) -> None:
        """Stop after the step in hand (thread- and signal-safe); wait up to ``wait`` seconds."""
        self._stop.set()
        if wait is not None and self._thread is not None:
            self._thread.join(wait)
