"""A projection's status for operators: position, lag, health, parked events, stalled."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orchestrix_django.models import EventRecord
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.projection_state import DjangoProjectionStateStore

__all__ = [
    "ProjectionHealth",
    "ProjectionStatus",
    "is_stalled",
    "projection_status",
    "stalled_after",
]


class ProjectionHealth(enum.StrEnum):
    """One word for a projection's condition, as operators see it."""

    OK = "ok"
    PAUSED = "paused"
    #: Paused at a failing event: retry or skip it.
    STOPPED = "stopped"
    #: Failed events are parked (or it failed and no runner paused it).
    UNHEALTHY = "unhealthy"
    #: Events wait and no runner advances it.
    STALLED = "stalled"


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

    @property
    def health(self) -> ProjectionHealth:
        """Its :class:`ProjectionHealth`: a failure first, then stalled, then paused."""
        if not self.healthy or self.parked:
            return ProjectionHealth.STOPPED if self.paused else ProjectionHealth.UNHEALTHY
        if self.stalled:
            return ProjectionHealth.STALLED
        return ProjectionHealth.PAUSED if self.paused else ProjectionHealth.OK


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
