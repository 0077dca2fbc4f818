"""Send the Orchestrix Celery tasks by name: projection wake-ups (one pending at most) and sagas.

A commit that stored events sends ``orchestrix.advance_projection`` to each
interested projection unless a wake-up is pending (a marker in
``ORCHESTRIX["WAKE_UP_CACHE"]``). A broker or cache that can't be reached is
logged, never raised: the periodic catch-up covers it. Tasks are sent by name,
so this module imports no task module (and Celery only when it sends). See
docs/celery.md, "How it works".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from django.core.cache import caches

from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.messaging.message import Event
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.signals import events_committed

__all__ = [
    "DISPATCH_UID",
    "HEADER_NAMES",
    "ID_FIELDS",
    "PUBLISH_RETRY_POLICY",
    "SAGA_ID_HEADER",
    "TaskName",
    "WakeUp",
    "celery_wake_up",
    "clear_wake_up",
    "connect_wake_up",
    "interested_projections",
    "lagging_projections",
    "log_ids",
    "message_headers",
    "request_wake_up",
    "send_task",
    "wake_up_key",
]

logger = logging.getLogger("orchestrix.wakeup")

#: The ``dispatch_uid`` of the ``events_committed`` receiver (connected once).
DISPATCH_UID = "orchestrix_django.wakeup"


class WakeUp(StrEnum):
    """The values of ``ORCHESTRIX["WAKE_UP"]``: who runs projections and sagas."""

    NONE = "none"
    CELERY = "celery"


def celery_wake_up() -> bool:
    """Whether Celery workers do the work (``ORCHESTRIX["WAKE_UP"] == "celery"``, read now)."""
    return bool(orchestrix_settings.WAKE_UP == WakeUp.CELERY)


class TaskName(StrEnum):
    """The names of the Orchestrix Celery tasks (public: they never change)."""

    ADVANCE_PROJECTION = "orchestrix.advance_projection"
    CATCH_UP_PROJECTIONS = "orchestrix.catch_up_projections"
    RUN_SAGA = "orchestrix.run_saga"
    SWEEP_SAGAS = "orchestrix.sweep_sagas"


#: Message header name -> the event attribute it carries.
HEADER_NAMES: dict[str, str] = {
    "orchestrix_correlation_id": "correlation_id",
    "orchestrix_causation_id": "causation_id",
    "orchestrix_trace_id": "trace_id",
    "orchestrix_event_id": "id",
}

#: The message header that carries a saga task's saga id.
SAGA_ID_HEADER = "orchestrix_saga_id"

#: The log record attributes the ids of a task's message are exposed as.
ID_FIELDS = ("correlation_id", "causation_id", "trace_id", "event_id")

#: How hard a wake-up is published. The committing request waits for it, so
#: it tries twice (the second attempt reconnects a pooled connection that a
#: broker restart broke) and gives up fast: the periodic catch-up is the
#: safety net, not a long retry loop in a web request.
PUBLISH_RETRY_POLICY: dict[str, float] = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}


def connect_wake_up() -> None:
    """Connect the ``events_committed`` receiver (once, however often it is called).

    It does nothing unless ``ORCHESTRIX["WAKE_UP"] == "celery"`` (read at
    each commit, so tests and settings overrides can switch it).
    """
    events_committed.connect(_wake_up_committed, dispatch_uid=DISPATCH_UID, weak=False)


def send_task(name: TaskName, args: list[Any], headers: dict[str, str]) -> None:
    """Publish task ``name`` with ``args`` and ``headers`` (JSON), trying twice; raises on failure.

    By name, through the current Celery app: the registered task's options
    apply where this process imported it.
    """
    from celery import current_app

    current_app.signature(
        name.value,
        args=args,
        headers=headers,
        serializer="json",
        retry=True,
        retry_policy=PUBLISH_RETRY_POLICY,
    ).apply_async()


def wake_up_key(projection_id: str) -> str:
    """The cache key of ``projection_id``'s pending wake-up marker."""
    return f"orchestrix:wake-up:{projection_id}"


def _cache() -> Any:
    return caches[str(orchestrix_settings.WAKE_UP_CACHE)]


def message_headers(event: Event | None) -> dict[str, str]:
    """The Celery message headers that carry ``event``'s correlation, causation and trace ids."""
    if event is None:
        return {}
    headers: dict[str, str] = {}
    for header, attribute in HEADER_NAMES.items():
        value = getattr(event, attribute, None)
        if value:
            headers[header] = str(value)
    return headers


def interested_projections(events: Iterable[Event]) -> list[str]:
    """The ids of the configured projections that handle one of ``events``' types.

    A projection handles an event when one of its ``handled_types()`` is a
    class the event is an instance of (``Event`` matches everything) or a
    ``type`` string equal to the event's ``type``.
    """
    from orchestrix_django.projections.registry import projections

    events = list(events)
    classes = {type(event) for event in events}
    type_names = {event.type for event in events}
    wanted: list[str] = []
    for projection_id, projection in projections().items():
        for key in projection.handled_types():
            if isinstance(key, str):
                matches = key in type_names
            else:
                matches = any(issubclass(cls, key) for cls in classes)
            if matches:
                wanted.append(projection_id)
                break
    return wanted


def request_wake_up(
    projection_id: str,
    headers: dict[str, str] | None = None,
    *,
    stale_after: float | None = None,
) -> bool:
    """Send ``advance_projection(projection_id)`` unless a wake-up is pending.

    With ``stale_after`` (seconds), a wake-up pending for longer than that is
    presumed lost by the broker and another one is sent (the periodic
    catch-up does this; a duplicate task only finds nothing to do).

    Returns whether a task was sent. Never raises for an unreachable broker or
    cache: it logs a warning and leaves the projection to the periodic
    catch-up (a cache that can't be reached only costs the de-duplication:
    the task is sent anyway).
    """
    key = wake_up_key(projection_id)
    marked = False
    ttl = int(orchestrix_settings.WAKE_UP_TTL)
    try:
        cache = _cache()
        now = time.time()
        if not cache.add(key, now, timeout=ttl):
            if stale_after is None or not _stale(cache.get(key), now, stale_after):
                return False  # a wake-up is pending: it will see these events too
            logger.info(
                "the wake-up of projection %s has been pending for over %s s: "
                "presumed lost, sending another",
                projection_id,
                stale_after,
            )
            cache.set(key, now, timeout=ttl)
        marked = True
    except Exception as error:
        logger.warning(
            "cannot reach the wake-up cache %r (%s: %s); waking projection %s "
            "without de-duplication",
            orchestrix_settings.WAKE_UP_CACHE,
            type(error).__name__,
            error,
            projection_id,
        )
    try:
        send_task(TaskName.ADVANCE_PROJECTION, [projection_id], headers or {})
    except Exception as error:
        logger.warning(
            "could not send the wake-up of projection %s (%s: %s); the periodic "
            "catch-up will advance it",
            projection_id,
            type(error).__name__,
            error,
            extra=log_ids(headers),
        )
        if marked:
            clear_wake_up(projection_id)
        return False
    return True


def _stale(marked_at: Any, now: float, stale_after: float) -> bool:
    """Whether a marker set at ``marked_at`` (a time; anything else: unknown) is stale."""
    if not isinstance(marked_at, int | float) or isinstance(marked_at, bool):
        return marked_at is not None  # a marker of another format: replace it
    return now - float(marked_at) >= stale_after


def clear_wake_up(projection_id: str) -> None:
    """Remove ``projection_id``'s pending marker: the next commit sends a new wake-up."""
    try:
        _cache().delete(wake_up_key(projection_id))
    except Exception as error:
        # The marker expires by itself (WAKE_UP_TTL); until then commits
        # don't send wake-ups and the periodic catch-up covers the gap.
        logger.warning(
            "cannot clear the wake-up marker of projection %s (%s: %s)",
            projection_id,
            type(error).__name__,
            error,
        )


def lagging_projections() -> list[str]:
    """The configured projections the periodic catch-up should advance.

    Those behind the head of the log and those that never ran; paused ones
    are left alone (an operator resumes them). Two queries, whatever the
    number of projections.
    """
    from orchestrix_django.projections.registry import projections
    from orchestrix_django.storage.events import DjangoEventStore
    from orchestrix_django.storage.projection_state import DjangoProjectionStateStore

    configured = projections()
    if not configured:
        return []
    head = DjangoEventStore().head_position()
    stored = {s.projection_id: s for s in DjangoProjectionStateStore().list_states()}
    lagging: list[str] = []
    for projection_id in configured:
        state = stored.get(projection_id)
        if state is None or (not state.paused and state.state.last_processed_position < head):
            lagging.append(projection_id)
    return lagging


def log_ids(headers: dict[str, Any] | None) -> dict[str, str | None]:
    """The log ``extra`` fields of a message's headers: :data:`ID_FIELDS` and ``saga_id``."""
    headers = headers or {}
    ids: dict[str, str | None] = {
        attribute if attribute != "id" else "event_id": headers.get(header)
        for header, attribute in HEADER_NAMES.items()
    }
    ids["saga_id"] = headers.get(SAGA_ID_HEADER)
    return ids


def _wake_up_committed(sender: Any, *, events: Sequence[StoredEvent] = (), **kwargs: Any) -> None:
    """The ``events_committed`` receiver: wake the interested projections.

    Runs after the commit, in the committing thread: it must never raise.
    """
    try:
        if not celery_wake_up() or not events:
            return
        committed = [record.event for record in events]
        headers = message_headers(committed[-1])
        for projection_id in interested_projections(committed):
            request_wake_up(projection_id, headers)
    except Exception:
        logger.exception(
            "could not wake the projections after a commit to %s; the periodic "
            "catch-up will advance them",
            kwargs.get("stream_id"),
        )
