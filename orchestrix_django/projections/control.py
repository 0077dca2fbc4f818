"""Operator controls of a projection: pause, resume, reset, retry or skip a parked event."""

from __future__ import annotations

import dataclasses
import logging

from asgiref.sync import async_to_sync
from django.db import transaction

from orchestrix.core.common.exceptions import OrchestrixError
from orchestrix.core.messaging.dead_letter import DeadLetter, DeadLetterStatus
from orchestrix_django.projections.definition import DjangoProjection
from orchestrix_django.projections.runner import CatchUpResult, catch_up
from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue
from orchestrix_django.storage.projection_state import DjangoProjectionStateStore

__all__ = ["pause", "reset_projection", "resume", "retry_parked", "skip_parked"]

logger = logging.getLogger("orchestrix.projections")


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
