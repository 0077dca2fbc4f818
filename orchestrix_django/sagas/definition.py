"""``DjangoSaga``: a core ``Saga`` kept in the saga table, run in sync Django code.

A saga runs in the caller's thread (:meth:`DjangoSaga.run`), its sync steps
and state saves called inline, without an event loop; async steps run through
``async_to_sync``. The core's async API (``await saga.execute()``) stays: it
runs :meth:`DjangoSaga.run` in the Django thread. See docs/django.md, "Sagas".
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async

from orchestrix.core.common.exceptions import ConcurrencyError, SagaError
from orchestrix.core.common.observability import ObservabilityHooks, TracingProvider
from orchestrix.core.execution.saga import (
    Saga,
    SagaState,
    SagaStatus,
    SagaStep,
)
from orchestrix.core.execution.saga_state import StepRecord, StepStatus
from orchestrix.core.execution.step_arguments import CallPlan
from orchestrix.core.messaging.message import Message, causal_fields
from orchestrix_django.sagas.context import RunContext, running
from orchestrix_django.sagas.deadlines import SagaDeadlines, now
from orchestrix_django.sagas.dispatch import dispatch_saga
from orchestrix_django.sagas.errors import (
    DeadlinePassed,
    SagaBusyError,
    SagaInterrupted,
    StepCancelled,
)
from orchestrix_django.sagas.locks import SagaRunLock
from orchestrix_django.sagas.state import SagaRunStore
from orchestrix_django.storage.configured import configured_observability
from orchestrix_django.storage.faults import is_database_fault
from orchestrix_django.storage.saga_state import DjangoAsyncSagaStateStore, DjangoSagaStateStore

__all__ = ["DjangoSaga"]

logger = logging.getLogger("orchestrix.sagas")


def _is_async(function: Callable[..., Any]) -> bool:
    """Whether calling ``function`` returns a coroutine (``async def``, or such a ``__call__``)."""
    call = getattr(function, "__call__", None)  # noqa: B004 - the method itself
    return iscoroutinefunction(function) or iscoroutinefunction(call)


async def _awaited(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return await function(*args, **kwargs)


def _blocking(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (async) as a sync callable with its signature, run through ``async_to_sync``."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        return async_to_sync(_awaited)(function, *args, **kwargs)

    return call


async def _in_django_thread(function: Callable[[], Any]) -> Any:
    """Run a sync store call of the async API where Django wants sync code run."""
    return await sync_to_async(function, thread_sensitive=True)()


class DjangoSaga(Saga):
    """A core :class:`~orchestrix.core.execution.saga.Saga` kept in Django.

    The positional arguments are the core's; ``state_store`` is a
    :class:`~orchestrix_django.storage.saga_state.DjangoSagaStateStore` (or its
    async twin) whose database is used, by default ``ORCHESTRIX["DATABASE"]``.
    Keyword-only: ``deadlines`` (step name -> ``timedelta``), ``timeout`` (the
    whole saga, from its start), ``on_timeout`` (called, sync or async, with the
    arguments its signature declares among the saga kwargs, ``saga_id``,
    ``step``, ``idempotency_key``, ``results`` and ``reason``), ``observability``
    and ``saga_id`` (the id :meth:`initialize` uses without one).
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
        self.deadline_rules = SagaDeadlines(saga_type, names, deadlines, timeout)
        if on_timeout is not None and not callable(on_timeout):
            raise TypeError(f"saga {saga_type!r}: on_timeout must be callable, got {on_timeout!r}")
        self.on_timeout = on_timeout
        self._original_steps = steps
        self._hooks = observability
        self._context = RunContext()
        self._run_store = SagaRunStore(
            state_store._using if state_store is not None else None,
            self.deadline_rules,
            self._context,
        )
        super().__init__(
            saga_type,
            [self._runnable(step) for step in steps],
            self._run_store,
            tracing,
            saga_id=saga_id,
            run_sync=_in_django_thread,
        )
        self._timeout_plan = CallPlan.of(on_timeout) if on_timeout is not None else None

    @classmethod
    def from_saga(cls, saga: Saga) -> DjangoSaga:
        """A ``DjangoSaga`` with the type, steps and tracing of a core ``Saga`` (a Django store)."""
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
        """A new, uninitialized saga of this definition, for one run of ``saga_id``.

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
        run.run_store.should_stop = should_stop
        return run

    @property
    def deadlines(self) -> dict[str, timedelta]:
        """Step name -> the time the step may take (from its first attempt)."""
        return self.deadline_rules.steps

    @property
    def timeout(self) -> timedelta | None:
        """The time the whole saga may take, from its start."""
        return self.deadline_rules.timeout

    @property
    def run_store(self) -> SagaRunStore:
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
        """Store a new saga (PENDING) with ``kwargs``, dispatch it after the commit, return its id.

        The correlation ids are those of ``caused_by`` (its correlation id, its
        id as causation, its trace id), overridden by the explicit ones; without
        either the saga's correlation id is its id. Starting an existing
        ``saga_id`` again with the same type and arguments returns it (a retried
        request); with others it is a :class:`SagaError`.
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

    def run(self, **kwargs: Any) -> SagaState:
        """Run (or resume) the saga in this thread, under its run lock, keeping its deadlines.

        A saga stored by :meth:`start` runs with its stored arguments. Raises
        :class:`SagaBusyError` when another runner holds the saga.
        """
        if self.saga_id is None:
            self.initialize_sync()
        saga_id = self.saga_id
        assert saga_id is not None
        lock = SagaRunLock(saga_id, self.using)
        if not lock.acquire():
            raise SagaBusyError(f"saga {saga_id!r} is being executed by another runner")
        try:
            with running(self._context):
                stored = self.run_store.load(saga_id)
                if stored is not None:
                    self._context.update(stored, self.deadline_rules.next_deadline(stored))
                    if stored.status is SagaStatus.PENDING and not kwargs:
                        kwargs = dict(stored.kwargs)
                try:
                    return self.execute_sync(**kwargs)
                except (DeadlinePassed, StepCancelled) as missed:
                    self.time_out(saga_id, str(missed))
                    return self.execute_sync()
                except SagaInterrupted:
                    logger.info("saga %s %s: stopped between steps", self.saga_type, saga_id)
                    interrupted = self.run_store.load(saga_id)
                    assert interrupted is not None
                    return interrupted
        finally:
            lock.release()

    async def execute(self, **kwargs: Any) -> SagaState:
        """The core's ``execute``: :meth:`run` in the Django thread."""
        final: SagaState = await sync_to_async(self.run, thread_sensitive=True)(**kwargs)
        return final

    # -- timing out -----------------------------------------------------------

    def time_out(self, saga_id: str, reason: str) -> SagaState | None:
        """Time the stored saga out: ``on_timeout``, the late step failed, COMPENSATING.

        The caller holds the run lock. A PENDING saga (nothing to undo) ends
        FAILED at once. Returns the saved state (None if missing).
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
        at = now()
        state.updated_at = at
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
                record.finished_at = at
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
        holder = RunContext()
        holder.update(state, None)
        with running(holder):
            if iscoroutinefunction(self.on_timeout):
                async_to_sync(self.on_timeout)(*args, **kwargs)
            else:
                self.on_timeout(*args, **kwargs)

    def _runnable(self, step: SagaStep) -> SagaStep:
        """``step`` as the sync run calls it: async callables bounded and made blocking."""
        given: object = step
        if not isinstance(given, SagaStep):
            return step  # the core's constructor refuses it, saying why
        if _is_async(step.action):
            step = self.deadline_rules.bound(step, self._context)
            step = dataclasses.replace(step, action=_blocking(step.action))
        if step.compensation is not None and _is_async(step.compensation):
            step = dataclasses.replace(step, compensation=_blocking(step.compensation))
        return step

    def __repr__(self) -> str:
        return f"<DjangoSaga {self.saga_type}>" if self.saga_id is None else super().__repr__()
