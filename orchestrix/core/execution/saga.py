"""Sagas: long-running processes that undo their completed steps when one fails.

A :class:`Saga` runs its :class:`SagaStep` actions in order. Each action (and
each compensation) is called with the keyword arguments its signature declares,
picked from the keyword arguments given to :meth:`Saga.execute`:

* a ``**kwargs`` parameter receives every saga keyword argument;
* in a *compensation*, a parameter named ``result`` receives the result of
  that step's own action;
* when declared and not already a saga keyword argument, ``saga_id``,
  ``idempotency_key`` (``f"{saga_id}:{step_name}"``, the same on every retry
  and every resume) and ``results`` (step name -> result of each completed
  step) are supplied too.

Sync and async callables both work. When a step fails (after the retries its
``retry_policy`` allows), the completed steps are compensated in reverse order;
a compensation that fails (after its own retries) is recorded and the others
still run. The saga then ends ``FAILED`` with ``error`` set.

The state is persisted through a :class:`SagaStateStore` before and after
every step, so a saga re-created with the same ``saga_id`` after a crash
(``await saga.initialize(saga_id)`` then ``await saga.execute()``) resumes
where it stopped: completed steps never run again, an interrupted step runs
again (so steps must be idempotent, keyed by ``idempotency_key``), and an
interrupted compensation goes on with the steps not yet compensated.

An error that :meth:`Saga.is_fault` recognises (the infrastructure failed,
not the step: a lost database connection, a deadlock) is not a step failure:
it is not retried by the step's policy, nothing is compensated, and it
propagates out of :meth:`Saga.execute` with the state as persisted (the step
RUNNING), so that the runner resumes the saga once the infrastructure is back
and the interrupted step runs again. The core recognises no error as a fault.

Stores use optimistic locking: ``SagaState.version`` is the version the
caller read (0 for a state never saved); ``save`` succeeds only if it is still
the stored version, stores a copy with ``version + 1`` and returns that copy.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import functools
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, Protocol, TypeVar, runtime_checkable

from orchestrix.core.common.exceptions import ConcurrencyError, SagaError
from orchestrix.core.common.observability import (
    ObservabilityHooks,
    TraceSpan,
    TracingProvider,
    get_observability,
)
from orchestrix.core.common.retry import NoRetry, RetryPolicy
from orchestrix.core.serialization.codec import decode_value, encode_value

__all__ = [
    "InMemorySagaStateStore",
    "Saga",
    "SagaState",
    "SagaStateStore",
    "SagaStatus",
    "SagaStep",
    "StepRecord",
    "StepStatus",
    "SyncSagaStateStore",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Runs a sync callable somewhere an event loop may wait for it (a thread, say).
SyncRunner = Callable[[Callable[[], Any]], Awaitable[Any]]

#: Names a step may declare to receive saga context (unless a saga kwarg has that name).
CONTEXT_ARGUMENTS: tuple[str, ...] = ("saga_id", "idempotency_key", "results")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _datetime_or_none(value: Any) -> datetime | None:
    if value is None:
        return None
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    # Every timestamp is aware UTC; a naive one from an old row is taken as UTC.
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _iso_or_none(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


# ------------------------------------------------------------------ statuses


class SagaStatus(Enum):
    """Where a saga is in its life."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    COMPENSATING = "compensating"
    FAILED = "failed"


class StepStatus(StrEnum):
    """Where one step is. A ``StrEnum``, so it also compares equal to its value."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


#: Statuses of a step whose action finished successfully (whatever happened after).
_ACTION_DONE = frozenset(
    {
        StepStatus.COMPLETED,
        StepStatus.COMPENSATING,
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATION_FAILED,
    }
)


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


@dataclass
class StepRecord:
    """The history of one step within one saga run.

    ``attempts`` counts calls of the action (1 after the first call, counting
    retries and calls interrupted by a crash); ``error`` is the action's last
    error. ``compensation_attempts`` and ``compensation_error`` are the same
    for the compensation. A step without a compensation is marked
    ``compensated`` when the saga unwinds (there is nothing to undo).
    """

    name: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    result: Any = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    compensated_at: datetime | None = None
    compensation_attempts: int = 0
    compensation_error: str | None = None

    @property
    def action_completed(self) -> bool:
        """Whether the action finished successfully (even if compensated since)."""
        return self.status in _ACTION_DONE

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible data (the result goes through the Orchestrix codec)."""
        return {
            "name": self.name,
            "status": self.status.value,
            "attempts": self.attempts,
            "result": encode_value(self.result),
            "error": self.error,
            "started_at": _iso_or_none(self.started_at),
            "finished_at": _iso_or_none(self.finished_at),
            "compensated_at": _iso_or_none(self.compensated_at),
            "compensation_attempts": self.compensation_attempts,
            "compensation_error": self.compensation_error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepRecord:
        """The record :meth:`to_dict` described."""
        return cls(
            name=data["name"],
            status=StepStatus(data.get("status", StepStatus.PENDING.value)),
            attempts=int(data.get("attempts", 0)),
            result=decode_value(data.get("result")),
            error=data.get("error"),
            started_at=_datetime_or_none(data.get("started_at")),
            finished_at=_datetime_or_none(data.get("finished_at")),
            compensated_at=_datetime_or_none(data.get("compensated_at")),
            compensation_attempts=int(data.get("compensation_attempts", 0)),
            compensation_error=data.get("compensation_error"),
        )


@dataclass
class SagaState:
    """Everything persisted about one saga.

    ``steps`` holds one :class:`StepRecord` per step, in the saga's order;
    ``kwargs`` are the keyword arguments given to :meth:`Saga.execute` (kept
    so that a resumed saga runs with the same ones). ``version`` is the
    optimistic-locking version: 0 until first saved, then the stored version
    this copy was read at. Timestamps are aware UTC.
    """

    saga_id: str
    saga_type: str
    status: SagaStatus = SagaStatus.PENDING
    current_step: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    trace_id: str | None = None
    created_at: datetime = field(default_factory=_utc_now)
    updated_at: datetime = field(default_factory=_utc_now)
    version: int = 0

    # -- queries --------------------------------------------------------------

    def step(self, name: str) -> StepRecord:
        """The record of step ``name`` (``KeyError`` if the saga has no such step)."""
        for record in self.steps:
            if record.name == name:
                return record
        raise KeyError(f"saga {self.saga_id!r} has no step {name!r}")

    @property
    def is_finished(self) -> bool:
        """Whether the saga reached COMPLETED or FAILED."""
        return self.status in (SagaStatus.COMPLETED, SagaStatus.FAILED)

    @property
    def completed_steps(self) -> list[str]:
        """Names of the steps whose action succeeded (also if compensated since)."""
        return [record.name for record in self.steps if record.action_completed]

    @property
    def compensated_steps(self) -> list[str]:
        """Names of the steps that were compensated."""
        return [r.name for r in self.steps if r.status is StepStatus.COMPENSATED]

    @property
    def failed_compensations(self) -> list[str]:
        """Names of the steps whose compensation failed (their effects remain)."""
        return [r.name for r in self.steps if r.status is StepStatus.COMPENSATION_FAILED]

    @property
    def failed_step(self) -> str | None:
        """The step whose failure made the saga compensate, if any."""
        return next((r.name for r in self.steps if r.status is StepStatus.FAILED), None)

    @property
    def results(self) -> dict[str, Any]:
        """Step name -> result, for every step whose action succeeded."""
        return {r.name: r.result for r in self.steps if r.action_completed}

    @property
    def fully_compensated(self) -> bool:
        """True for a FAILED saga every completed step of which was undone."""
        left_undone = (
            StepStatus.COMPLETED,
            StepStatus.COMPENSATING,
            StepStatus.COMPENSATION_FAILED,
        )
        return self.status is SagaStatus.FAILED and not any(
            r.status in left_undone for r in self.steps
        )

    # -- copies and serialisation ---------------------------------------------

    def copy(self) -> SagaState:
        """A deep copy, sharing no mutable state with this one."""
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible data, for stores that persist JSON.

        ``kwargs`` and step results go through the Orchestrix codec, so a
        ``Decimal``, ``datetime`` or ``UUID`` comes back as what it was.
        Raises ``TypeError`` for values the codec cannot store.
        """
        return {
            "saga_id": self.saga_id,
            "saga_type": self.saga_type,
            "status": self.status.value,
            "current_step": self.current_step,
            "steps": [record.to_dict() for record in self.steps],
            "kwargs": encode_value(self.kwargs),
            "error": self.error,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "trace_id": self.trace_id,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SagaState:
        """The state :meth:`to_dict` described."""
        created_at = _datetime_or_none(data.get("created_at")) or _utc_now()
        return cls(
            saga_id=data["saga_id"],
            saga_type=data["saga_type"],
            status=SagaStatus(data.get("status", SagaStatus.PENDING.value)),
            current_step=data.get("current_step"),
            steps=[StepRecord.from_dict(item) for item in data.get("steps", ())],
            kwargs=dict(decode_value(data.get("kwargs") or {})),
            error=data.get("error"),
            correlation_id=data.get("correlation_id"),
            causation_id=data.get("causation_id"),
            trace_id=data.get("trace_id"),
            created_at=created_at,
            updated_at=_datetime_or_none(data.get("updated_at")) or created_at,
            version=int(data.get("version", 0)),
        )


# ------------------------------------------------------------------ stores


@runtime_checkable
class SagaStateStore(Protocol):
    """Persists saga states with optimistic locking (async).

    * ``save(state)``: ``state.version`` is the version the caller read (0
      for a saga never saved). If the stored version (0 when absent) differs,
      raise :class:`ConcurrencyError` with ``aggregate_id=state.saga_id``,
      ``expected_version=state.version`` and ``actual_version`` the stored
      one. Otherwise store a copy with ``version = state.version + 1`` (and
      everything else as given) and return a copy of it. The caller's object
      is left unchanged.
    * ``load(saga_id)``: a copy of the stored state, or ``None``.
    * ``list(status=None, saga_type=None)``: copies of the stored states
      matching both filters (``None``: any), oldest ``created_at`` first.

    Stores never share mutable objects with callers. Stores that persist
    JSON use :meth:`SagaState.to_dict` / :meth:`SagaState.from_dict`.
    """

    async def save(self, state: SagaState) -> SagaState:
        """Store ``state`` if ``state.version`` is the stored version; return the stored copy."""
        ...

    async def load(self, saga_id: str) -> SagaState | None:
        """The stored state of ``saga_id``, or ``None``."""
        ...

    async def list(
        self, *, status: SagaStatus | None = None, saga_type: str | None = None
    ) -> builtins.list[SagaState]:
        """Stored states matching the filters, oldest first."""
        ...


@runtime_checkable
class SyncSagaStateStore(Protocol):
    """The synchronous twin of :class:`SagaStateStore`, with the same semantics.

    A :class:`Saga` accepts either; it awaits whatever a store method returns
    when that is awaitable. (At run time ``isinstance`` cannot tell the two
    protocols apart: both only check that the methods exist.)
    """

    def save(self, state: SagaState) -> SagaState:
        """Store ``state`` if ``state.version`` is the stored version; return the stored copy."""
        ...

    def load(self, saga_id: str) -> SagaState | None:
        """The stored state of ``saga_id``, or ``None``."""
        ...

    def list(
        self, *, status: SagaStatus | None = None, saga_type: str | None = None
    ) -> builtins.list[SagaState]:
        """Stored states matching the filters, oldest first."""
        ...


class InMemorySagaStateStore:
    """A :class:`SagaStateStore` in a dict: the reference implementation.

    Thread-safe (one lock around every read and write), and it deep-copies on
    the way in and out, so neither side can change the other's state.
    """

    def __init__(self) -> None:
        self._states: dict[str, SagaState] = {}
        self._lock = threading.Lock()

    async def save(self, state: SagaState) -> SagaState:
        """Store a copy at ``state.version + 1`` if ``state.version`` is current."""
        # Copy before taking the lock: deepcopy may be slow, and it only reads `state`.
        stored = state.copy()
        with self._lock:
            current = self._states.get(state.saga_id)
            actual = 0 if current is None else current.version
            if state.version != actual:
                raise ConcurrencyError(
                    aggregate_id=state.saga_id,
                    expected_version=state.version,
                    actual_version=actual,
                    reason="saga state",
                )
            stored.version = actual + 1
            self._states[state.saga_id] = stored
            return stored.copy()

    async def load(self, saga_id: str) -> SagaState | None:
        """A copy of the stored state, or ``None``."""
        with self._lock:
            state = self._states.get(saga_id)
            return None if state is None else state.copy()

    async def list(
        self, *, status: SagaStatus | None = None, saga_type: str | None = None
    ) -> builtins.list[SagaState]:
        """Copies of the matching states, oldest first."""
        with self._lock:
            matching = [
                state
                for state in self._states.values()
                if (status is None or state.status is status)
                and (saga_type is None or state.saga_type == saga_type)
            ]
            matching.sort(key=lambda s: (s.created_at, s.saga_id))
            return [state.copy() for state in matching]

    def clear(self) -> None:
        """Forget every state (for tests)."""
        with self._lock:
            self._states.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)


# ------------------------------------------------------------------ calling steps


def _run_without_loop(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` to its end in this thread; it must never suspend (all it calls is sync)."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        result: _T = finished.value
        return result
    coroutine.close()
    raise RuntimeError("a saga run without an event loop awaited something that suspends")


def _is_coroutine_callable(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    # A callable object with an ``async def __call__``.
    call = getattr(func, "__call__", None)  # noqa: B004 - we want the method itself
    return call is not None and inspect.iscoroutinefunction(call)


@dataclass(frozen=True, slots=True)
class _CallPlan:
    """Which arguments a callable takes, worked out once from its signature."""

    func: Callable[..., Any]
    is_coroutine: bool
    positional_only: tuple[str, ...]
    keywords: tuple[str, ...]
    var_keyword: bool
    signature_known: bool

    @classmethod
    def of(cls, func: Callable[..., Any]) -> _CallPlan:
        try:
            parameters = inspect.signature(func).parameters.values()
        except (TypeError, ValueError):
            # No introspectable signature (some builtins): pass the saga kwargs.
            return cls(func, _is_coroutine_callable(func), (), (), True, False)
        kinds = inspect.Parameter
        return cls(
            func=func,
            is_coroutine=_is_coroutine_callable(func),
            positional_only=tuple(p.name for p in parameters if p.kind is kinds.POSITIONAL_ONLY),
            keywords=tuple(
                p.name
                for p in parameters
                if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
            ),
            var_keyword=any(p.kind is kinds.VAR_KEYWORD for p in parameters),
            signature_known=True,
        )

    def arguments(
        self,
        saga_kwargs: Mapping[str, Any],
        context: Mapping[str, Any],
        overrides: Mapping[str, Any],
    ) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for one call.

        A declared name takes its value from ``overrides`` (a compensation's
        ``result``), else from the saga kwargs, else from ``context``; a name
        found nowhere is left to its default. ``**kwargs`` gets the saga
        kwargs not bound by name (never the context: forwarding ``**kwargs``
        must not pass surprise arguments on).
        """
        if not self.signature_known:
            return [], dict(saga_kwargs)

        def lookup(name: str) -> tuple[bool, Any]:
            for source in (overrides, saga_kwargs, context):
                if name in source:
                    return True, source[name]
            return False, None

        args: list[Any] = []
        bound: set[str] = set()
        for name in self.positional_only:
            found, value = lookup(name)
            if not found:
                break  # the rest keep their defaults; a positional gap is impossible
            args.append(value)
            bound.add(name)
        kwargs: dict[str, Any] = {}
        for name in self.keywords:
            found, value = lookup(name)
            if found:
                kwargs[name] = value
                bound.add(name)
        if self.var_keyword:
            for name, value in saga_kwargs.items():
                if name not in bound:
                    kwargs[name] = value
        return args, kwargs


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
        self._action_plans = {step.name: _CallPlan.of(step.action) for step in self.steps}
        self._compensation_plans = {
            step.name: _CallPlan.of(step.compensation)
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
        if any(
            _is_coroutine_callable(getattr(self.state_store, name)) for name in ("save", "load")
        ):
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
        (see the module docs). False for every error here; runners whose steps
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
            record.started_at = record.started_at or _utc_now()
            state.current_step = step.name
            await self._save()
            try:
                result = await self._attempt(step, plan, "step", {}, record.attempts)
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
                record.finished_at = _utc_now()
                # One save for both, so no state has a failed step outside COMPENSATING.
                state.status = SagaStatus.COMPENSATING
                state.error = f"step {step.name!r} failed: {record.error}"
                await self._save()
                return False
            record.status = StepStatus.COMPLETED
            record.result = result
            record.error = None
            record.finished_at = _utc_now()
            await self._save()
            return True

    async def _run_compensation(self, step: SagaStep) -> None:
        """Undo one completed step, with retries; a final failure is recorded, not raised."""
        state = self._require_state()
        record = state.step(step.name)
        state.current_step = step.name
        if step.compensation is None:
            record.status = StepStatus.COMPENSATED  # nothing to undo
            record.compensated_at = _utc_now()
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
                    "compensation",
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
            record.compensated_at = _utc_now()
            await self._save()
            return

    async def _attempt(
        self,
        step: SagaStep,
        plan: _CallPlan,
        kind: str,
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
        label = step.name if kind == "step" else f"{step.name}:compensation"
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

    def _start_span(self, kind: str, step_name: str, attempt: int) -> TraceSpan:
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

    async def _call(self, plan: _CallPlan, args: list[Any], kwargs: dict[str, Any]) -> Any:
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
        state.updated_at = _utc_now()
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
