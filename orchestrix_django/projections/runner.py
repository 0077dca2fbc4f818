"""The projection runner: :func:`catch_up` advances a projection in batches over the global log.

One transaction per batch, under the projection's state row lock: the read
model's writes and the checkpoint commit together (docs/django.md#projections).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction

from orchestrix.core.common.exceptions import (
    EventDecodeError,
    HandlerError,
    UnknownEventTypeError,
)
from orchestrix_django.projections.batch import (
    apply_batch,
    count_applied,
    first_after,
    halt,
    park_and_stop,
    pass_unreadable,
    settle_health,
)
from orchestrix_django.projections.definition import DjangoProjection
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.faults import FaultComponent, FaultRetry
from orchestrix_django.storage.projection_state import DjangoProjectionStateStore

__all__ = ["FAILURE_STOPS", "CatchUpResult", "StopReason", "catch_up"]


class StopReason(enum.StrEnum):
    """Why a catch-up (or a rebuild) stopped before the head of the log."""

    ASKED_TO_STOP = "asked to stop"
    PAUSED = "paused"
    HANDLER_FAILED = "handler failed"
    UNDECODABLE_EVENT = "undecodable event"
    #: A rebuild's timeout ran out (only in :class:`RebuildResult`).
    TIMED_OUT = "timed out"


#: The stop reasons that need an operator (retry or skip the parked event).
FAILURE_STOPS = frozenset({StopReason.HANDLER_FAILED, StopReason.UNDECODABLE_EVENT})


@dataclass(frozen=True)
class CatchUpResult:
    """What one :func:`catch_up` call did."""

    projection_id: str
    applied: int
    batches: int
    position: int
    head: int
    stopped: StopReason | None = None
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
    stopped: StopReason | None = None
    position = 0
    with projection.thread_lock:
        while True:
            if should_stop is not None and should_stop():
                stopped = StopReason.ASKED_TO_STOP
                break
            if max_batches is not None and batches >= max_batches:
                break
            started = time.perf_counter()
            try:
                outcome = _run_batch(projection, store)
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
    stopped: StopReason | None


def _run_batch(projection: DjangoProjection, store: DjangoEventStore) -> _BatchOutcome:
    states = DjangoProjectionStateStore()
    projection_id = projection.projection_id
    with transaction.atomic(using=states.using), states.lock(projection_id) as locked:
        if locked.paused:
            position = locked.state.last_processed_position
            return _BatchOutcome(0, 0, position, StopReason.PAUSED)
        projection.adopt_state(locked.state)  # the row just locked: no second read
        settle_health(projection, states)
        after = locked.state.last_processed_position
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
            applied = apply_batch(projection, states, batch)
        except HandlerError as error:
            # The events before the failing one, and the unhealthy state, are
            # applied and saved: this transaction commits them.
            state = projection.get_state()
            failing = first_after(batch, state.last_processed_position)
            park_and_stop(projection, states, failing, error)
            return _BatchOutcome(
                len(batch),
                count_applied(batch, after, state),
                state.last_processed_position,
                StopReason.HANDLER_FAILED,
            )
        position = projection.get_state().last_processed_position
        if unreadable is not None:
            if projection.failure_mode == "park-and-continue" and unreadable.position is not None:
                pass_unreadable(projection, states, unreadable, unreadable.position)
                # The page ended at the unreadable event, not at the head: read on.
                return _BatchOutcome(projection.batch_size, applied, unreadable.position, None)
            halt(projection, states, unreadable, position)
            return _BatchOutcome(len(batch), applied, position, StopReason.UNDECODABLE_EVENT)
        return _BatchOutcome(len(batch), applied, position, None)
