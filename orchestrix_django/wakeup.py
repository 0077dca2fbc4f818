"""Wake projections up after a commit: at most one pending Celery task per projection.

With ``ORCHESTRIX["WAKE_UP"] = "celery"``, every commit that stored events
sends, through :data:`~orchestrix_django.signals.events_committed`, one
``orchestrix.advance_projection`` task (:mod:`orchestrix_django.tasks`) to
each configured projection that handles one of the committed events' types,
unless that projection already has a wake-up pending. A wake-up carries
only the projection's id: the work is a checkpointed catch-up from the event
table, so a lost wake-up only delays the projection (the periodic
``orchestrix.catch_up_projections`` task finds it, see
:mod:`orchestrix_django.celery`) and a duplicated one does nothing twice.

**At most one pending wake-up per projection.** A marker in Django's cache
(``ORCHESTRIX["WAKE_UP_CACHE"]``) says "a task is on its way": only the
caller that adds it (``cache.add``, atomic on Redis, Memcached and the
database cache) sends the task, and the task deletes it *before* it reads
the log, so events committed while it runs schedule the next wake-up. The
marker (the time it was set) expires after ``ORCHESTRIX["WAKE_UP_TTL"]``
seconds, and the periodic catch-up replaces one older than
``ORCHESTRIX["CATCH_UP_INTERVAL"]`` with a new wake-up: a task lost by the
broker holds its projection back for at most about two catch-up intervals,
while commits keep coming or not. The cache must be shared by every process
(not ``LocMemCache``; check ``orchestrix.W009`` says so).

**A broker outage never breaks the committing code.** The events are
committed when the signal is sent: a failure to reach the broker (or the
cache) is logged as a warning, the marker is removed, and the periodic
catch-up advances the projection once the broker is back.

**Ids travel with the task.** The correlation, causation and trace ids (and
the id) of the last committed event go into the task's message headers
(``orchestrix_correlation_id``, ``orchestrix_causation_id``,
``orchestrix_trace_id``, ``orchestrix_event_id``); the task logs them. As a
wake-up stands for every commit until it runs, they are those of the commit
that sent it.

Nothing here imports Celery until a wake-up is sent, so the module is safe
to import (and its receiver is connected) in projects without Celery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.cache import caches

from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.messaging.message import Event
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.signals import events_committed

__all__ = [
    "DISPATCH_UID",
    "HEADER_NAMES",
    "PUBLISH_RETRY_POLICY",
    "clear_wake_up",
    "connect_wake_up",
    "interested_projections",
    "lagging_projections",
    "message_headers",
    "request_wake_up",
    "wake_up_key",
]

logger = logging.getLogger("orchestrix.wakeup")

#: The ``dispatch_uid`` of the ``events_committed`` receiver (connected once).
DISPATCH_UID = "orchestrix_django.wakeup"

#: Message header name -> the event attribute it carries.
HEADER_NAMES: dict[str, str] = {
    "orchestrix_correlation_id": "correlation_id",
    "orchestrix_causation_id": "causation_id",
    "orchestrix_trace_id": "trace_id",
    "orchestrix_event_id": "id",
}

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
        from orchestrix_django.tasks import advance_projection

        advance_projection.apply_async(
            args=[projection_id],
            headers=headers or {},
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
    except Exception as error:
        logger.warning(
            "could not send the wake-up of projection %s (%s: %s); the periodic "
            "catch-up will advance it",
            projection_id,
            type(error).__name__,
            error,
            extra=_log_ids(headers),
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


def _log_ids(headers: dict[str, str] | None) -> dict[str, str | None]:
    headers = headers or {}
    return {
        attribute if attribute != "id" else "event_id": headers.get(header)
        for header, attribute in HEADER_NAMES.items()
    }


def _wake_up_committed(sender: Any, *, events: Sequence[StoredEvent] = (), **kwargs: Any) -> None:
    """The ``events_committed`` receiver: wake the interested projections.

    Runs after the commit, in the committing thread: it must never raise.
    """
    try:
        if orchestrix_settings.WAKE_UP != "celery" or not events:
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
