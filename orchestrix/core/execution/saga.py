"""Sagas: long-running processes that undo their completed steps when one fails.

A :class:`Saga` saves its state after every step and compensates the completed
steps in reverse order when one fails (docs/core-api.md, "Sagas").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from orchestrix.core.common.clock import utc_now
from orchestrix.core.common.exceptions import ConcurrencyError, SagaError
from orchestrix.core.common.observability import (
    ObservabilityHooks,
    TraceSpan,
    TracingProvider,
    get_observability,
)
from orchestrix.core.common.retry import NoRetry, RetryPolicy
from orchestrix.core.execution.saga_state import (
    SagaState,
    SagaStateStore,
    SagaStatus,
    StepRecord,
    StepStatus,
    SyncSagaStateStore,
)
from orchestrix.core.execution.step_arguments import CallPlan, is_coroutine_callable
from orchestrix.infrastructure.memory.saga_state import InMemorySagaStateStore

# SagaState, SagaStatus, SagaStateStore and InMemorySagaStateStore are
# importable from here, as the core API reference documents.
__all__ = [
    "InMemorySagaStateStore",
    "Saga",
    "SagaState",
    "SagaStateStore",
    "SagaStatus",
    "SagaStep",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def _run_without_loop(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` to its end in this thread; it must never suspend (all it calls is sync)."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        result: _T = finished.value
        return result
    coroutine.close()
    raise RuntimeError("a saga run without an event loop awaited something that suspends")


#: Runs a sync callable somewhere an event loop may wait for it (a thread, say).
SyncRunner = Callable[[Callable[[], Any]], Awaitable[Any]]


class _Call(StrEnum):
    """Which callable of a step runs; the value names its span (``saga.step``)."""

    ACTION = "step"
    COMPENSATION = "compensation"


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


# ------------------------------------------------------------------ steps


@dataclass
class SagaStep:
    """One step of a saga: an action and, optionally, what undoes it.

    ``retry_policy`` governs retries of the action and
    ``compensation_retry_policy`` those of the compensation; ``None`` means
    :class:`~orchestrix.core.common.retry.NoRetry`.
    """

    name: str
    action: Callable[..., Any]
    compensation: Callable[..., Any] | None = None
    retry_policy: RetryPolicy | None = field(default=None, kw_only=True)
    compensation_retry_policy: RetryPolicy | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a saga step needs a non-empty name, got {self.name!r}")
        if not callable(self.action):
            raise TypeError(f"step {self.name!r}: action must be callable, got {self.action!r}")
        if self.compensation is not None and not callable(self.compensation):
            raise TypeError(
                f"step {self.name!r}: compensation must be callable or None, "
                f"got {self.compensation!r}"
            )


# ------------------------------------------------------------------ the saga


class Saga:
    """Runs steps in order and compensates the completed ones when a step fails.

    ``state_store`` may be a :class:`SagaStateStore` (async) or a
    :class:`SyncSagaStateStore`. ``tracing``, when given, wraps every action
    and compensation attempt in a span. Keyword-only extras:

    * ``observability``: hooks that receive saga metrics (default: the
      process-wide :func:`get_observability`, looked up at each report);
    * ``saga_id``: the id :meth:`initialize` uses when called without one;
    * ``run_sync``: how to run *sync* callables (steps and store methods),
      e.g. ``lambda fn: sync_to_async(fn)()`` so that Django ORM code is not
      run on the event loop. By default they are called inline.
    """

    def __init__(
        self,
        saga_type: str,
        steps: list[SagaStep],
        state_store: SagaStateStore | SyncSagaStateStore,
        tracing: TracingProvider | None = None,
        *,
        observability: ObservabilityHooks | None = None,
        saga_id: str | None = None,
        run_sync: SyncRunner | None = None,
    ) -> None:
        if not isinstance(saga_type, str) or not saga_type:
            raise ValueError(f"saga_type must be a non-empty string, got {saga_type!r}")
        steps = list(steps)
        seen: set[str] = set()
        for step in steps:
            if not isinstance(step, SagaStep):
                raise TypeError(f"saga {saga_type!r}: steps must be SagaStep, got {step!r}")
            if step.name in seen:
                raise ValueError(f"saga {saga_type!r}: duplicate step name {step.name!r}")
            seen.add(step.name)
        self.saga_type = saga_type
        self.steps: tuple[SagaStep, ...] = tuple(steps)
        self.state_store = state_store
        self.tracing = tracing
        self._observability = observability
        self._default_saga_id = saga_id
        self._run_sync = run_sync
        # Signatures are read once, here, so that a bad step fails fast.
        self._action_plans = {step.name: CallPlan.of(step.action) for step in self.steps}
        self._compensation_plans = {
            step.name: CallPlan.of(step.compensation)
            for step in self.steps
            if step.compensation is not None
        }
        self._state: SagaState | None = None
        self._executing = False
        self._blocking_calls = False

    # -- public API -----------------------------------------------------------

    @property
    def saga_id(self) -> str | None:
        """The saga's id, once initialized."""
        return None if self._state is None else self._state.saga_id

    @property
    def observability(self) -> ObservabilityHooks:
        """The hooks reports go to."""
        return self._observability or get_observability()

    async def initialize(
        self,
        saga_id: str | None = None,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        trace_id: str | None = None,
    ) -> SagaState:
        """Create and persist the initial PENDING state, or load the stored one.

        The id is ``saga_id``, else the constructor's ``saga_id``, else a new
        UUID. If the store already holds a state with that id, it is loaded
        (resuming after a crash) and the correlation arguments are ignored in
        favour of the stored ones. Returns a copy of the state.
        """
        if self._executing:
            raise SagaError("cannot initialize a saga while it is executing")
        return await self._initialize(saga_id, correlation_id, causation_id, trace_id)

    async def _initialize(
        self,
        saga_id: str | None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        trace_id: str | None = None,
    ) -> SagaState:
        chosen = saga_id or self._default_saga_id
        if self._state is not None and chosen is not None and chosen != self._state.saga_id:
            raise SagaError(
                f"saga already initialized as {self._state.saga_id!r}; "
                f"create another Saga to run {chosen!r}"
            )
        if chosen is None:
            chosen = self._state.saga_id if self._state is not None else str(uuid.uuid4())

        stored = await self._store_load(chosen)
        if stored is None:
            fresh = SagaState(
                saga_id=chosen,
                saga_type=self.saga_type,
                steps=[StepRecord(name=step.name) for step in self.steps],
                correlation_id=correlation_id,
                causation_id=causation_id,
                trace_id=trace_id,
            )
            try:
                saved = await self._store_call("save", fresh)
            except ConcurrencyError:
                # Another worker created it between our load and save: adopt theirs.
                stored = await self._store_load(chosen)
                if stored is None:
                    raise
            else:
                fresh.version = saved.version
                self._state = fresh
                return fresh.copy()
        self._state = self._adopt(stored)
        return self._state.copy()

    async def execute(self, **kwargs: Any) -> SagaState:
        """Run the saga (or resume it) and return a copy of its final state.

        Calls :meth:`initialize` first if it was not called. A PENDING saga
        stores ``kwargs`` and starts; a saga found IN_PROGRESS or COMPENSATING
        resumes with its stored kwargs (passing different ones is a
        :class:`SagaError`); a COMPLETED or FAILED saga is returned as it is,
        without running anything. A failing step does not raise: the saga
        compensates and ends FAILED. A ``BaseException`` that is not an
        ``Exception`` (cancellation, ``KeyboardInterrupt``) propagates and
        leaves the persisted state resumable.
        """
        return await self._execute_stored(kwargs)

    def initialize_sync(
        self,
        saga_id: str | None = None,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        trace_id: str | None = None,
    ) -> SagaState:
        """:meth:`initialize` in this thread, without an event loop (a sync state store)."""
        if self._executing:
            raise SagaError("cannot initialize a saga while it is executing")
        with self._blocking():
            return _run_without_loop(
                self._initialize(saga_id, correlation_id, causation_id, trace_id)
            )

    def execute_sync(self, **kwargs: Any) -> SagaState:
        """:meth:`execute` in this thread, without an event loop.

        For sync steps, compensations and state store, called inline (``run_sync``
        is not used); retry delays sleep in this thread. Anything async is a
        ``TypeError`` before the saga runs.
        """
        with self._blocking():
            return _run_without_loop(self._execute_stored(kwargs))

    async def _execute_stored(self, kwargs: dict[str, Any]) -> SagaState:
        """:meth:`execute`, from the stored state."""
        if self._executing:
            raise SagaError(f"saga {self.saga_id!r} is already executing")
        self._executing = True
        try:
            if self._state is None:
                await self._initialize(None)
            else:
                # Start from the stored truth: another worker may have moved it on.
                stored = await self._store_load(self._require_state().saga_id)
                if stored is None:
                    raise SagaError(f"saga {self.saga_id!r} has vanished from its state store")
                self._state = self._adopt(stored)
            return await self._execute(kwargs)
        finally:
            self._executing = False

    @contextlib.contextmanager
    def _blocking(self) -> Iterator[None]:
        """Call everything inline while the block runs; refuse async steps and stores."""
        plans = [*self._action_plans.values(), *self._compensation_plans.values()]
        found: list[Any] = [plan.func for plan in plans if plan.is_coroutine]
        if any(is_coroutine_callable(getattr(self.state_store, name)) for name in ("save", "load")):
            found.append(self.state_store)
        if found:
            raise TypeError(
                f"saga {self.saga_type!r}: running without an event loop needs sync steps, "
                f"compensations and state store, got {found!r}"
            )
        self._blocking_calls = True
        try:
            yield
        finally:
            self._blocking_calls = False

    def is_fault(self, error: BaseException) -> bool:
        """Whether ``error`` is a fault of the infrastructure rather than of the step.

        A fault propagates out of :meth:`execute`, leaving the saga resumable
        (docs/core-api.md, "Sagas"). False for every error here; runners whose steps
        or store use a database override it.
        """
        return False

    def get_state(self) -> SagaState:
        """A copy of the current state (``SagaError`` before :meth:`initialize`)."""
        return self._require_state().copy()

    def is_completed(self) -> bool:
        """Whether the saga finished, successfully (COMPLETED) or not (FAILED)."""
        return self._state is not None and self._state.is_finished

    def is_successful(self) -> bool:
        """Whether the saga ran every step (COMPLETED)."""
        return self._state is not None and self._state.status is SagaStatus.COMPLETED

    def __repr__(self) -> str:
        status = "uninitialized" if self._state is None else self._state.status.value
        return f"<Saga {self.saga_type} {self.saga_id!r} {status}>"

    # -- running --------------------------------------------------------------

    async def _execute(self, kwargs: dict[str, Any]) -> SagaState:
        state = self._require_state()
        if state.is_finished:
            return state.copy()
        if state.status is SagaStatus.PENDING:
            state.kwargs = dict(kwargs)
            state.status = SagaStatus.IN_PROGRESS
            await self._save()
            self.observability.record_saga_started(self.saga_type, state.saga_id)
        elif kwargs and kwargs != state.kwargs:
            # Completed steps ran with the stored kwargs; mixing would corrupt the saga.
            raise SagaError(
                f"saga {state.saga_id!r} is resuming with its stored kwargs "
                f"{sorted(state.kwargs)}; call execute() without arguments or with the same ones"
            )

        if state.status is SagaStatus.IN_PROGRESS:
            for step in self.steps:
                if state.step(step.name).action_completed:
                    continue  # done before a crash: never run twice
                if not await self._run_action(step):
                    break
            else:
                state.status = SagaStatus.COMPLETED
                state.current_step = None
                await self._save()
                self.observability.record_saga_completed(self.saga_type, state.saga_id)
                return state.copy()

        # COMPENSATING: a step failed (now or before a crash).
        for step in reversed(self.steps):
            record = state.step(step.name)
            if record.status in (StepStatus.COMPLETED, StepStatus.COMPENSATING):
                await self._run_compensation(step)
        state.status = SagaStatus.FAILED
        state.current_step = None
        await self._save()
        error = state.error or "saga failed"
        if state.fully_compensated:
            self.observability.record_saga_compensated(self.saga_type, state.saga_id)
        self.observability.record_saga_failed(self.saga_type, state.saga_id, error)
        return state.copy()

    async def _run_action(self, step: SagaStep) -> bool:
        """Run one action with its retries; True on success. Persists every transition."""
        state = self._require_state()
        record = state.step(step.name)
        policy = step.retry_policy or NoRetry()
        plan = self._action_plans[step.name]
        failures = 0
        while True:
            # Persist "running" first, so a crash mid-call is visible and resumable.
            record.status = StepStatus.RUNNING
            record.attempts += 1
            record.started_at = record.started_at or utc_now()
            state.current_step = step.name
            await self._save()
            try:
                result = await self._attempt(step, plan, _Call.ACTION, {}, record.attempts)
            except Exception as error:
                if self.is_fault(error):
                    raise  # resumable: the step is RUNNING in the store
                failures += 1
                record.error = _describe(error)
                if policy.is_retryable(error) and policy.should_retry(failures):
                    logger.info(
                        "saga %s %s: step %s failed (%s), retry %d",
                        self.saga_type,
                        state.saga_id,
                        step.name,
                        record.error,
                        failures,
                    )
                    await self._sleep(policy.get_delay(failures))
                    continue
                logger.warning(
                    "saga %s %s: step %s failed (%s); compensating",
                    self.saga_type,
                    state.saga_id,
                    step.name,
                    record.error,
                )
                record.status = StepStatus.FAILED
                record.finished_at = utc_now()
                # One save for both, so no state has a failed step outside COMPENSATING.
                state.status = SagaStatus.COMPENSATING
                state.error = f"step {step.name!r} failed: {record.error}"
                await self._save()
                return False
            record.status = StepStatus.COMPLETED
            record.result = result
            record.error = None
            record.finished_at = utc_now()
            await self._save()
            return True

    async def _run_compensation(self, step: SagaStep) -> None:
        """Undo one completed step, with retries; a final failure is recorded, not raised."""
        state = self._require_state()
        record = state.step(step.name)
        state.current_step = step.name
        if step.compensation is None:
            record.status = StepStatus.COMPENSATED  # nothing to undo
            record.compensated_at = utc_now()
            await self._save()
            return
        policy = step.compensation_retry_policy or NoRetry()
        plan = self._compensation_plans[step.name]
        failures = 0
        while True:
            record.status = StepStatus.COMPENSATING
            record.compensation_attempts += 1
            await self._save()
            try:
                await self._attempt(
                    step,
                    plan,
                    _Call.COMPENSATION,
                    {"result": record.result},
                    record.compensation_attempts,
                )
            except Exception as error:
                if self.is_fault(error):
                    raise  # resumable: the compensation is under way in the store
                failures += 1
                record.compensation_error = _describe(error)
                if policy.is_retryable(error) and policy.should_retry(failures):
                    await self._sleep(policy.get_delay(failures))
                    continue
                logger.error(
                    "saga %s %s: compensation of %s failed (%s); its effects remain",
                    self.saga_type,
                    state.saga_id,
                    step.name,
                    record.compensation_error,
                )
                record.status = StepStatus.COMPENSATION_FAILED
                await self._save()
                return
            record.status = StepStatus.COMPENSATED
            record.compensation_error = None
            record.compensated_at = utc_now()
            await self._save()
            return

    async def _attempt(
        self,
        step: SagaStep,
        plan: CallPlan,
        kind: _Call,
        overrides: Mapping[str, Any],
        attempt: int,
    ) -> Any:
        """One call of an action or compensation, timed, reported and traced."""
        state = self._require_state()
        context = {
            "saga_id": state.saga_id,
            "idempotency_key": f"{state.saga_id}:{step.name}",
            "results": state.results,
        }
        args, kwargs = plan.arguments(state.kwargs, context, overrides)
        label = step.name if kind is _Call.ACTION else f"{step.name}:compensation"
        span_context: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.tracing is not None:
            span_context = self._start_span(kind, step.name, attempt)
        started = time.perf_counter()
        succeeded = False
        try:
            with span_context:
                result = await self._call(plan, args, kwargs)
            succeeded = True
            return result
        finally:
            # Also on crashes (BaseException): a metric of the interrupted attempt.
            self.observability.record_saga_step(
                self.saga_type, label, time.perf_counter() - started, succeeded
            )

    def _start_span(self, kind: _Call, step_name: str, attempt: int) -> TraceSpan:
        assert self.tracing is not None
        state = self._require_state()
        span = self.tracing.start_span(f"saga.{kind}")
        span.set_attribute("saga.type", self.saga_type)
        span.set_attribute("saga.id", state.saga_id)
        span.set_attribute("saga.step", step_name)
        span.set_attribute("saga.attempt", attempt)
        if state.correlation_id is not None:
            span.set_attribute("saga.correlation_id", state.correlation_id)
        if state.trace_id is not None:
            span.set_attribute("saga.trace_id", state.trace_id)
        return span

    async def _call(self, plan: CallPlan, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if plan.is_coroutine:
            return await plan.func(*args, **kwargs)
        if self._run_sync is not None and not self._blocking_calls:
            result = await self._run_sync(functools.partial(plan.func, *args, **kwargs))
        else:
            result = plan.func(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _sleep(self, delay: float) -> None:
        if self._blocking_calls:  # no event loop runs: block this thread
            time.sleep(max(delay, 0.0))  # noqa: ASYNC251
        else:
            await asyncio.sleep(max(delay, 0.0))

    # -- state and store --------------------------------------------------------

    def _require_state(self) -> SagaState:
        if self._state is None:
            raise SagaError(f"saga {self.saga_type!r} is not initialized: await initialize()")
        return self._state

    def _adopt(self, stored: SagaState) -> SagaState:
        """Check a stored state belongs to this saga and line its records up with the steps."""
        if stored.saga_type != self.saga_type:
            raise SagaError(
                f"saga {stored.saga_id!r} is a {stored.saga_type!r} saga, not {self.saga_type!r}"
            )
        names = [step.name for step in self.steps]
        by_name = {record.name: record for record in stored.steps}
        unknown = [name for name in by_name if name not in names]
        if unknown:
            # Its effects could never be compensated by this definition.
            raise SagaError(
                f"saga {stored.saga_id!r} has stored steps {unknown} that saga type "
                f"{self.saga_type!r} no longer defines"
            )
        stored.steps = [by_name.get(name) or StepRecord(name=name) for name in names]
        return stored

    async def _save(self) -> None:
        state = self._require_state()
        state.updated_at = utc_now()
        saved = await self._store_call("save", state)
        # Keep working on our own copy; the store keeps its own (no aliasing either way).
        state.version = saved.version

    async def _store_load(self, saga_id: str) -> SagaState | None:
        loaded: SagaState | None = await self._store_call("load", saga_id)
        return loaded

    async def _store_call(self, name: str, *args: Any) -> Any:
        """Call a store method, sync or async."""
        method = getattr(self.state_store, name)
        if inspect.iscoroutinefunction(method):
            return await method(*args)
        if self._run_sync is not None and not self._blocking_calls:
            result = await self._run_sync(functools.partial(method, *args))
        else:
            result = method(*args)
        if inspect.isawaitable(result):
            result = await result
        return result
