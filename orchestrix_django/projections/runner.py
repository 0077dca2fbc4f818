"""Projections run by Django: read models kept up to date from the global log.

Declare a projection once, at module level, and list it in
``ORCHESTRIX["PROJECTIONS"]``::

    balances = DjangoProjection("account-balances", retry_policy=FixedDelay(2, 0.5))

    @balances.on(AccountOpened)
    def opened(event: AccountOpened) -> None:
        AccountBalance.objects.create(account_id=event.account_id, balance=event.initial_deposit)

    @balances.on_reset
    def clear() -> None:
        AccountBalance.objects.all().delete()

The runner (:func:`catch_up`, used by the Celery tasks and ``orchestrix_run``)
advances a projection from its checkpoint in batches over the global log.
Each batch is one transaction: the handlers' writes to models in the same
database and the new checkpoint commit together, so a crash at any point
neither skips nor repeats an event. The projection's state row is locked for
the batch, so only one runner advances a projection at a time, however many
workers run. A failed handler attempt leaves no partial writes behind, and
its retries (``retry_policy``) start clean: a batch of plain-function
handlers first runs straight in the batch's transaction, in the runner's
thread (the fast path); if any handler raises, that transaction rolls back
and the batch runs again with a savepoint per handler attempt, the retry
policy and the failure mode, so it stops at the failing event exactly as if
the fast path had never run. (A
handler's effects outside the database, such as an e-mail, may therefore
happen twice for the events before a failing one in its batch; keep such
effects out of projections, or make them idempotent.)

When a handler still fails after its retries, the event is parked in the
dead-letter queue and, by ``failure_mode``:

* ``"park-and-stop"`` (the default): the projection stops before the event
  (paused, unhealthy, ``last_error`` set) until an operator retries or skips
  it (:func:`retry_parked`, :func:`skip_parked`, the admin, the commands).
  Later events wait, so the read model never sees them out of order.
* ``"park-and-continue"``: the projection moves past the event and goes on;
  it is unhealthy until its parked events are retried or discarded.

Other projections are never affected by one projection's failure.

A database fault (:mod:`orchestrix_django.storage.faults`: a lost connection, a
deadlock), in a handler or in the runner's own queries, is not a handler
failure: the batch rolls back, and :func:`catch_up` logs it, counts it,
reconnects and runs the batch again after a capped backoff, until the
database is back. The retry policy is not used up, nothing is parked and the
projection stays healthy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.core.signals import setting_changed
from django.db import transaction

from orchestrix.core.common.exceptions import (
    EventDecodeError,
    HandlerError,
    OrchestrixError,
    UnknownEventTypeError,
)
from orchestrix.core.common.observability import ObservabilityHooks, TracingProvider
from orchestrix.core.common.retry import RetryPolicy
from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.eventsourcing.projection import ProjectionEngine, ProjectionState
from orchestrix.core.messaging.dead_letter import DeadLetter, DeadLetterStatus
from orchestrix.core.messaging.message import Event
from orchestrix_django.models import ActiveProjection, EventRecord
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.dead_letters import DjangoAsyncDeadLetterQueue, DjangoDeadLetterQueue
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.faults import FaultComponent, FaultRetry, is_database_fault
from orchestrix_django.storage.projection_state import (
    DjangoAsyncProjectionStateStore,
    DjangoProjectionStateStore,
)

__all__ = [
    "CatchUpResult",
    "DjangoProjection",
    "FailureMode",
    "NotCaughtUpError",
    "ProjectionStatus",
    "RebuildError",
    "RebuildResult",
    "SwitchResult",
    "active_projection",
    "active_read_model",
    "batch_size_override",
    "catch_up",
    "check_rebuild",
    "get_projection",
    "is_stalled",
    "pause",
    "projection_status",
    "projections",
    "read_model_name",
    "rebuild",
    "reset_projection",
    "resume",
    "retry_parked",
    "skip_parked",
    "stalled_after",
    "switch_projection",
]

logger = logging.getLogger("orchestrix.projections")

FailureMode = Literal["park-and-stop", "park-and-continue"]


class DjangoProjection(ProjectionEngine):
    """A :class:`ProjectionEngine` whose state, dead letters and handlers live in Django.

    Handlers may be plain functions using the ORM (they run in the runner's
    thread and transaction; see the module docs for savepoints) or coroutine
    functions.
    ``batch_size`` defaults to ``ORCHESTRIX["PROJECTION_BATCH_SIZE"]``.
    """

    def __init__(
        self,
        projection_id: str,
        *,
        retry_policy: RetryPolicy | None = None,
        failure_mode: FailureMode = "park-and-stop",
        batch_size: int | None = None,
        tracing: TracingProvider | None = None,
        observability: ObservabilityHooks | None = None,
    ) -> None:
        if failure_mode not in ("park-and-stop", "park-and-continue"):
            raise ValueError(
                f"failure_mode must be 'park-and-stop' or 'park-and-continue', got {failure_mode!r}"
            )
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(
            projection_id,
            DjangoAsyncProjectionStateStore(),
            tracing,
            observability=observability,
            retry_policy=retry_policy,
            dead_letters=DjangoAsyncDeadLetterQueue(),
            on_failure="park" if failure_mode == "park-and-continue" else "stop",
            # The runner commits the read model and the checkpoint together.
            checkpoint_every=None,
        )
        self.failure_mode: FailureMode = failure_mode
        self._batch_size = batch_size
        # One engine per process; runners in several threads take turns.
        self.thread_lock = threading.RLock()
        self._failed_directly: _DirectFailure | None = None

    @property
    def batch_size(self) -> int:
        """Events read and applied per transaction."""
        return self._batch_size or int(orchestrix_settings.PROJECTION_BATCH_SIZE)

    def on_reset(self, hook: Any) -> Any:
        """Decorator: clear the read model on reset/replay (sync ORM code is fine)."""
        if iscoroutinefunction(hook):
            super().on_reset(hook)
        else:
            super().on_reset(sync_to_async(hook, thread_sensitive=True))
        return hook

    def is_fault(self, error: BaseException) -> bool:
        """Database faults (see ``storage.faults``) are not handler failures."""
        return is_database_fault(error)

    async def invoke_handler(self, handler: Callable[[Any], Any], event: Event) -> None:
        """Run a sync handler in the runner's thread, inside a savepoint."""
        failed = self._failed_directly
        if failed is not None and failed.event.id == event.id and failed.handler is handler:
            # This attempt already ran, and failed, in the runner's batch
            # savepoint (rolled back since): it counts as the first attempt.
            self._failed_directly = None
            raise failed.error
        if iscoroutinefunction(handler):
            await handler(event)
            return
        await sync_to_async(_in_savepoint, thread_sensitive=True)(handler, event)

    def runs_batches_directly(self) -> bool:
        """Whether the runner may apply whole batches itself (see :func:`catch_up`).

        True when every handler is a plain function, no tracing provider wants
        a span per event, and no subclass changed how handlers are invoked.
        """
        return (
            self.tracing is None
            and type(self).invoke_handler is DjangoProjection.invoke_handler
            and not any(iscoroutinefunction(handler) for handler in self.handlers())
        )


def _in_savepoint(handler: Callable[[Any], Any], event: Event) -> None:
    with transaction.atomic(using=str(orchestrix_settings.DATABASE)):
        handler(event)


# ---------------------------------------------------------------- the registry

_registry_lock = threading.Lock()
_projections: dict[str, DjangoProjection] | None = None


def projections() -> dict[str, DjangoProjection]:
    """The projections of ``ORCHESTRIX["PROJECTIONS"]``, by id (imported once)."""
    global _projections
    with _registry_lock:
        if _projections is None:
            loaded: dict[str, DjangoProjection] = {}
            for projection in orchestrix_settings.PROJECTIONS:
                if not isinstance(projection, DjangoProjection):
                    raise TypeError(
                        f"ORCHESTRIX['PROJECTIONS'] lists {projection!r}, not a DjangoProjection"
                    )
                if projection.projection_id in loaded:
                    raise ValueError(f"two projections are called {projection.projection_id!r}")
                loaded[projection.projection_id] = projection
            _projections = loaded
        return _projections


def reset_registry() -> None:
    """Forget the loaded projections (the settings changed)."""
    global _projections
    with _registry_lock:
        _projections = None


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "ORCHESTRIX":
        reset_registry()


setting_changed.connect(_reload, dispatch_uid="orchestrix_django.projections.runner")


def get_projection(projection_id: str) -> DjangoProjection:
    """The configured projection ``projection_id``; KeyError says which ids exist."""
    found = projections().get(projection_id)
    if found is None:
        known = ", ".join(sorted(projections())) or "none"
        raise KeyError(f"no projection {projection_id!r} is configured (known: {known})")
    return found


# ---------------------------------------------------------------- running


@dataclass(frozen=True)
class CatchUpResult:
    """What one :func:`catch_up` call did."""

    projection_id: str
    applied: int
    batches: int
    position: int
    head: int
    stopped: str | None = None
    #: Database faults ridden out (each rolled a batch back; it ran again).
    faults: int = 0

    @property
    def lag(self) -> int:
        """Events the projection is still behind the head of the log (approximately)."""
        return max(self.head - self.position, 0)


def catch_up(
    projection: DjangoProjection,
    *,
    max_batches: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_batch: Callable[[CatchUpResult], None] | None = None,
) -> CatchUpResult:
    """Advance ``projection`` to the head of the log, one transaction per batch.

    Stops early after ``max_batches``, when ``should_stop()`` says so (checked
    between batches: the batch in hand always commits or rolls back whole), when
    the projection is paused, or when a handler fails under ``park-and-stop``.
    ``on_batch`` is called after each committed batch (progress bars). A
    batch that meets a database fault rolls back and runs again once the
    database answers (see the module docs; ``should_stop`` cuts the wait short).
    """
    store = DjangoEventStore()
    hooks = projection.observability
    faults = FaultRetry(
        FaultComponent.PROJECTION,
        projection.projection_id,
        using=str(orchestrix_settings.DATABASE),
        observability=hooks,
        should_stop=should_stop,
    )
    applied = batches = 0
    stopped: str | None = None
    position = 0
    with projection.thread_lock:
        while True:
            if should_stop is not None and should_stop():
                stopped = "asked to stop"
                break
            if max_batches is not None and batches >= max_batches:
                break
            started = time.perf_counter()
            try:
                try:
                    outcome = _run_batch(projection, store)
                except _Redo as redo:
                    # The batch's fast path failed and its transaction rolled back:
                    # the same batch again, carefully (see _apply).
                    outcome = _run_batch(projection, store, redo.failure)
            except Exception as error:
                if faults.absorb(error):
                    continue  # rolled back whole: the same batch again
                raise
            faults.succeeded()
            batches += 1 if outcome.read else 0
            applied += outcome.applied
            position = outcome.position
            if outcome.read:
                hooks.record_projection_batch(
                    projection.projection_id, outcome.read, time.perf_counter() - started
                )
            if outcome.stopped is not None:
                stopped = outcome.stopped
                break
            if on_batch is not None and outcome.read:
                on_batch(
                    CatchUpResult(
                        projection.projection_id,
                        applied,
                        batches,
                        position,
                        faults.call(store.head_position),
                    )
                )
            if outcome.read < projection.batch_size:
                break
    head = faults.call(store.head_position)
    hooks.gauge(
        "orchestrix.projections.lag",
        float(max(head - position, 0)),
        {"projection": projection.projection_id},
    )
    return CatchUpResult(
        projection.projection_id, applied, batches, position, head, stopped, faults.total
    )


@dataclass(frozen=True)
class _BatchOutcome:
    read: int
    applied: int
    position: int
    stopped: str | None


def _run_batch(
    projection: DjangoProjection, store: DjangoEventStore, redo: _DirectFailure | None = None
) -> _BatchOutcome:
    states = DjangoProjectionStateStore()
    projection_id = projection.projection_id
    with transaction.atomic(using=states.using), states.lock(projection_id) as locked:
        if locked.paused:
            position = locked.state.last_processed_position
            return _BatchOutcome(0, 0, position, "paused")
        state: ProjectionState = locked.state
        if projection.runs_batches_directly() and state.is_healthy:
            projection.adopt_state(state)  # the row just locked: no second read
        else:
            state = async_to_sync(projection.initialize)()
        after = state.last_processed_position
        unreadable: EventDecodeError | UnknownEventTypeError | None = None
        # Only the events the projection handles are decoded: one it does not
        # handle can't stop it, however broken its stored data.
        wanted = projection.handles
        try:
            batch = store.read_all(
                after_position=after, limit=projection.batch_size, decode_only=wanted
            )
        except (EventDecodeError, UnknownEventTypeError) as error:
            # A stored event it handles but cannot read: apply the events
            # before it, then park it (and stop there, or go on past it).
            unreadable = error
            bad_position = getattr(error, "position", None)
            batch = (
                store.read_all(
                    after_position=after,
                    limit=projection.batch_size,
                    before_position=bad_position,
                    decode_only=wanted,
                )
                if bad_position is not None
                else []
            )
        if not batch and unreadable is None:
            return _BatchOutcome(0, 0, after, None)
        try:
            applied = _apply(projection, states, batch, redo)
        except HandlerError as error:
            # The events before the failing one, and the unhealthy state, are
            # applied and saved: this transaction commits them.
            state = projection.get_state()
            failing = _first_after(batch, state.last_processed_position)
            _park_and_stop(projection, states, failing, error)
            return _BatchOutcome(
                len(batch),
                _count_applied(batch, after, state),
                state.last_processed_position,
                "handler failed",
            )
        position = projection.get_state().last_processed_position
        if unreadable is not None:
            if projection.failure_mode == "park-and-continue" and unreadable.position is not None:
                _pass_unreadable(projection, states, unreadable, unreadable.position)
                # The page ended at the unreadable event, not at the head: read on.
                return _BatchOutcome(projection.batch_size, applied, unreadable.position, None)
            _halt(projection, states, unreadable, position)
            return _BatchOutcome(len(batch), applied, position, "undecodable event")
        return _BatchOutcome(len(batch), applied, position, None)


@dataclass(frozen=True)
class _DirectFailure:
    """A handler that raised while the runner applied a batch directly."""

    index: int
    event: Event
    handler: Callable[[Any], Any] | None  # None: it was not a handler that raised
    error: Exception


class _Redo(Exception):
    """The fast path of a batch failed: roll its transaction back, run it carefully."""

    def __init__(self, failure: _DirectFailure) -> None:
        super().__init__(f"a handler raised at event {failure.event.id}")
        self.failure = failure


def _apply(
    projection: DjangoProjection,
    states: DjangoProjectionStateStore,
    batch: list[StoredEvent],
    redo: _DirectFailure | None = None,
) -> int:
    """Apply ``batch`` (in the batch's transaction); returns how many events it applied.

    The fast path first (:func:`_apply_directly`), with no savepoint: when one
    of its handlers raises, :class:`_Redo` rolls the whole batch transaction
    back and :func:`catch_up` runs the batch again with ``redo``, the failure.
    Then the events before the failing one are applied directly (in a
    savepoint), and the rest goes through the engine, one savepoint per
    handler attempt, with the retry policy and the failure mode. The failed
    attempt counts as the failing handler's first attempt, so the handler
    runs exactly as often as without the fast path and the batch stops (or
    parks) at the same event in the same state.
    """
    if not batch:
        return 0
    if not projection.runs_batches_directly():
        return int(async_to_sync(projection.process_events)(batch))
    if redo is None:
        failure = _apply_directly(projection, batch, savepoint=False)
        if failure is None:
            return _mark_applied(projection, states, batch)
        raise _Redo(failure)
    if redo.index >= len(batch) or batch[redo.index].event.id != redo.event.id:
        # Another runner moved the projection in between: a different batch.
        failure = _apply_directly(projection, batch)
        if failure is None:
            return _mark_applied(projection, states, batch)
        redo = failure
    applied = 0
    rest = batch
    before = batch[: redo.index]
    if not before or _apply_directly(projection, before) is None:
        if before:
            applied = _mark_applied(projection, states, before)
        rest = batch[redo.index :]
        if redo.handler is not None:
            projection._failed_directly = redo
    try:
        return applied + int(async_to_sync(projection.process_events)(rest))
    finally:
        projection._failed_directly = None


def _mark_applied(
    projection: DjangoProjection, states: DjangoProjectionStateStore, batch: list[StoredEvent]
) -> int:
    """Move the checkpoint past ``batch``, applied directly, and save it (in this thread)."""
    if not projection.get_state().is_healthy and projection.on_failure == "park":
        # Health then depends on the parked letters: the engine settles it.
        return int(async_to_sync(projection.mark_applied)(batch))
    applied = projection.advance_past(batch)
    if applied:
        states.update_locked(projection.get_state())
        projection.mark_saved()
    return applied


def _apply_directly(
    projection: DjangoProjection, batch: list[StoredEvent], *, savepoint: bool = True
) -> _DirectFailure | None:
    """Run the batch's sync handlers in this thread, in one savepoint (or none).

    The fast path of a batch: one savepoint for the whole batch instead of one
    per handler call, and no thread hop per call. Returns None when every
    handler succeeded, or which one raised (the savepoint is rolled back then;
    without one, the caller must roll the transaction back).
    """
    record: StoredEvent | None = None
    handler: Callable[[Any], Any] | None = None
    routes: dict[tuple[type[Event], str], tuple[Callable[[Any], Any], ...]] = {}
    scope = (
        transaction.atomic(using=str(orchestrix_settings.DATABASE))
        if savepoint
        else contextlib.nullcontext()
    )
    try:
        with scope:
            for record in batch:
                event = record.event
                handler = None
                key = (type(event), event.type)
                handlers = routes.get(key)
                if handlers is None:
                    handlers = routes[key] = projection.handlers_for(event)
                for handler in handlers:
                    handler(event)
                handler = None
    except Exception as error:
        if projection.is_fault(error):
            raise  # not the handler's failure: the whole batch rolls back, catch_up retries it
        assert record is not None
        logger.debug(
            "projection %s: %s raised on the event at position %s; applying its batch "
            "again with a savepoint per handler attempt",
            projection.projection_id,
            getattr(handler, "__qualname__", handler),
            record.position,
        )
        index = next(i for i, candidate in enumerate(batch) if candidate is record)
        return _DirectFailure(index, record.event, handler, error)
    return None


def _count_applied(batch: list[StoredEvent], before: int, state: ProjectionState) -> int:
    return sum(1 for r in batch if before < r.position <= state.last_processed_position)


def _first_after(batch: Iterable[StoredEvent], position: int) -> StoredEvent | None:
    return next((record for record in batch if record.position > position), None)


def _park_and_stop(
    projection: DjangoProjection,
    states: DjangoProjectionStateStore,
    failing: StoredEvent | None,
    error: HandlerError,
) -> None:
    if failing is not None:
        DjangoDeadLetterQueue().park(
            failing.event,
            error.original_error,
            source=projection.dead_letter_source,
            attempts=projection.retry_policy.max_retries + 1,
            position=failing.position,
            stream_id=failing.stream_id,
            version=failing.version,
            handler=error.handler_name,
        )
    states.set_paused(projection.projection_id, True)
    logger.error(
        "projection %s stopped at %s: %s; retry or skip the parked event to resume",
        projection.projection_id,
        f"position {failing.position}" if failing else "its checkpoint",
        error,
    )


def _halt(
    projection: DjangoProjection,
    states: DjangoProjectionStateStore,
    error: EventDecodeError | UnknownEventTypeError,
    after: int,
) -> None:
    """Park an event the projection handles but this process cannot decode, and stop there."""
    reason = f"cannot read the event after position {after}: {error}"
    _park_unreadable(projection, states, error, reason, after)
    states.set_paused(projection.projection_id, True)
    logger.error("projection %s stopped: %s", projection.projection_id, reason)


def _pass_unreadable(
    projection: DjangoProjection,
    states: DjangoProjectionStateStore,
    error: EventDecodeError | UnknownEventTypeError,
    position: int,
) -> None:
    """Park an event the projection handles but cannot decode, and go on past it."""
    reason = f"cannot read the event at position {position}, parked: {error}"
    _park_unreadable(projection, states, error, reason, position)
    logger.error("projection %s: %s", projection.projection_id, reason)


def _park_unreadable(
    projection: DjangoProjection,
    states: DjangoProjectionStateStore,
    error: EventDecodeError | UnknownEventTypeError,
    reason: str,
    checkpoint: int,
) -> None:
    """Park an undecodable event (a dead letter naming the error and position), unhealthy.

    The checkpoint is saved at ``checkpoint``: before the event, or past it.
    """
    state = projection.get_state()
    moved = checkpoint != state.last_processed_position
    state = dataclasses.replace(
        state,
        last_processed_position=checkpoint,
        last_processed_event_id=None if moved else state.last_processed_event_id,
        is_healthy=False,
        error_count=state.error_count + 1,
        last_error=reason,
    )
    states.save_state(state)
    projection.adopt_state(state)
    DjangoDeadLetterQueue().park(
        None,
        error,
        source=projection.dead_letter_source,
        position=error.position,
        stream_id=error.stream_id,
        version=error.version,
        message_type=error.event_type or "unknown",
    )
    projection.observability.record_projection_error(projection.projection_id, reason)


# ---------------------------------------------------------------- operations


@dataclass(frozen=True)
class ProjectionStatus:
    """What an operator wants to know about a projection."""

    projection_id: str
    position: int
    head: int
    lag: int
    healthy: bool
    paused: bool
    last_error: str | None
    error_count: int
    events_processed: int
    parked: int
    updated_at: datetime | None
    #: Events wait and nothing advanced it for ``stalled_after()`` seconds (see :func:`is_stalled`).
    stalled: bool = False


def stalled_after() -> float:
    """Seconds after which a projection with waiting events and no progress is stalled.

    ``ORCHESTRIX["STALLED_AFTER"]``, or four catch-up intervals when it is None:
    with Celery a projection no commit wakes waits for the periodic catch-up
    (one interval, two when a wake-up was lost), and ``orchestrix_run`` polls
    far more often.
    """
    configured = orchestrix_settings.STALLED_AFTER
    if configured is not None:
        return float(configured)
    return 4 * float(orchestrix_settings.CATCH_UP_INTERVAL)


def is_stalled(position: int, moved_at: datetime | None, *, now: datetime | None = None) -> bool:
    """Whether a projection at ``position``, whose checkpoint last moved at ``moved_at``
    (None: never), is stalled: nothing advanced it for :func:`stalled_after` seconds
    while the event after its checkpoint was stored longer ago than that.

    A runner at work moves the checkpoint every batch, and a runner that is
    merely idle has no event waiting that long; so this holds only when no
    runner advances it (none runs it, or its worker never receives its tasks),
    or when one batch has taken that long. The same rule on every database
    and in both modes, from the state row's ``updated_at`` and the log's
    ``recorded_at`` (so the clocks of the writers, the runners and this
    process must agree to well within ``stalled_after()``); a paused
    projection is the operator's choice, never stalled.
    """
    limit = (now or datetime.now(UTC)) - timedelta(seconds=stalled_after())
    if moved_at is not None and moved_at > limit:
        return False
    waiting_since = (
        EventRecord.objects.using(str(orchestrix_settings.DATABASE))
        .filter(position__gt=position)
        .order_by("position")
        .values_list("recorded_at", flat=True)
        .first()
    )
    return waiting_since is not None and waiting_since <= limit


def projection_status(projection_id: str, *, head: int | None = None) -> ProjectionStatus:
    """Position, lag, health, parked events of ``projection_id``, and whether it is stalled."""
    states = DjangoProjectionStateStore()
    state = states.load_state(projection_id)
    if head is None:
        head = DjangoEventStore().head_position()
    position = state.last_processed_position if state else 0
    paused = states.is_paused(projection_id) if state else False
    return ProjectionStatus(
        projection_id=projection_id,
        position=position,
        head=head,
        lag=max(head - position, 0),
        healthy=state.is_healthy if state else True,
        paused=paused,
        last_error=state.last_error if state else None,
        error_count=state.error_count if state else 0,
        events_processed=state.events_processed if state else 0,
        parked=DjangoDeadLetterQueue().count(source=f"projection:{projection_id}"),
        updated_at=state.updated_at if state else None,
        stalled=not paused
        and head > position
        and is_stalled(position, state.updated_at if state else None),
    )


def pause(projection: DjangoProjection) -> None:
    """Stop runners from advancing ``projection`` until :func:`resume`."""
    DjangoProjectionStateStore().set_paused(projection.projection_id, True)


def resume(projection: DjangoProjection) -> None:
    """Let runners advance ``projection`` again."""
    DjangoProjectionStateStore().set_paused(projection.projection_id, False)


def reset_projection(projection: DjangoProjection) -> None:
    """Clear the read model (``on_reset`` hooks) and the checkpoint, in one transaction.

    The projection then rebuilds from the start of the log on its next catch-up.
    """
    states = DjangoProjectionStateStore()
    with (
        projection.thread_lock,
        transaction.atomic(using=states.using),
        states.lock(projection.projection_id),
    ):
        async_to_sync(projection.reset)()
        states.set_paused(projection.projection_id, False)


def _parked_letter(projection: DjangoProjection, dead_letter_id: str) -> DeadLetter:
    letter = DjangoDeadLetterQueue().get(dead_letter_id)
    if letter is None or letter.source != projection.dead_letter_source:
        raise OrchestrixError(
            f"dead letter {dead_letter_id!r} is not one of projection "
            f"{projection.projection_id!r}'s"
        )
    if letter.status != DeadLetterStatus.PARKED:
        raise OrchestrixError(f"dead letter {dead_letter_id!r} is {letter.status}, not parked")
    return letter


def retry_parked(projection: DjangoProjection, dead_letter_id: str) -> CatchUpResult | None:
    """Apply a parked event of ``projection`` again.

    ``park-and-stop``: the projection resumes from the event (which fails
    again, parked anew, if the cause is not fixed) and catches up.
    ``park-and-continue``: the event's handlers run once more; the letter is
    marked retried on success (a :class:`HandlerError` otherwise).
    """
    _parked_letter(projection, dead_letter_id)
    states = DjangoProjectionStateStore()
    if projection.failure_mode == "park-and-continue":
        with (
            projection.thread_lock,
            transaction.atomic(using=states.using),
            states.lock(projection.projection_id),
        ):
            async_to_sync(projection.retry_dead_letter)(dead_letter_id)
        return None
    with transaction.atomic(using=states.using):
        DjangoDeadLetterQueue().mark_retried(dead_letter_id)
        states.set_paused(projection.projection_id, False)
    return catch_up(projection)


def skip_parked(projection: DjangoProjection, dead_letter_id: str) -> CatchUpResult | None:
    """Give up on a parked event: discard it and, under ``park-and-stop``, move past it.

    The event's effects will be missing from the read model: the skip is logged.
    """
    letter = _parked_letter(projection, dead_letter_id)
    states = DjangoProjectionStateStore()
    with (
        projection.thread_lock,
        transaction.atomic(using=states.using),
        states.lock(projection.projection_id) as locked,
    ):
        DjangoDeadLetterQueue().discard(dead_letter_id)
        if projection.failure_mode == "park-and-stop":
            state = locked.state
            if letter.position is not None and letter.position > state.last_processed_position:
                states.save_state(
                    dataclasses.replace(
                        state,
                        last_processed_position=letter.position,
                        last_processed_event_id=letter.message_id,
                        is_healthy=True,
                    )
                )
            states.set_paused(projection.projection_id, False)
        logger.warning(
            "projection %s skipped %s at position %s (dead letter %s) without applying it",
            projection.projection_id,
            letter.message_type,
            letter.position,
            dead_letter_id,
        )
    if projection.failure_mode == "park-and-stop":
        return catch_up(projection)
    return None


# ---------------------------------------------------------------- zero-downtime rebuild
#
# A projection whose code changed is rebuilt beside the live one instead of in
# place: declare the new version as a second DjangoProjection that writes to its
# own tables (``DjangoProjection("balances-v2")``), list both in
# ``ORCHESTRIX["PROJECTIONS"]`` and deploy. The runners build the new one from
# the start of the log while the old one goes on serving. ``orchestrix_rebuild
# balances-v2 --replace balances`` (or :func:`rebuild`) catches it up and, once
# it is at the head of the log, switches in one transaction: readers asking
# :func:`active_projection` ("balances") get the new id, and the old one is
# paused (its tables are left for you to drop, with its code, in a later
# deploy). Switching back is the same command the other way round.
#
# A read model is named after its first projection: without a switch,
# ``active_projection("balances") == "balances"``.


class RebuildError(OrchestrixError):
    """A rebuild or switch that cannot be done as asked (the message says why and what to do)."""


class NotCaughtUpError(RebuildError):
    """The new projection is still behind the head of the log: the switch did not happen."""

    def __init__(self, projection_id: str, position: int, head: int) -> None:
        self.projection_id = projection_id
        self.position = position
        self.head = head
        super().__init__(
            f"projection {projection_id!r} is at position {position}, {head - position} "
            f"behind the head of the log ({head}): not switched"
        )


@dataclass(frozen=True)
class SwitchResult:
    """A switch :func:`switch_projection` made: ``name`` is now served by ``projection_id``."""

    name: str
    projection_id: str
    replaced_projection_id: str
    position: int
    head: int


@dataclass(frozen=True)
class RebuildResult:
    """What :func:`rebuild` did: the last catch-up, and the switch unless it stopped first."""

    projection_id: str
    applied: int
    last: CatchUpResult
    switched: SwitchResult | None
    stopped: str | None = None


def active_projection(name: str) -> str:
    """The id of the projection that serves the read model ``name`` (``name`` until a switch).

    Read-side code picks its tables with it::

        v2 = active_projection("balances") == "balances-v2"
        model = AccountBalanceV2 if v2 else AccountBalance

    (or with :func:`active_read_model`). One primary-key lookup per call.
    """
    using = str(orchestrix_settings.DATABASE)
    found = (
        ActiveProjection.objects.using(using)
        .filter(pk=name)
        .values_list("projection_id", flat=True)
    )
    return next(iter(found), name)


_T = TypeVar("_T")


def active_read_model(name: str, choices: dict[str, _T]) -> _T:
    """The entry of ``choices`` (projection id → anything) for the projection serving ``name``.

    ``active_read_model("balances", {"balances": AccountBalance, "balances-v2": AccountBalanceV2})``
    """
    projection_id = active_projection(name)
    try:
        return choices[projection_id]
    except KeyError:
        raise RebuildError(
            f"read model {name!r} is served by projection {projection_id!r}, "
            f"which is not among the choices ({', '.join(sorted(choices))})"
        ) from None


def read_model_name(projection_id: str) -> str:
    """The read model ``projection_id`` serves: its switch row's name, or its own id."""
    using = str(orchestrix_settings.DATABASE)
    found = ActiveProjection.objects.using(using).filter(projection_id=projection_id)
    return next(iter(found.values_list("name", flat=True)), projection_id)


def check_rebuild(new: DjangoProjection, replace: DjangoProjection) -> str:
    """The read model a switch from ``replace`` to ``new`` is about; RebuildError if none.

    ``replace`` must be the projection serving its read model now, and
    ``new`` must serve none yet.
    """
    if new.projection_id == replace.projection_id:
        raise RebuildError(
            f"--replace names the projection being built ({new.projection_id!r}): "
            "give the id of the live projection the new one replaces"
        )
    using = str(orchestrix_settings.DATABASE)
    served = ActiveProjection.objects.using(using).filter(projection_id=new.projection_id).first()
    if served is not None:
        raise RebuildError(
            f"projection {new.projection_id!r} already serves read model {served.name!r}: "
            "nothing to switch"
        )
    name = read_model_name(replace.projection_id)
    current = active_projection(name)
    if current != replace.projection_id:
        raise RebuildError(
            f"read model {name!r} is served by {current!r}, not {replace.projection_id!r}: "
            f"replace {current!r} instead"
        )
    return name


def _check_not_stopped(projection: DjangoProjection) -> None:
    status = projection_status(projection.projection_id)
    if not status.healthy or status.parked:
        raise RebuildError(
            f"projection {projection.projection_id!r} is unhealthy "
            f"({status.parked} parked event(s); last error: {status.last_error}): "
            "retry or skip its parked events first"
        )


def switch_projection(
    new: DjangoProjection, *, replace: DjangoProjection, max_lag: int = 0
) -> SwitchResult:
    """Make ``new`` serve the read model ``replace`` serves, and pause ``replace``.

    Only when ``new`` is healthy, not paused and at most ``max_lag`` events
    behind the head of the log (raises :class:`NotCaughtUpError` otherwise:
    catch it up and try again). One transaction, under ``new``'s state row
    lock: readers see either the old projection or the caught-up new one.
    """
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    states = DjangoProjectionStateStore()
    with (
        transaction.atomic(using=states.using),
        # First: on SQLite this write takes the database lock for the check below.
        states.lock(new.projection_id) as locked,
    ):
        name = check_rebuild(new, replace)
        if locked.paused:
            raise RebuildError(f"projection {new.projection_id!r} is paused: resume it first")
        _check_not_stopped(new)
        position = locked.state.last_processed_position
        head = DjangoEventStore(states.using).head_position()
        if head - position > max_lag:
            raise NotCaughtUpError(new.projection_id, position, head)
        ActiveProjection.objects.using(states.using).update_or_create(
            name=name,
            defaults={
                "projection_id": new.projection_id,
                "replaced_projection_id": replace.projection_id,
                "switched_at": datetime.now(UTC),
            },
        )
        states.set_paused(replace.projection_id, True)
    logger.warning(
        "read model %s switched from projection %s to %s at position %s (head %s); %s is paused",
        name,
        replace.projection_id,
        new.projection_id,
        position,
        head,
        replace.projection_id,
    )
    return SwitchResult(name, new.projection_id, replace.projection_id, position, head)


def rebuild(
    new: DjangoProjection,
    *,
    replace: DjangoProjection,
    reset: bool = False,
    max_lag: int = 0,
    timeout: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_batch: Callable[[CatchUpResult], None] | None = None,
) -> RebuildResult:
    """Build ``new`` beside the live ``replace``, then switch readers to it (zero downtime).

    ``replace`` keeps serving (and its runners keep it up to date) while
    ``new`` catches up from its checkpoint (from the start of the log with
    ``reset=True``, which clears its read model first). Once ``new`` is
    within ``max_lag`` events of the head, :func:`switch_projection` switches.
    Events written meanwhile are caught up too. When ``timeout`` seconds
    have passed, when ``should_stop()`` says so (both checked between
    batches) or when ``new`` stops at a failing event, the result has
    ``switched=None`` and ``stopped`` says why: nothing was switched, and
    running again continues from where it stopped. ``on_batch`` gets each
    batch's progress, with ``applied`` counted over the whole rebuild.
    """
    check_rebuild(new, replace)
    status = projection_status(new.projection_id)
    if reset:
        reset_projection(new)
    else:
        _check_not_stopped(new)
        if status.paused:
            # A healthy, paused projection: one retired by an earlier switch,
            # now switched back to, or one an operator paused. Being asked to
            # serve it, the runners must advance it.
            resume(new)
    deadline = None if timeout is None else time.monotonic() + timeout
    applied = 0

    def timed_out() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def stop() -> bool:
        return timed_out() or (should_stop is not None and should_stop())

    def progress(result: CatchUpResult) -> None:
        if on_batch is not None:
            on_batch(dataclasses.replace(result, applied=applied + result.applied))

    while True:
        last = catch_up(new, should_stop=stop, on_batch=progress)
        applied += last.applied
        if last.stopped is not None:
            reason = last.stopped
            if reason == "asked to stop" and timed_out():
                reason = "timed out"
            return RebuildResult(new.projection_id, applied, last, None, reason)
        try:
            switched = switch_projection(new, replace=replace, max_lag=max_lag)
        except NotCaughtUpError:
            # Events were written since the catch-up read the head: go again.
            continue
        return RebuildResult(new.projection_id, applied, last, switched)


@contextmanager
def batch_size_override(projection: DjangoProjection, batch_size: int | None) -> Iterator[None]:
    """Within the block, ``projection`` reads ``batch_size`` events per batch (None: unchanged).

    For the commands' ``--batch-size``; the engine is process-wide, so other
    runners of this process see the change too while the block lasts.
    """
    if batch_size is None:
        yield
        return
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    previous = projection._batch_size
    projection._batch_size = batch_size
    try:
        yield
    finally:
        projection._batch_size = previous
