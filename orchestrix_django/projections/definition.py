"""``DjangoProjection``: a read model's handlers, with its checkpoint and dead letters in Django.

How the runner applies its handlers (a transaction per batch, failure modes)
is told in docs/django.md#projections.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.db import transaction

from orchestrix.core.common.exceptions import HandlerError
from orchestrix.core.common.observability import ObservabilityHooks, TracingProvider
from orchestrix.core.common.retry import RetryPolicy
from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.eventsourcing.projection import OnFailure, ProjectionEngine
from orchestrix.core.messaging.dead_letter import describe_error_type
from orchestrix.core.messaging.message import Event
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.dead_letters import DjangoAsyncDeadLetterQueue, DjangoDeadLetterQueue
from orchestrix_django.storage.faults import is_database_fault
from orchestrix_django.storage.projection_state import DjangoAsyncProjectionStateStore

__all__ = ["DjangoProjection", "FailureMode", "batch_size_override", "run_handler"]

logger = logging.getLogger("orchestrix.projections")

FailureMode = Literal["park-and-stop", "park-and-continue"]


class DjangoProjection(ProjectionEngine):
    """A :class:`ProjectionEngine` whose state, dead letters and handlers live in Django.

    Handlers are plain functions using the ORM (they run in the runner's thread
    and transaction) or coroutine functions. ``batch_size`` defaults to
    ``ORCHESTRIX["PROJECTION_BATCH_SIZE"]``.
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
            on_failure=OnFailure.PARK if failure_mode == "park-and-continue" else OnFailure.STOP,
            # The runner commits the read model and the checkpoint together.
            checkpoint_every=None,
        )
        self.failure_mode: FailureMode = failure_mode
        self._batch_size = batch_size
        # One engine per process; runners in several threads take turns.
        self.thread_lock = threading.RLock()

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
        """The engine's async API: a sync handler runs in the runner's thread, in a savepoint."""
        if iscoroutinefunction(handler):
            await handler(event)
            return
        await sync_to_async(run_handler, thread_sensitive=True)(handler, event)

    def apply_event(
        self, record: StoredEvent, failed: tuple[Callable[[Any], Any], Exception] | None = None
    ) -> bool:
        """Apply one stored event with the retry policy and the failure mode, in this thread.

        Each handler attempt runs in a savepoint. ``failed`` is a handler whose
        first attempt on this event already failed (in a savepoint rolled back
        since) and its error: that attempt counts. Returns True when applied,
        False when parked (``park-and-continue``); raises :class:`HandlerError`
        when the projection stops at the event. The state moves, unsaved.
        """
        event = record.event
        with self.span(
            "projection.handle_event",
            None,
            projection_id=self.projection_id,
            event_type=event.type,
            event_id=event.id,
            position=record.position,
        ):
            for registration in self.registrations_for(event):
                prior = None
                if failed is not None and failed[0] is registration.handler:
                    prior = failed[1]
                outcome = self._attempt(registration.handler, event, prior)
                if outcome is not None:
                    error, attempts = outcome
                    return self._give_up(record, registration.name, error, attempts)
            self.advance(event, record.position, applied=True)
            return True

    def _attempt(
        self, handler: Callable[[Any], Any], event: Event, prior: Exception | None
    ) -> tuple[Exception, int] | None:
        """Run ``handler`` as the retry policy allows; None on success, else the last error."""
        policy = self.retry_policy
        attempts = 0
        while True:
            attempts += 1
            if prior is not None and attempts == 1:
                error = prior
            else:
                try:
                    run_handler(handler, event)
                except Exception as raised:
                    if self.is_fault(raised):
                        raise  # the whole batch rolls back; the runner runs it again
                    error = raised
                else:
                    return None
            if not (policy.is_retryable(error) and policy.should_retry(attempts)):
                return error, attempts
            delay = policy.get_delay(attempts)
            if delay > 0:
                time.sleep(delay)

    def _give_up(self, record: StoredEvent, name: str, error: Exception, attempts: int) -> bool:
        """A handler failed for good: park the event and go on, or stop (HandlerError)."""
        event = record.event
        where = f"position {record.position}" + (
            f" ({record.stream_id} v{record.version})" if record.stream_id else ""
        )
        description = (
            f"{name} failed on {event.type} {event.id} at {where} after "
            f"{attempts} attempt(s): {describe_error_type(error)}: {error}"
        )
        self.record_failure(description, error)
        if self.on_failure is OnFailure.PARK:
            try:
                DjangoDeadLetterQueue().park(
                    event,
                    error,
                    source=self.dead_letter_source,
                    attempts=attempts,
                    position=record.position,
                    stream_id=record.stream_id,
                    version=record.version,
                    handler=name,
                )
            except Exception as park_error:
                # Could not park: the event must not be passed over, so stop.
                logger.exception("projection %s could not park the event", self.projection_id)
                self._state = dataclasses.replace(
                    self.get_state(),
                    last_error=f"{description} (parking failed: "
                    f"{describe_error_type(park_error)}: {park_error})",
                )
            else:
                self.advance(event, record.position, applied=False)
                return False
        raise HandlerError(event.type, name, error) from error


def run_handler(handler: Callable[[Any], Any], event: Event) -> None:
    """One attempt of ``handler`` on ``event``, in a savepoint: a failure leaves no writes."""
    with transaction.atomic(using=str(orchestrix_settings.DATABASE)):
        if iscoroutinefunction(handler):
            async_to_sync(handler)(event)
        else:
            handler(event)


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
