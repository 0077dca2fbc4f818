"""Sagas run by Django: kept in the saga table, executed by Celery workers or ``orchestrix_run``.

Declare a saga once, at module level, exactly as the core's ``Saga`` (the
state store is optional: the saga table of ``ORCHESTRIX["DATABASE"]`` by
default), and list it in ``ORCHESTRIX["SAGAS"]``::

    order_fulfillment = DjangoSaga(
        saga_type="order-fulfillment",
        steps=[
            SagaStep(name="reserve_inventory", action=reserve_inventory,
                     compensation=release_inventory),
            SagaStep(name="charge_payment", action=charge_payment,
                     compensation=refund_payment, retry_policy=FixedDelay(3, 1.0)),
            SagaStep(name="ship_order", action=ship_order),
        ],
        deadlines={"charge_payment": timedelta(minutes=2)},
    )

    saga_id = order_fulfillment.start(order_id="ORD-001", amount=99.99, caused_by=command)
    # or: start_saga("order-fulfillment", order_id="ORD-001", amount=99.99)

:meth:`DjangoSaga.start` stores the saga, PENDING, with its keyword arguments
and correlation ids, and (after the surrounding transaction commits)
dispatches it: with ``ORCHESTRIX["WAKE_UP"] = "celery"`` it sends the task
``orchestrix.run_saga(saga_id)`` (:mod:`orchestrix_django.saga_tasks`); with
``"none"``, ``orchestrix_run`` finds it by polling. A ``DjangoSaga`` is also a
core ``Saga``: ``await saga.initialize()`` then ``await saga.execute(**kwargs)``
runs it in this process, as the core documents.

**How a saga runs: one task per saga, persisted after every step.** The task
(or the runner) executes the saga from its persisted state to its end: the
core saves the state before every step (RUNNING, with its attempt count) and
after it (COMPLETED, with its result), and the same for each compensation.
That is what makes every step a unit of recovery, without a message per step:

* a worker killed before, during or after a step leaves its message
  unacknowledged (``acks_late``, ``reject_on_worker_lost``); the broker hands
  it to another worker, which resumes from the stored state: completed steps
  are never run again, the interrupted step (its outcome unknown) runs again,
  and an interrupted compensation goes on with the steps not yet compensated;
* nothing can get lost *between* steps, because there is no hand-over: a
  chain of one task per step would lose the saga whenever the worker died
  between committing a step and publishing the next message;
* retries follow each step's ``RetryPolicy`` exactly (the core retries in
  the task), and a periodic sweep (``orchestrix.sweep_sagas``, or
  ``orchestrix_run``) resumes any unfinished saga nobody runs, should a
  message be lost after all (broker outage, purged queue).

The cost: a saga holds a worker for as long as it runs (its retry delays
included). Steps that wait for something external should not sleep in a
step: use a :class:`~orchestrix_django.sagas.process_managers.ProcessManager`,
which waits for events without holding anything.

**Steps must be idempotent.** A step whose worker died mid-call runs again.
Each step may declare ``idempotency_key`` (``"<saga id>:<step name>"``, the
same on every attempt, resume and compensation of that step) and should pass
it to the systems it calls, so that a repeated call has no second effect.

**One runner at a time.** A runner holds the saga's run lock
(:mod:`orchestrix_django.sagas.locks`) while it executes it; a duplicate
message (Redis redelivers a task that runs longer than its visibility
timeout) finds the lock taken and does nothing. The lock dies with its
runner's process, so a crashed worker never blocks its saga.

**Deadlines.** ``deadlines`` maps step names to the time the step may take
(from its first attempt, across retries and resumes) and ``timeout`` bounds
the whole saga (from :meth:`start`). The earliest pending deadline is kept in
the saga row (``SagaStateRecord.deadline``), so it survives any restart. A
saga that misses one is *timed out*: ``on_timeout`` (if given) is called,
the late step is marked failed, and the completed steps are compensated. It
is detected

* by the runner, when a step starts or completes after its deadline (a step
  that completed late is compensated too), or when an ``async`` step is
  still running at its deadline (it is cancelled);
* by the periodic sweep (:func:`expire_overdue_sagas`) for sagas nobody is
  running: their worker died, or was stopped, and the deadline passed.

A *sync* step that blocks in a live worker cannot be interrupted by Python:
give its I/O timeouts, or give the task a hard time limit (Celery's
``task_annotations = {"orchestrix.run_saga": {"time_limit": 600}}`` with the
prefork pool): the killed process releases the lock and the sweep then
compensates the saga.

**Context.** While a step runs, :func:`current_saga` returns a
:class:`SagaContext`: the saga's id, type, step, idempotency key and the
correlation, causation and trace ids of the message that started it.
``current_saga().caused(OrderShipped, order_id=...)`` creates an event (or
command) carrying those ids, so the events a saga causes join the
conversation of the command that started it, and their Celery wake-ups carry
the ids in their headers. The ``orchestrix.run_saga`` task carries them in
its headers too, and logs them.

**Database faults.** A lost connection, a deadlock or another database
fault (:mod:`orchestrix_django.storage.faults`) in a step, a compensation or a save
of the saga's state is not the step's failure: nothing is compensated and
the step's retry policy is not used up. :func:`run_saga` logs and counts the
fault, reconnects and, after a capped backoff, resumes the saga from its
stored state, until the database is back: the interrupted step (or
compensation) runs again, completed ones never do.

**Observability.** Sagas report to ``observability`` (default:
``ORCHESTRIX["OBSERVABILITY"]``, else the process-wide hooks): sagas started,
completed, compensated and failed, each step's latency, and
``orchestrix.sagas.timed_out``.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
import threading
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.core.signals import setting_changed
from django.db import transaction

from orchestrix.core.common.exceptions import ConcurrencyError, SagaError
from orchestrix.core.common.observability import (
    ObservabilityHooks,
    TracingProvider,
)
from orchestrix.core.execution.saga import Saga, SagaState, SagaStatus, SagaStep
from orchestrix.core.execution.saga_state import StepRecord, StepStatus
from orchestrix.core.execution.step_arguments import _CallPlan
from orchestrix.core.messaging.message import Message, causal_fields
from orchestrix_django.models import SagaStateRecord
from orchestrix_django.sagas.locks import SagaRunLock, saga_is_running
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.configured import configured_observability
from orchestrix_django.storage.faults import FaultComponent, FaultRetry, is_database_fault
from orchestrix_django.storage.saga_state import DjangoAsyncSagaStateStore, DjangoSagaStateStore

__all__ = [
    "DeadlinePassed",
    "DjangoSaga",
    "SagaBusyError",
    "SagaContext",
    "SagaInterrupted",
    "current_saga",
    "dispatch_saga",
    "expire_overdue_sagas",
    "get_saga",
    "resume_sagas",
    "run_saga",
    "saga_headers",
    "sagas",
    "start_saga",
]

logger = logging.getLogger("orchestrix.sagas")

_M = TypeVar("_M", bound=Message)

#: Saga statuses a runner still has work for.
UNFINISHED = (SagaStatus.PENDING, SagaStatus.IN_PROGRESS, SagaStatus.COMPENSATING)


def _now() -> datetime:
    return datetime.now(UTC)


class DeadlinePassed(SagaError):
    """A saga or one of its steps missed its deadline (the runner then times the saga out)."""


class SagaBusyError(SagaError):
    """Another runner holds the saga's run lock: it is being executed right now."""


class SagaInterrupted(SagaError):
    """The runner was asked to stop between two steps; the saga is left resumable."""


class _StepCancelled(BaseException):
    """An async step was cancelled at its deadline.

    A ``BaseException``, so that the core does not take it for the step's
    own failure: it leaves the state as it is (the step RUNNING) and the
    runner times the saga out, as for any missed deadline.
    """


# ---------------------------------------------------------------- context


@dataclass(frozen=True)
class SagaContext:
    """The saga a step is running for (see :func:`current_saga`)."""

    saga_id: str
    saga_type: str
    step: str | None
    correlation_id: str | None
    causation_id: str | None
    trace_id: str | None
    deadline: datetime | None = None

    @property
    def idempotency_key(self) -> str:
        """``"<saga id>:<step>"``: the key the core passes to a step as ``idempotency_key``."""
        return f"{self.saga_id}:{self.step}"

    def message_ids(self) -> dict[str, str | None]:
        """The correlation, causation and trace ids messages caused by this saga carry."""
        return {
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "trace_id": self.trace_id,
        }

    def caused(self, message_class: type[_M], /, **fields: Any) -> _M:
        """A ``message_class`` message (an event or a command) caused by this saga.

        It carries the saga's correlation, causation and trace ids (those of
        the message that started it); explicit keyword arguments win.
        """
        ids = {name: value for name, value in self.message_ids().items() if value is not None}
        return message_class(**{**ids, **fields})


class _RunContext:
    """What :func:`current_saga` reads: updated by the state store at every save.

    One object per running saga, shared by reference with the threads and
    tasks the steps run in (context variables are copied, this object is not).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._context: SagaContext | None = None

    def update(self, state: SagaState, deadline: datetime | None) -> None:
        with self._lock:
            self._context = SagaContext(
                saga_id=state.saga_id,
                saga_type=state.saga_type,
                step=state.current_step,
                correlation_id=state.correlation_id,
                causation_id=state.causation_id,
                trace_id=state.trace_id,
                deadline=deadline,
            )

    def get(self) -> SagaContext | None:
        with self._lock:
            return self._context


_current: contextvars.ContextVar[_RunContext | None] = contextvars.ContextVar(
    "orchestrix_saga", default=None
)


def current_saga() -> SagaContext:
    """The saga whose step (or compensation) is running; ``LookupError`` outside one."""
    holder = _current.get()
    context = holder.get() if holder is not None else None
    if context is None:
        raise LookupError("current_saga() is only available while a DjangoSaga step runs")
    return context


# ---------------------------------------------------------------- the store


class _SagaRunStore(DjangoSagaStateStore):
    """The store a :class:`DjangoSaga` runs on: the saga table, plus its deadlines.

    Each save also writes the saga's earliest pending deadline to the
    ``deadline`` column, in the same transaction. The owning saga checks its
    deadlines before and after each save, which is how a runner notices a
    step starting or completing too late (the core then stops, its state
    resumable, and the runner times the saga out).
    """

    def __init__(self, saga: DjangoSaga, using: str | None) -> None:
        super().__init__(using)
        self._saga = saga

    def save(self, state: SagaState) -> SagaState:
        """Save ``state`` and its deadline (see the class docs)."""
        self._saga._before_save(state)
        deadline = self._saga.deadline_of(state)
        with transaction.atomic(using=self.using):
            saved = super().save(state)
            self._records().filter(saga_id=state.saga_id, version=saved.version).update(
                deadline=deadline
            )
        self._saga._after_save(state, deadline)
        return saved


async def _in_django_thread(function: Callable[[], Any]) -> Any:
    """Run a sync step or store call where Django wants sync code run from async code."""
    return await sync_to_async(function, thread_sensitive=True)()


# ---------------------------------------------------------------- the saga


class DjangoSaga(Saga):
    """A core :class:`~orchestrix.core.execution.saga.Saga` kept in Django (see the module docs).

    The positional arguments are the core's. ``state_store`` is a
    :class:`~orchestrix_django.storage.saga_state.DjangoSagaStateStore` (or its async
    twin) whose database is used; by default ``ORCHESTRIX["DATABASE"]``.
    Keyword-only:

    * ``deadlines``: step name -> ``timedelta`` the step may take;
    * ``timeout``: a ``timedelta`` the whole saga may take, from its start;
    * ``on_timeout``: called (sync or async) when the saga times out, before
      compensation, with the arguments its signature declares among the saga
      keyword arguments, ``saga_id``, ``step`` (the late step, or None),
      ``idempotency_key``, ``results`` and ``reason``; at least once;
    * ``observability``: default ``ORCHESTRIX["OBSERVABILITY"]``, else the
      process-wide hooks;
    * ``saga_id``: the id :meth:`initialize` uses when called without one.

    Sync steps and store calls run through ``sync_to_async`` (in the
    thread of the caller of ``async_to_sync``, so in a worker they share its
    database connection); they may use the ORM.
    """

    def __init__(
        self,
        saga_type: str,
        steps: list[SagaStep],
        state_store: DjangoSagaStateStore | DjangoAsyncSagaStateStore | None = None,
        tracing: TracingProvider | None = None,
        *,
        deadlines: Mapping[str, timedelta] | None = None,
        timeout: timedelta | None = None,
        on_timeout: Callable[..., Any] | None = None,
        observability: ObservabilityHooks | None = None,
        saga_id: str | None = None,
    ) -> None:
        if isinstance(state_store, DjangoAsyncSagaStateStore):
            state_store = state_store.sync_store
        if state_store is not None and not isinstance(state_store, DjangoSagaStateStore):
            raise TypeError(
                f"saga {saga_type!r}: a DjangoSaga keeps its state in the saga table; "
                f"state_store must be a DjangoSagaStateStore, got {state_store!r}"
            )
        steps = list(steps)
        names = [step.name for step in steps if isinstance(step, SagaStep)]
        deadlines = dict(deadlines or {})
        unknown = sorted(set(deadlines) - set(names))
        if unknown:
            raise ValueError(f"saga {saga_type!r}: deadlines name unknown steps {unknown}")
        for name, limit in [*deadlines.items(), ("timeout", timeout)]:
            if limit is not None and (not isinstance(limit, timedelta) or limit <= timedelta(0)):
                raise ValueError(
                    f"saga {saga_type!r}: {name} must be a positive timedelta, got {limit!r}"
                )
        if on_timeout is not None and not callable(on_timeout):
            raise TypeError(f"saga {saga_type!r}: on_timeout must be callable, got {on_timeout!r}")
        self.deadlines: dict[str, timedelta] = deadlines
        self.timeout = timeout
        self.on_timeout = on_timeout
        self._original_steps = steps
        self._hooks = observability
        self._context = _RunContext()
        self._should_stop: Callable[[], bool] | None = None
        store = _SagaRunStore(self, state_store._using if state_store is not None else None)
        self._run_store = store
        super().__init__(
            saga_type,
            [self._bounded(step) for step in steps],
            store,
            tracing,
            saga_id=saga_id,
            run_sync=_in_django_thread,
        )
        self._timeout_plan = _CallPlan.of(on_timeout) if on_timeout is not None else None

    @classmethod
    def from_saga(cls, saga: Saga) -> DjangoSaga:
        """A ``DjangoSaga`` with the type, steps and tracing of a core ``Saga``.

        ``saga``'s state store must be a Django one (its database is kept).
        This is how a plain ``Saga(..., state_store=DjangoSagaStateStore())``
        listed in ``ORCHESTRIX["SAGAS"]`` is run.
        """
        if isinstance(saga, DjangoSaga):
            return saga
        store = saga.state_store
        if not isinstance(store, DjangoSagaStateStore | DjangoAsyncSagaStateStore):
            raise TypeError(
                f"saga {saga.saga_type!r} keeps its state in {store!r}: sagas run by workers "
                "need the saga table (state_store=DjangoSagaStateStore(), or use DjangoSaga)"
            )
        return cls(saga.saga_type, list(saga.steps), store, saga.tracing)

    def fresh(
        self, saga_id: str | None = None, *, should_stop: Callable[[], bool] | None = None
    ) -> DjangoSaga:
        """A new, uninitialized saga of this definition (for one run of ``saga_id``).

        ``should_stop`` is asked before each step starts; when it says so the
        run stops there, the saga left resumable (:class:`SagaInterrupted`).
        """
        run = type(self)(
            self.saga_type,
            list(self._original_steps),
            DjangoSagaStateStore(self._run_store._using),
            self.tracing,
            deadlines=self.deadlines,
            timeout=self.timeout,
            on_timeout=self.on_timeout,
            observability=self._hooks,
            saga_id=saga_id,
        )
        run._should_stop = should_stop
        return run

    @property
    def run_store(self) -> _SagaRunStore:
        """The saga table store this saga runs on (its ``state_store``)."""
        return self._run_store

    @property
    def using(self) -> str:
        """The database alias of the saga table this saga lives in."""
        return self._run_store.using

    @property
    def observability(self) -> ObservabilityHooks:
        """Where the saga reports (the constructor's, ``ORCHESTRIX["OBSERVABILITY"]``, global)."""
        return self._hooks if self._hooks is not None else configured_observability()

    def is_fault(self, error: BaseException) -> bool:
        """Database faults (see :mod:`orchestrix_django.storage.faults`) are not step failures."""
        return is_database_fault(error)

    # -- starting -------------------------------------------------------------

    def start(
        self,
        /,
        *,
        saga_id: str | None = None,
        caused_by: Message | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        trace_id: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Store a new saga (PENDING) with ``kwargs``, dispatch it, and return its id.

        The correlation ids are those of a message ``caused_by`` (the command
        that starts the saga: its correlation id, its id as causation, its
        trace id), overridden by the explicit ones; without either the saga
        starts a conversation of its own (its correlation id is its id).
        Dispatching waits for the surrounding transaction's commit (see the
        module docs). Starting an existing ``saga_id`` again with the same type
        and arguments returns it without starting anything (a retried request);
        with others, it is a :class:`SagaError`. ``kwargs`` must be values the
        Orchestrix codec stores (JSON types, ``Decimal``, ``datetime``, ``UUID``, …).
        """
        ids: dict[str, str | None] = dict(causal_fields(caused_by)) if caused_by else {}
        for name, value in (
            ("correlation_id", correlation_id),
            ("causation_id", causation_id),
            ("trace_id", trace_id),
        ):
            if value is not None:
                ids[name] = value
        chosen = saga_id or str(uuid.uuid4())
        state = SagaState(
            saga_id=chosen,
            saga_type=self.saga_type,
            steps=[StepRecord(name=step.name) for step in self.steps],
            kwargs=dict(kwargs),
            correlation_id=ids.get("correlation_id") or chosen,
            causation_id=ids.get("causation_id"),
            trace_id=ids.get("trace_id"),
        )
        try:
            self.run_store.save(state)
        except ConcurrencyError:
            existing = self.run_store.load(chosen)
            if existing is None:
                raise
            if (
                existing.saga_type != self.saga_type
                or existing.to_dict()["kwargs"] != state.to_dict()["kwargs"]
            ):
                raise SagaError(
                    f"saga {chosen!r} exists already, as a {existing.saga_type!r} saga with "
                    f"arguments {sorted(existing.kwargs)}: not started again"
                ) from None
            if existing.status is not SagaStatus.PENDING:
                return chosen
        dispatch_saga(chosen, using=self.using)
        logger.info(
            "saga %s %s started (correlation_id=%s)", self.saga_type, chosen, state.correlation_id
        )
        return chosen

    async def astart(self, /, **kwargs: Any) -> str:
        """:meth:`start` for async callers."""
        started: str = await sync_to_async(self.start, thread_sensitive=True)(**kwargs)
        return started

    # -- running --------------------------------------------------------------

    async def execute(self, **kwargs: Any) -> SagaState:
        """Run (or resume) the saga under its run lock; the core's ``execute`` plus deadlines.

        A saga stored by :meth:`start` runs with its stored arguments.
        Raises :class:`SagaBusyError` when another runner holds the saga.
        """
        if self.saga_id is None:
            await self.initialize()
        saga_id = self.saga_id
        assert saga_id is not None
        lock = SagaRunLock(saga_id, self.using)
        if not await sync_to_async(lock.acquire, thread_sensitive=True)():
            raise SagaBusyError(f"saga {saga_id!r} is being executed by another runner")
        token = _current.set(self._context)
        try:
            stored = await _in_django_thread(lambda: self.run_store.load(saga_id))
            if stored is not None:
                self._context.update(stored, self.deadline_of(stored))
                if stored.status is SagaStatus.PENDING and not kwargs:
                    kwargs = dict(stored.kwargs)
            try:
                return await super().execute(**kwargs)
            except (DeadlinePassed, _StepCancelled) as missed:
                reason = str(missed)
                await _in_django_thread(lambda: self._time_out(saga_id, reason))
                return await super().execute()
            except SagaInterrupted:
                logger.info("saga %s %s: stopped between steps", self.saga_type, saga_id)
                interrupted: SagaState | None = await _in_django_thread(
                    lambda: self.run_store.load(saga_id)
                )
                assert interrupted is not None
                return interrupted
        finally:
            _current.reset(token)
            await sync_to_async(lock.release, thread_sensitive=True)()

    # -- deadlines ------------------------------------------------------------

    def deadline_of(self, state: SagaState) -> datetime | None:
        """The earliest deadline ``state`` must meet next (None: none pending)."""
        if state.status not in (SagaStatus.PENDING, SagaStatus.IN_PROGRESS):
            return None
        candidates: list[datetime] = []
        if self.timeout is not None:
            candidates.append(state.created_at + self.timeout)
        record = self._running_step(state)
        if record is not None and record.started_at is not None:
            candidates.append(record.started_at + self.deadlines[record.name])
        return min(candidates, default=None)

    def _running_step(self, state: SagaState) -> StepRecord | None:
        """The step ``state`` is running, when it has a deadline."""
        name = state.current_step
        if state.status is not SagaStatus.IN_PROGRESS or name not in self.deadlines:
            return None
        record = state.step(name)
        return record if record.status is StepStatus.RUNNING else None

    def missed_deadline(self, state: SagaState, now: datetime | None = None) -> str | None:
        """Why ``state`` is overdue at ``now`` (None when it is not)."""
        now = now or _now()
        if state.status not in (SagaStatus.PENDING, SagaStatus.IN_PROGRESS):
            return None
        if self.timeout is not None and state.created_at + self.timeout <= now:
            return f"saga did not finish within {self.timeout}"
        record = self._running_step(state)
        if record is not None and record.started_at is not None:
            limit = self.deadlines[record.name]
            if record.started_at + limit <= now:
                return f"step {record.name!r} did not complete within {limit}"
        return None

    def _before_save(self, state: SagaState) -> None:
        """Stop the core before it starts a step too late (or when asked to stop)."""
        if state.status is not SagaStatus.IN_PROGRESS:
            return
        starting = state.current_step is not None and (
            state.step(state.current_step).status is StepStatus.RUNNING
        )
        if starting and self._should_stop is not None and self._should_stop():
            raise SagaInterrupted(f"saga {state.saga_id!r}: stop requested")
        reason = self.missed_deadline(state)
        if reason is not None:
            raise DeadlinePassed(reason)

    def _after_save(self, state: SagaState, deadline: datetime | None) -> None:
        """Keep the step context current; stop the core after a step completed too late."""
        self._context.update(state, deadline)
        name = state.current_step
        if state.status is not SagaStatus.IN_PROGRESS or name not in self.deadlines:
            return
        record = state.step(name)
        if (
            record.status is StepStatus.COMPLETED
            and record.started_at is not None
            and record.finished_at is not None
            and record.finished_at - record.started_at > self.deadlines[name]
        ):
            raise DeadlinePassed(
                f"step {name!r} completed after its deadline ({self.deadlines[name]})"
            )

    def _time_out(self, saga_id: str, reason: str) -> SagaState | None:
        """Time the stored saga out: ``on_timeout``, the late step failed, COMPENSATING.

        Sync; the caller holds the run lock. A PENDING saga (nothing to
        undo) ends FAILED at once. Returns the saved state (None if missing).
        """
        store = self._run_store
        state = store.load(saga_id)
        if state is None or state.status not in (SagaStatus.PENDING, SagaStatus.IN_PROGRESS):
            return state
        late = state.current_step if state.status is SagaStatus.IN_PROGRESS else None
        logger.warning("saga %s %s timed out: %s; compensating", self.saga_type, saga_id, reason)
        self._call_on_timeout(state, late, reason)
        hooks = self.observability
        try:
            hooks.metrics.counter("orchestrix.sagas.timed_out", 1.0, {"saga_type": self.saga_type})
        except Exception:
            logger.exception("metrics provider failed to record orchestrix.sagas.timed_out")
        now = _now()
        state.updated_at = now
        if state.status is SagaStatus.PENDING:
            state.status = SagaStatus.FAILED
            state.error = f"timed out: {reason}"
            saved = store.save(state)
            hooks.record_saga_failed(self.saga_type, saga_id, state.error)
            return saved
        if late is not None:
            record = state.step(late)
            if record.status is StepStatus.RUNNING:
                record.status = StepStatus.FAILED
                record.error = f"DeadlinePassed: {reason}"
                record.finished_at = now
        state.status = SagaStatus.COMPENSATING
        state.error = f"timed out: {reason}"
        return store.save(state)

    def _call_on_timeout(self, state: SagaState, step: str | None, reason: str) -> None:
        if self.on_timeout is None or self._timeout_plan is None:
            return
        context = {
            "saga_id": state.saga_id,
            "step": step,
            "idempotency_key": f"{state.saga_id}:{step}",
            "results": state.results,
            "reason": reason,
        }
        args, kwargs = self._timeout_plan.arguments(state.kwargs, context, {})
        holder = _RunContext()
        holder.update(state, None)
        token = _current.set(holder)
        try:
            if iscoroutinefunction(self.on_timeout):
                async_to_sync(self.on_timeout)(*args, **kwargs)
            else:
                self.on_timeout(*args, **kwargs)
        finally:
            _current.reset(token)

    def _bounded(self, step: SagaStep) -> SagaStep:
        """``step``, its async action cancelled at its deadline (sync ones cannot be)."""
        if not isinstance(step, SagaStep) or not iscoroutinefunction(step.action):
            return step
        if step.name not in self.deadlines and self.timeout is None:
            return step
        action = step.action
        holder = self._context

        @functools.wraps(action)
        async def bounded(*args: Any, **kwargs: Any) -> Any:
            context = holder.get()
            deadline = context.deadline if context is not None else None
            if deadline is None:
                return await action(*args, **kwargs)
            remaining = (deadline - _now()).total_seconds()
            try:
                return await asyncio.wait_for(action(*args, **kwargs), max(remaining, 0.0))
            except TimeoutError:
                limit = self.deadlines.get(step.name, self.timeout)
                raise _StepCancelled(
                    f"step {step.name!r} did not complete within {limit}"
                ) from None

        return dataclasses.replace(step, action=bounded)

    def __repr__(self) -> str:
        return f"<DjangoSaga {self.saga_type}>" if self.saga_id is None else super().__repr__()


# ---------------------------------------------------------------- the registry

_registry_lock = threading.Lock()
_registry: dict[str, DjangoSaga] | None = None


def sagas() -> dict[str, DjangoSaga]:
    """The sagas of ``ORCHESTRIX["SAGAS"]``, by saga type (imported once)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            loaded: dict[str, DjangoSaga] = {}
            for entry in orchestrix_settings.SAGAS:
                if not isinstance(entry, Saga):
                    raise TypeError(f"ORCHESTRIX['SAGAS'] lists {entry!r}, not a Saga")
                saga = DjangoSaga.from_saga(entry)
                if saga.saga_type in loaded:
                    raise ValueError(f"two sagas have the type {saga.saga_type!r}")
                loaded[saga.saga_type] = saga
            _registry = loaded
        return _registry


def reset_registry() -> None:
    """Forget the loaded sagas (the settings changed)."""
    global _registry
    with _registry_lock:
        _registry = None


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "ORCHESTRIX":
        reset_registry()


setting_changed.connect(_reload, dispatch_uid="orchestrix_django.sagas.runner")


def get_saga(saga_type: str) -> DjangoSaga:
    """The configured saga of type ``saga_type``; KeyError says which types exist."""
    found = sagas().get(saga_type)
    if found is None:
        known = ", ".join(sorted(sagas())) or "none"
        raise KeyError(f"no saga of type {saga_type!r} is configured (known: {known})")
    return found


def start_saga(saga_type: str, /, **kwargs: Any) -> str:
    """Start a saga of the configured type ``saga_type`` (see :meth:`DjangoSaga.start`)."""
    return get_saga(saga_type).start(**kwargs)


# ---------------------------------------------------------------- running and dispatching


def run_saga(
    saga_id: str, *, using: str | None = None, should_stop: Callable[[], bool] | None = None
) -> SagaState | None:
    """Execute (or resume) the stored saga ``saga_id`` in this thread, to its end.

    Returns its state, or None when it does not exist, is of a type not
    configured here, or another runner is executing it (all logged). For
    sync code (a Celery task, a management command): not from a running
    event loop. ``should_stop`` is asked between steps (see :meth:`DjangoSaga.fresh`).
    A database fault is ridden out: the saga resumes from its stored state
    once the database answers (see the module docs); when ``should_stop()``
    says so meanwhile, the fault is raised and the saga left resumable.
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
    run = definition.fresh(saga_id, should_stop=should_stop)
    try:
        final: SagaState = async_to_sync(run.execute)()
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


def saga_headers(state: SagaState) -> dict[str, str]:
    """The Celery message headers of a saga's task: its correlation, causation and trace ids."""
    headers = {"orchestrix_saga_id": state.saga_id}
    for header, value in (
        ("orchestrix_correlation_id", state.correlation_id),
        ("orchestrix_causation_id", state.causation_id),
        ("orchestrix_trace_id", state.trace_id),
    ):
        if value:
            headers[header] = value
    return headers


def dispatch_saga(saga_id: str, *, using: str | None = None) -> None:
    """Have a runner execute ``saga_id``, once the surrounding transaction commits.

    ``ORCHESTRIX["WAKE_UP"] == "celery"``: send ``orchestrix.run_saga`` (a
    broker that can't be reached is logged; the periodic sweep resumes the
    saga). ``"none"``: nothing to do, ``orchestrix_run`` polls for it.
    """
    if orchestrix_settings.WAKE_UP != "celery":
        return
    alias = using or str(orchestrix_settings.DATABASE)

    def send() -> None:
        from orchestrix_django.saga_tasks import enqueue_saga

        enqueue_saga(saga_id, using=alias)

    transaction.on_commit(send, using=alias)


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
    now = now or _now()
    if inline is None:
        inline = orchestrix_settings.WAKE_UP != "celery"
    expired: list[str] = []
    for saga_id, saga_type in _overdue(now, alias, limit):
        definition = get_saga(saga_type)
        lock = SagaRunLock(saga_id, alias)
        if not lock.acquire():
            continue
        try:
            run = definition.fresh(saga_id)
            stored = run.run_store.load(saga_id)
            reason = run.missed_deadline(stored, now) if stored is not None else None
            if reason is None:
                continue  # it moved on since the query
            timed_out = run._time_out(saga_id, reason)
        finally:
            lock.release()
        expired.append(saga_id)
        if timed_out is not None and not timed_out.is_finished:
            if inline:
                _run_logged(saga_id, alias, None)
            else:
                dispatch_saga(saga_id, using=alias)
    return expired


def _run_logged(saga_id: str, using: str, should_stop: Callable[[], bool] | None) -> None:
    """:func:`run_saga` for loops over many sagas: one that raises does not stop the others."""
    try:
        run_saga(saga_id, using=using, should_stop=should_stop)
    except Exception:
        logger.exception("running saga %s failed; it is tried again later", saga_id)


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
        inline = orchestrix_settings.WAKE_UP != "celery"
    types = list(sagas())
    if not types:
        return []
    idle_since = _now() - timedelta(seconds=older_than)
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
            _run_logged(saga_id, alias, should_stop)
        else:
            from orchestrix_django.saga_tasks import enqueue_saga

            enqueue_saga(saga_id, using=alias)
    return resumed
