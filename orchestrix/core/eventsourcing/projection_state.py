"""Where a projection stands (:class:`ProjectionState`) and the protocols of what keeps it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from orchestrix.core.common.clock import utc_now

__all__ = ["AsyncProjectionStateStore", "ProjectionState", "ProjectionStateStore"]


@dataclass(frozen=True, kw_only=True)
class ProjectionState:
    """Where a projection stands: its checkpoint and its health.

    ``last_processed_position`` is the checkpoint (0: nothing processed);
    ``last_processed_event_id`` is the id of the event at it. ``error_count``
    counts handler failures since the last reset (it never goes down on
    success); ``last_error`` describes the latest one and is kept after the
    projection recovers. ``events_processed`` counts the events that moved the
    checkpoint since the last reset (parked and skipped events excluded).
    """

    projection_id: str
    last_processed_event_id: str | None = None
    last_processed_position: int = 0
    updated_at: datetime = field(default_factory=utc_now)
    error_count: int = 0
    is_healthy: bool = True
    last_error: str | None = None
    events_processed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.projection_id, str) or not self.projection_id:
            raise ValueError(
                f"projection_id must be a non-empty string, got {self.projection_id!r}"
            )
        for name in ("last_processed_position", "error_count", "events_processed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        stamp = self.updated_at
        if not isinstance(stamp, datetime):
            raise TypeError(f"updated_at must be a datetime, got {stamp!r}")
        if stamp.tzinfo is None or stamp.utcoffset() is None:
            raise ValueError(f"updated_at must be timezone-aware, got naive {stamp}")
        if stamp.utcoffset():
            object.__setattr__(self, "updated_at", stamp.astimezone(UTC))


@runtime_checkable
class ProjectionStateStore(Protocol):
    """Keeps one :class:`ProjectionState` per projection id (synchronous)."""

    def load_state(self, projection_id: str) -> ProjectionState | None:
        """The saved state of ``projection_id``, or None."""
        ...

    def save_state(self, state: ProjectionState) -> None:
        """Store ``state``, replacing the saved state of its projection."""
        ...

    def delete_state(self, projection_id: str) -> None:
        """Forget ``projection_id``'s state (nothing happens when there is none)."""
        ...


@runtime_checkable
class AsyncProjectionStateStore(Protocol):
    """The asynchronous twin of :class:`ProjectionStateStore` (same method names)."""

    async def load_state(self, projection_id: str) -> ProjectionState | None:
        """The saved state of ``projection_id``, or None."""
        ...

    async def save_state(self, state: ProjectionState) -> None:
        """Store ``state``, replacing the saved state of its projection."""
        ...

    async def delete_state(self, projection_id: str) -> None:
        """Forget ``projection_id``'s state (nothing happens when there is none)."""
        ...
