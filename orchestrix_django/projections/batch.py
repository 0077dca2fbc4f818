"""Applying one batch of events to a projection, inside the runner's batch transaction.

Every handler of the batch runs in one savepoint. When one raises, the
savepoint rolls back, the events before the failing one are applied again
(one savepoint), the failing event gets the retry policy and the failure mode
(:meth:`DjangoProjection.apply_event`, the failed attempt counting as the
first), and the rest of the batch goes on the same way.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction
from django.db import transaction

from orchestrix.core.common.exceptions import (
    EventDecodeError,
    HandlerError,
    UnknownEventTypeError,
)
from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.eventsourcing.projection import OnFailure, ProjectionState
from orchestrix.core.messaging.message import Event
from orchestrix_django.projections.definition import DjangoProjection
from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue
from orchestrix_django.storage.projection_state import DjangoProjectionStateStore

__all__ = [
    "apply_batch",
    "count_applied",
    "first_after",
    "halt",
    "park_and_stop",
    "pass_unreadable",
    "settle_health",
]

logger = logging.getLogger("orchestrix.projections")

_Route = tuple[tuple[Callable[[Any], Any], Callable[[Any], Any]], ...]


@dataclass(frozen=True)
class _Failure:
    """A handler (None: not a handler) that raised on ``batch[index]``."""

    index: int
    handler: Callable[[Any], Any] | None
    error: Exception


def apply_batch(
    projection: DjangoProjection, states: DjangoProjectionStateStore, batch: list[StoredEvent]
) -> int:
    """Apply ``batch`` and save the checkpoint; returns how many events moved it.

    Raises :class:`HandlerError` when the projection stops at a failing event:
    the events before it and the unhealthy state are saved (in the caller's
    transaction, which commits them).
    """
    applied = 0
    rest = batch
    with projection.span(
        "projection.process_events", None, projection_id=projection.projection_id
    ) as span:
        while rest:
            failure = _run_handlers(projection, states, rest)
            while failure is not None and failure.index > 0:
                earlier = _run_handlers(projection, states, rest[: failure.index])
                if earlier is None:
                    break
                failure = earlier
            if failure is None:
                applied += _advance(projection, states, rest)
                break
            if failure.index:
                applied += _advance(projection, states, rest[: failure.index])
            record = rest[failure.index]
            failed = None if failure.handler is None else (failure.handler, failure.error)
            try:
                if projection.apply_event(record, failed):
                    applied += 1
                    projection.observability.record_projection_processed(
                        projection.projection_id, 1, record.position
                    )
            except HandlerError:
                _save(projection, states)
                raise
            _save(projection, states)
            rest = rest[failure.index + 1 :]
        settle_health(projection, states)
        if span is not None:
            span.set_attribute("applied", applied)
            span.set_attribute("position", projection.get_state().last_processed_position)
    return applied


def _run_handlers(
    projection: DjangoProjection, states: DjangoProjectionStateStore, batch: list[StoredEvent]
) -> _Failure | None:
    """Run every handler of ``batch`` once, in one savepoint; None, or which one raised."""
    record: StoredEvent | None = None
    handler: Callable[[Any], Any] | None = None
    routes: dict[tuple[type[Event], str], _Route] = {}
    try:
        with transaction.atomic(using=states.using):
            for record in batch:
                event = record.event
                handler = None
                key = (type(event), event.type)
                route = routes.get(key)
                if route is None:
                    route = routes[key] = _route(projection, event)
                for handler, call in route:  # noqa: B007 (the except names it)
                    call(event)
                handler = None
    except Exception as error:
        if projection.is_fault(error):
            raise  # not the handler's failure: the whole batch rolls back, catch_up retries it
        assert record is not None
        logger.debug(
            "projection %s: %s raised on the event at position %s; applying the event "
            "with a savepoint per handler attempt",
            projection.projection_id,
            getattr(handler, "__qualname__", handler),
            record.position,
        )
        index = next(i for i, candidate in enumerate(batch) if candidate is record)
        return _Failure(index, handler, error)
    return None


def _route(projection: DjangoProjection, event: Event) -> _Route:
    """The handlers of ``event``, each with how to call it from this thread."""
    return tuple(
        (handler, async_to_sync(handler) if iscoroutinefunction(handler) else handler)
        for handler in projection.handlers_for(event)
    )


def _advance(
    projection: DjangoProjection, states: DjangoProjectionStateStore, records: list[StoredEvent]
) -> int:
    """Move the checkpoint past ``records``, whose handlers ran, and save it."""
    moved = projection.advance_past(records)
    if moved:
        _save(projection, states)
    return moved


def _save(projection: DjangoProjection, states: DjangoProjectionStateStore) -> None:
    states.update_locked(projection.get_state())
    projection.mark_saved()


def settle_health(projection: DjangoProjection, states: DjangoProjectionStateStore) -> None:
    """``park-and-continue``: healthy again once none of the projection's events is parked."""
    state = projection.get_state()
    if state.is_healthy or projection.on_failure is not OnFailure.PARK:
        return
    if DjangoDeadLetterQueue().count(source=projection.dead_letter_source) == 0:
        projection.adopt_state(
            dataclasses.replace(state, is_healthy=True, updated_at=datetime.now(UTC))
        )
        states.update_locked(projection.get_state())


def count_applied(batch: list[StoredEvent], before: int, state: ProjectionState) -> int:
    return sum(1 for r in batch if before < r.position <= state.last_processed_position)


def first_after(batch: Iterable[StoredEvent], position: int) -> StoredEvent | None:
    return next((record for record in batch if record.position > position), None)


def park_and_stop(
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


def halt(
    projection: DjangoProjection,
    states: DjangoProjectionStateStore,
    error: EventDecodeError | UnknownEventTypeError,
    after: int,
) -> None:
    """Park an event the projection handles but this process cannot decode, and stop there."""
    reason = f"cannot read the event after position {after}: {error}"
    park_unreadable(projection, states, error, reason, after)
    states.set_paused(projection.projection_id, True)
    logger.error("projection %s stopped: %s", projection.projection_id, reason)


def pass_unreadable(
    projection: DjangoProjection,
    states: DjangoProjectionStateStore,
    error: EventDecodeError | UnknownEventTypeError,
    position: int,
) -> None:
    """Park an event the projection handles but cannot decode, and go on past it."""
    reason = f"cannot read the event at position {position}, parked: {error}"
    park_unreadable(projection, states, error, reason, position)
    logger.error("projection %s: %s", projection.projection_id, reason)


def park_unreadable(
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
