"""Projections: read models built from the event log, with a durable checkpoint.

A :class:`ProjectionEngine` routes events to the handlers registered with
:meth:`~ProjectionEngine.on` and remembers, in a
:class:`~orchestrix.core.eventsourcing.projection_state.ProjectionState` kept by
a state store, how far it got. Positions and idempotency, failures, faults and
when the checkpoint is saved: see docs/core-api.md ("Projections").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, NamedTuple, TypeVar, cast

from orchestrix.core.common.clock import utc_now
from orchestrix.core.common.exceptions import HandlerError
from orchestrix.core.common.observability import (
    ObservabilityHooks,
    TraceSpan,
    TracingProvider,
    get_observability,
)
from orchestrix.core.common.retry import NoRetry, RetryPolicy, retry_async
from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.eventsourcing.projection_checkpoint import Checkpoint, unpack
from orchestrix.core.eventsourcing.projection_routes import (
    EventKey,
    HandlerRoutes,
    Registration,
    callable_name,
)
from orchestrix.core.eventsourcing.projection_state import (
    AsyncProjectionStateStore,
    ProjectionState,
    ProjectionStateStore,
)
from orchestrix.core.messaging import dead_letter as dead_letter_module
from orchestrix.core.messaging.dead_letter import (
    AnyDeadLetterQueue,
    DeadLetter,
    DeadLetterNotFoundError,
    describe_error_type,
)
from orchestrix.core.messaging.message import Event, Message
from orchestrix.infrastructure.memory.projection_state import InMemoryProjectionStateStore

# ProjectionState, ProjectionStateStore and InMemoryProjectionStateStore are
# importable from here, as the core API reference documents.
__all__ = [
    "InMemoryProjectionStateStore",
    "OnFailure",
    "ProjectionEngine",
    "ProjectionState",
    "ProjectionStateStore",
]

_logger = logging.getLogger(__name__)

_H = TypeVar("_H", bound=Callable[..., Any])
_R = TypeVar("_R", bound=Callable[[], Any])
_T = TypeVar("_T")

#: How many recently processed event ids an engine remembers (plain events only).
DEFAULT_DEDUPE_WINDOW = 10_000


class OnFailure(enum.StrEnum):
    """What a projection does with an event whose handler keeps failing."""

    #: The checkpoint stays before the event and ``HandlerError`` is raised.
    STOP = "stop"
    #: The event is parked in the dead-letter queue and the projection goes on.
    PARK = "park"


# ---------------------------------------------------------------- engine internals


class _Outcome(enum.Enum):
    APPLIED = "applied"
    SKIPPED = "skipped"
    PARKED = "parked"


class _Failure(NamedTuple):
    registration: Registration
    error: Exception
    attempts: int


class _UnlessFault(RetryPolicy):
    """A handler's retry policy, except that a fault ends its retries at once."""

    def __init__(self, policy: RetryPolicy, is_fault: Callable[[BaseException], bool]) -> None:
        self.policy = policy
        self.is_fault = is_fault
        self.max_retries = policy.max_retries

    def should_retry(self, attempt: int) -> bool:
        """As the handler's policy."""
        return self.policy.should_retry(attempt)

    def get_delay(self, attempt: int) -> float:
        """As the handler's policy."""
        return self.policy.get_delay(attempt)

    def is_retryable(self, error: BaseException) -> bool:
        """Not a fault (the runner retries the whole batch), and retryable by the policy."""
        return not self.is_fault(error) and self.policy.is_retryable(error)


async def _settle(value: Awaitable[_T] | _T) -> _T:
    """``value``, awaited first when it is awaitable (sync or async stores and queues)."""
    if inspect.isawaitable(value):
        return cast(_T, await value)
    return value


# ---------------------------------------------------------------- engine


class ProjectionEngine:
    """Builds a read model from events, remembering its checkpoint in a state store.

    ``state_store`` may be a :class:`ProjectionStateStore` or an
    :class:`AsyncProjectionStateStore`. ``tracing``, when given, receives a
    span per batch and per event. Keyword-only options:

    * ``observability``: where errors and progress are reported (default: the
      process-wide hooks of :func:`get_observability`, looked up at each report);
    * ``retry_policy``: how often a failing handler is retried (default: never);
    * ``dead_letters`` and ``on_failure`` (``"stop"`` or ``"park"``): what
      happens to an event whose handler keeps failing (:class:`OnFailure`);
    * ``checkpoint_every``: save the state after this many applied events
      within :meth:`process_events` (None: once per batch);
    * ``dedupe_window``: how many plain-event ids are remembered to skip duplicates.

    One engine advances its projection one call at a time: concurrent calls on
    the same engine (from one event loop: an engine is not shared between
    threads) wait for each other.
    """

    def __init__(
        self,
        projection_id: str,
        state_store: ProjectionStateStore | AsyncProjectionStateStore,
        tracing: TracingProvider | None = None,
        *,
        observability: ObservabilityHooks | None = None,
        retry_policy: RetryPolicy | None = None,
        dead_letters: AnyDeadLetterQueue | None = None,
        on_failure: OnFailure | Literal["stop", "park"] = OnFailure.STOP,
        checkpoint_every: int | None = 1,
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
    ) -> None:
        if not isinstance(projection_id, str) or not projection_id:
            raise ValueError(f"projection_id must be a non-empty string, got {projection_id!r}")
        if on_failure not in tuple(OnFailure):
            raise ValueError(f"on_failure must be 'stop' or 'park', got {on_failure!r}")
        if on_failure == OnFailure.PARK and dead_letters is None:
            raise ValueError("on_failure='park' needs a dead-letter queue (dead_letters=...)")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 or None, got {checkpoint_every}")
        if dedupe_window < 0:
            raise ValueError(f"dedupe_window must be >= 0, got {dedupe_window}")
        self.projection_id = projection_id
        self.state_store = state_store
        self.tracing = tracing
        self.retry_policy: RetryPolicy = retry_policy if retry_policy is not None else NoRetry()
        self.dead_letters = dead_letters
        self.on_failure = OnFailure(on_failure)
        self.checkpoint_every = checkpoint_every
        self._observability = observability
        self._routes = HandlerRoutes()
        self._reset_hooks: list[Callable[[], Any]] = []
        self._checkpoint = Checkpoint(
            projection_id, dedupe_window, recover_on_success=self.on_failure is OnFailure.STOP
        )
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._lock_owner: asyncio.Task[Any] | None = None

    @property
    def dedupe_window(self) -> int:
        """How many plain-event ids are remembered to skip duplicates."""
        return self._checkpoint.dedupe_window

    def __repr__(self) -> str:
        return f"<ProjectionEngine {self.projection_id!r}>"

    # -- registration -------------------------------------------------------

    def on(self, event_type: EventKey) -> Callable[[_H], _H]:
        """Decorator: run the function for each event of ``event_type``.

        ``event_type`` is an event class (its subclasses match too) or a
        ``type`` string. The function takes the event and may be a coroutine
        function. Several functions may handle one type; they run in
        registration order. The function is returned unchanged.
        """
        if isinstance(event_type, str):
            if not event_type:
                raise ValueError("on() needs a non-empty event type string")
        elif not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise TypeError(f"on() takes an Event subclass or a type string, got {event_type!r}")

        def register(handler: _H) -> _H:
            if not callable(handler):
                raise TypeError(f"a projection handler must be callable, got {handler!r}")
            self._routes.add(event_type, handler)
            return handler

        return register

    def on_reset(self, hook: _R) -> _R:
        """Decorator: call ``hook()`` (sync or async) to clear the read model on reset/replay.

        Hooks run in registration order, before the checkpoint is reset.
        """
        if not callable(hook):
            raise TypeError(f"a reset hook must be callable, got {hook!r}")
        self._reset_hooks.append(hook)
        return hook

    def handled_types(self) -> tuple[EventKey, ...]:
        """The registered event classes and type strings, in registration order, once each."""
        return self._routes.keys()

    def handlers(self) -> tuple[Callable[[Any], Any], ...]:
        """Every registered handler, in registration order, once each."""
        return self._routes.handlers()

    def handlers_for(self, event: Event) -> tuple[Callable[[Any], Any], ...]:
        """The handlers ``event`` is routed to, in the order they run (see :meth:`on`)."""
        return tuple(registration.handler for registration in self._routes.for_event(event))

    def registrations_for(self, event: Event) -> tuple[Registration, ...]:
        """The registrations (handler and name) that receive ``event``, in registration order."""
        return self._routes.for_event(event)

    def advance(self, event: Event, position: int, *, applied: bool) -> None:
        """Move the checkpoint past ``event`` at ``position`` (unsaved); ``applied`` counts it."""
        self._checkpoint.advance(event, position, applied=applied)

    def handles(self, event_type: str, event_class: type[Event] | None) -> bool:
        """Whether events of ``event_type``, decoded as ``event_class``, reach a handler.

        ``event_class`` is None when no class is registered for the type: only
        a handler for its ``type`` string or for every event (``on(Event)``)
        would take it. A reader of a stored log decodes only the events its
        projection handles, so that one it can't decode stops only the
        projections that need it; the others pass over it like any event no
        handler wants.
        """
        return self._routes.handles(event_type, event_class)

    # -- state --------------------------------------------------------------

    @property
    def dead_letter_source(self) -> str:
        """The ``source`` of this projection's dead letters: ``projection:<id>``."""
        return f"projection:{self.projection_id}"

    @property
    def observability(self) -> ObservabilityHooks:
        """The hooks this engine reports to."""
        return self._observability if self._observability is not None else get_observability()

    def get_state(self) -> ProjectionState:
        """The current state (a fresh, unsaved one until :meth:`initialize` loaded it)."""
        return self._checkpoint.current()

    def is_healthy(self) -> bool:
        """Whether the last failure, if any, has been resolved (docs/core-api.md, "Projections")."""
        return self.get_state().is_healthy

    def lag(self, head_position: int) -> int:
        """How many positions the checkpoint is behind ``head_position`` (never negative).

        Also sets the gauge ``orchestrix.projections.lag``.
        """
        lag = max(0, head_position - self.get_state().last_processed_position)
        self.observability.gauge(
            "orchestrix.projections.lag", float(lag), {"projection": self.projection_id}
        )
        return lag

    async def initialize(self) -> ProjectionState:
        """Load the saved state, creating (and saving) a fresh one if there is none.

        The other async methods call it on first use; calling it again reloads.
        """
        async with self._exclusive():
            await self._load()
            return self.get_state()

    # -- processing ---------------------------------------------------------

    async def handle_event(self, event: Event | StoredEvent) -> bool:
        """Process one event and save the state. Returns whether its handlers were applied.

        False means it was skipped (already processed) or parked.
        """
        async with self._exclusive():
            await self._ensure_loaded()
            outcome = await self._process_one(event, None)
            if self._checkpoint.dirty:
                await self._save()
            if outcome is _Outcome.APPLIED:
                state = self.get_state()
                self.observability.record_projection_processed(
                    self.projection_id, 1, state.last_processed_position
                )
            await self._settle_health()
            return outcome is _Outcome.APPLIED

    async def process_events(self, events: Iterable[Event | StoredEvent]) -> int:
        """Process a batch in order; returns how many events moved the checkpoint.

        Skipped and parked events are not counted. Raises
        :class:`~orchestrix.core.common.exceptions.HandlerError` on a failure
        with ``on_failure="stop"`` (the events before it stay applied and saved).
        """
        async with self._exclusive():
            await self._ensure_loaded()
            return await self._process_batch(events, "projection.process_events")

    async def mark_applied(self, events: Sequence[Event | StoredEvent]) -> int:
        """Move the checkpoint past ``events``, whose handlers the caller ran itself.

        For runners with a faster path than :meth:`process_events` (a database
        runner applying a whole batch of sync handlers in one savepoint): the
        state advances as if :meth:`process_events` had applied them (see
        :meth:`advance_past`) and is saved once. Returns how many events moved
        the checkpoint.
        """
        async with self._exclusive():
            await self._ensure_loaded()
            applied = self.advance_past(events)
            if self._checkpoint.dirty:
                await self._save()
            await self._settle_health()
            return applied

    def advance_past(self, events: Sequence[Event | StoredEvent]) -> int:
        """Advance the in-memory state past ``events``, applied by the caller; no save.

        The synchronous core of :meth:`mark_applied`, for a runner that saves
        the state itself (in the transaction of the read model's writes): the
        position, last event id, counters, health and the duplicate window move
        as :meth:`process_events` would move them. Events already behind the
        checkpoint are not counted. Returns how many events moved it; the
        caller saves :meth:`get_state` (until then the engine saves it at its
        next operation).
        """
        checkpoint = self._checkpoint
        applied = checkpoint.advance_past(events)
        if applied:
            position = checkpoint.current().last_processed_position
            self.observability.record_projection_processed(self.projection_id, applied, position)
        return applied

    def adopt_state(self, state: ProjectionState) -> None:
        """Take ``state``, read from the state store by the caller, as the current state.

        For a runner that reads (and locks) the state itself: the same as
        :meth:`initialize` finding ``state`` in the store, without a second read.
        """
        if state.projection_id != self.projection_id:
            raise ValueError(
                f"adopt_state() got the state of {state.projection_id!r} for {self.projection_id!r}"
            )
        self._checkpoint.take_loaded(state)

    def mark_saved(self) -> None:
        """Tell the engine that the caller saved :meth:`get_state` (see :meth:`advance_past`)."""
        self._checkpoint.dirty = False

    async def replay(self, events: Iterable[Event | StoredEvent]) -> int:
        """Rebuild from scratch: :meth:`reset`, then process ``events``."""
        async with self._exclusive():
            await self._ensure_loaded()
            await self._reset()
            return await self._process_batch(events, "projection.replay")

    async def reset(self) -> None:
        """Clear the read model (the ``on_reset`` hooks) and the checkpoint.

        The state starts afresh (position 0, healthy, counters at 0) and is
        saved; this projection's parked dead letters are discarded, because
        the replay that follows offers their events again. If a hook fails,
        the state is marked unhealthy with the error and the error is raised:
        the read model is then half cleared, so reset again.
        """
        async with self._exclusive():
            await self._ensure_loaded()
            await self._reset()

    async def retry_dead_letter(self, dead_letter_id: str) -> None:
        """Run the handlers of a parked event of this projection again, once each.

        On success the letter is marked retried (and the projection becomes
        healthy if it was its last parked letter); on failure the letter stays
        parked with the new error and ``attempts + 1``, and
        :class:`~orchestrix.core.common.exceptions.HandlerError` is raised.
        The checkpoint does not move: it is already past the event.
        """
        queue = self.dead_letters
        if queue is None:
            raise ValueError(f"{self!r} has no dead-letter queue")
        async with self._exclusive():
            await self._ensure_loaded()
            letter: DeadLetter | None = await _settle(queue.get(dead_letter_id))
            if letter is None:
                raise DeadLetterNotFoundError(dead_letter_id)
            if letter.source != self.dead_letter_source:
                raise ValueError(
                    f"dead letter {dead_letter_id!r} belongs to {letter.source!r}, "
                    f"not to {self.dead_letter_source!r}"
                )
            failed: list[Registration] = []

            async def reapply(message: Message) -> None:
                if not isinstance(message, Event):
                    raise TypeError(f"a projection handles events, got {type(message).__name__}")
                for registration in self._routes.for_event(message):
                    failed[:] = [registration]
                    await self.invoke_handler(registration.handler, message)
                failed.clear()

            with self.span("projection.retry_dead_letter", None, dead_letter_id=dead_letter_id):
                try:
                    await dead_letter_module.retry_async(queue, dead_letter_id, reapply)
                except Exception as error:
                    if not failed or self.is_fault(error):
                        raise  # not a handler failure (unknown id, a fault, ...)
                    self.record_failure(
                        f"retry of dead letter {dead_letter_id} failed in {failed[0].name}: "
                        f"{describe_error_type(error)}: {error}",
                        error,
                    )
                    await self._save()
                    raise HandlerError(letter.message_type, failed[0].name, error) from error
            state = self.get_state()
            self._checkpoint.state = dataclasses.replace(
                state, events_processed=state.events_processed + 1, updated_at=utc_now()
            )
            await self._save()
            await self._settle_health()

    async def skip_event(self, event: Event | StoredEvent) -> bool:
        """Move the checkpoint past ``event`` without running its handlers.

        An operator's decision for the event a stopped projection fails on
        (the admin's "skip"): its effects will be missing from the read model.
        Returns False when the event is already behind the checkpoint. With
        ``on_failure="stop"`` the projection becomes healthy again; ``last_error``
        and ``error_count`` are kept, and the skip is logged as a warning.
        """
        async with self._exclusive():
            await self._ensure_loaded()
            unpacked, log_position, _stream_id, _version = unpack(event)
            position = self._checkpoint.next_position(unpacked, log_position)
            if position is None:
                return False
            self._checkpoint.advance(unpacked, position, applied=False)
            if self.on_failure is OnFailure.STOP:
                self._checkpoint.state = dataclasses.replace(self.get_state(), is_healthy=True)
            await self._save()
            _logger.warning(
                "projection %s skipped %s %s at position %s without applying it",
                self.projection_id,
                unpacked.type,
                unpacked.id,
                position,
            )
            await self._settle_health()
            return True

    def is_fault(self, error: BaseException) -> bool:
        """Whether ``error`` is a fault of the infrastructure rather than of the handler.

        A fault ends the handler's attempts at once, without counting as a
        failure, and propagates to the caller (docs/core-api.md, "Projections"). False for
        every error here; runners whose handlers use a database override it.
        """
        return False

    async def invoke_handler(self, handler: Callable[[Any], Any], event: Event) -> None:
        """Call one handler with one event, awaiting it if it returns an awaitable.

        Each attempt of the retry policy is one call. Override to wrap each
        attempt, e.g. in a database savepoint so a failed attempt leaves no
        partial writes.
        """
        result = handler(event)
        if inspect.isawaitable(result):
            await result

    # -- internals: the unit of work -----------------------------------------

    async def _process_batch(self, events: Iterable[Event | StoredEvent], operation: str) -> int:
        applied = 0
        since_save = 0
        with self.span(operation, None, projection_id=self.projection_id) as span:
            try:
                for item in events:
                    outcome = await self._process_one(item, span)
                    if outcome is _Outcome.APPLIED:
                        applied += 1
                        since_save += 1
                        if (
                            self.checkpoint_every is not None
                            and since_save >= self.checkpoint_every
                        ):
                            await self._save()
                            since_save = 0
            except HandlerError:
                raise  # the failure path saved the state already
            except Exception as error:
                # Whatever stopped the batch (a broken iterator, ...), the events
                # applied so far are applied: keep their checkpoint. Not after a
                # fault: the state store is likely out of reach too, and the
                # runner retries the batch from the saved checkpoint.
                if self._checkpoint.dirty and not self.is_fault(error):
                    await self._save_quietly()
                raise
            finally:
                state = self.get_state()
                if applied:
                    self.observability.record_projection_processed(
                        self.projection_id, applied, state.last_processed_position
                    )
                if span is not None:
                    span.set_attribute("applied", applied)
                    span.set_attribute("position", state.last_processed_position)
            if self._checkpoint.dirty:
                await self._save()
            await self._settle_health()
        return applied

    async def _process_one(self, item: Event | StoredEvent, parent: TraceSpan | None) -> _Outcome:
        event, log_position, stream_id, version = unpack(item)
        position = self._checkpoint.next_position(event, log_position)
        if position is None:
            return _Outcome.SKIPPED
        with self.span(
            "projection.handle_event",
            parent,
            projection_id=self.projection_id,
            event_type=event.type,
            event_id=event.id,
            position=position,
        ) as span:
            failure = await self._apply(event)
            if failure is None:
                self._checkpoint.advance(event, position, applied=True)
                if span is not None:
                    span.set_attribute("outcome", _Outcome.APPLIED.value)
                return _Outcome.APPLIED
            if span is not None:
                span.record_error(failure.error)
            outcome = await self._fail(event, position, log_position, stream_id, version, failure)
            if span is not None:
                span.set_attribute("outcome", outcome.value)
            return outcome

    async def _apply(self, event: Event) -> _Failure | None:
        for registration in self._routes.for_event(event):
            failure = await self._call_with_retry(registration, event)
            if failure is not None:
                return failure
        return None

    async def _call_with_retry(self, registration: Registration, event: Event) -> _Failure | None:
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            await self.invoke_handler(registration.handler, event)

        try:
            await retry_async(attempt, policy=_UnlessFault(self.retry_policy, self.is_fault))
        except Exception as error:
            if self.is_fault(error):
                raise
            return _Failure(registration, error, attempts)
        return None

    async def _fail(
        self,
        event: Event,
        position: int,
        log_position: int | None,
        stream_id: str | None,
        version: int | None,
        failure: _Failure,
    ) -> _Outcome:
        registration, error, attempts = failure
        where = f"position {position}" + (f" ({stream_id} v{version})" if stream_id else "")
        description = (
            f"{registration.name} failed on {event.type} {event.id} at {where} after "
            f"{attempts} attempt(s): {describe_error_type(error)}: {error}"
        )
        self.record_failure(description, error)
        if self.on_failure is OnFailure.PARK and self.dead_letters is not None:
            try:
                await _settle(
                    self.dead_letters.park(
                        event,
                        error,
                        source=self.dead_letter_source,
                        attempts=attempts,
                        position=log_position,
                        stream_id=stream_id,
                        version=version,
                        handler=registration.name,
                    )
                )
            except Exception as park_error:
                # Could not park: the event must not be passed over, so stop.
                _logger.exception("projection %s could not park the event", self.projection_id)
                state = self.get_state()
                self._checkpoint.state = dataclasses.replace(
                    state,
                    last_error=f"{description} (parking failed: "
                    f"{describe_error_type(park_error)}: {park_error})",
                )
            else:
                self._checkpoint.advance(event, position, applied=False)
                await self._save()
                return _Outcome.PARKED
        await self._save()
        raise HandlerError(event.type, registration.name, error) from error

    def record_failure(self, description: str, error: Exception) -> None:
        """A handler's final failure: the state turns unhealthy; the error is logged and counted."""
        state = self.get_state()
        self._checkpoint.state = dataclasses.replace(
            state,
            error_count=state.error_count + 1,
            is_healthy=False,
            last_error=description,
            updated_at=utc_now(),
        )
        self._checkpoint.dirty = True
        _logger.error("projection %s: %s", self.projection_id, description, exc_info=error)
        self.observability.record_projection_error(self.projection_id, description)

    async def _reset(self) -> None:
        for hook in self._reset_hooks:
            try:
                result = hook()
                if inspect.isawaitable(result):
                    await result
            except Exception as error:
                if self.is_fault(error):
                    raise
                self.record_failure(
                    f"reset failed in {callable_name(hook)}: {describe_error_type(error)}: {error}",
                    error,
                )
                await self._save()
                raise
        self._checkpoint.start_afresh()
        await self._save()
        _logger.info("projection %s reset", self.projection_id)
        queue = self.dead_letters
        if queue is not None:
            letters: list[DeadLetter] = await _settle(queue.list(source=self.dead_letter_source))
            for letter in letters:
                await _settle(queue.discard(letter.id))

    async def _settle_health(self) -> None:
        """With ``park``, become healthy again once no letter of this projection is parked."""
        state = self.get_state()
        if state.is_healthy or self.on_failure is not OnFailure.PARK or self.dead_letters is None:
            return
        parked: int = await _settle(self.dead_letters.count(source=self.dead_letter_source))
        if parked == 0:
            self._checkpoint.state = dataclasses.replace(
                state, is_healthy=True, updated_at=utc_now()
            )
            self._checkpoint.dirty = True
            await self._save()

    # -- internals: the state store -----------------------------------------

    async def _ensure_loaded(self) -> None:
        if self._checkpoint.state is None:
            await self._load()

    async def _load(self) -> None:
        result = self.state_store.load_state(self.projection_id)
        if inspect.isawaitable(result):
            result = await result
        loaded: ProjectionState | None = result
        if loaded is None:
            self._checkpoint.state = ProjectionState(projection_id=self.projection_id)
            self._checkpoint.dirty = True
            await self._save()
        else:
            if loaded.projection_id != self.projection_id:
                raise ValueError(
                    f"the state store returned the state of {loaded.projection_id!r} "
                    f"for {self.projection_id!r}"
                )
            self._checkpoint.take_loaded(loaded)
        await self._settle_health()

    async def _save(self) -> None:
        result = self.state_store.save_state(self.get_state())
        if inspect.isawaitable(result):
            await result
        self._checkpoint.dirty = False

    async def _save_quietly(self) -> None:
        try:
            await self._save()
        except Exception:
            _logger.exception("projection %s could not save its state", self.projection_id)

    # -- internals: concurrency and tracing -----------------------------------

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """Serialise the engine's operations (within one event loop)."""
        task = asyncio.current_task()
        if task is not None and task is self._lock_owner:
            raise RuntimeError(
                f"{self!r} was called from inside its own handler or reset hook; "
                "a projection cannot process events re-entrantly"
            )
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            # asyncio locks belong to one loop; tests and sync callers run
            # the engine under successive asyncio.run() loops.
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        async with self._lock:
            self._lock_owner = task
            try:
                yield
            finally:
                self._lock_owner = None

    @contextlib.contextmanager
    def span(
        self, operation: str, parent: TraceSpan | None, **attributes: Any
    ) -> Iterator[TraceSpan | None]:
        """A trace span of the configured provider around the block (None without one)."""
        tracing = self.tracing
        if tracing is None:
            yield None
            return
        try:
            span = tracing.start_span(operation)
        except Exception:
            _logger.exception("tracing provider failed to start %s", operation)
            span = TraceSpan(operation=operation)
        if parent is not None:
            span.parent_span_id = parent.span_id
            span.trace_id = parent.trace_id
        span.attributes.update(attributes)
        try:
            yield span
        except BaseException as error:
            span.record_error(error)
            raise
        finally:
            try:
                span.end()
            except Exception:
                _logger.exception("tracing provider failed to end %s", operation)
