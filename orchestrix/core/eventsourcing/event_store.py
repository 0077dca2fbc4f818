"""Event store protocols: append-only streams with optimistic locking.

Version numbering (the same everywhere): a stream with N events has version N
(0 when it is empty) and its k-th event has version k.

* ``save(id, events, expected_version=v)`` appends only if the stream's
  current version is ``v`` (``0``: the stream must be new; ``None``: don't
  check), else raises :class:`~orchestrix.core.common.exceptions.ConcurrencyError`.
  The events of one save are stored all together or not at all. A save whose
  events (by id) are all already stored, in the same stream at the same
  versions, is a retried request: it succeeds and stores nothing.
* ``load(id, from_version=v)`` returns the events with version > ``v``, so a
  snapshot at version ``v`` plus ``load(id, from_version=v)`` is the whole
  aggregate.

Besides the two protocols of the reference, stores may implement
:class:`SnapshotStore` / :class:`AsyncSnapshotStore` and :class:`GlobalEventLog`
(the position-ordered log of all streams that projections read).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from orchestrix.core.eventsourcing.snapshot import Snapshot
from orchestrix.core.messaging.message import Event

__all__ = [
    "AsyncEventStore",
    "AsyncGlobalEventLog",
    "AsyncSnapshotStore",
    "EventStore",
    "GlobalEventLog",
    "SnapshotStore",
    "StoredEvent",
    "check_save_arguments",
]


@runtime_checkable
class EventStore(Protocol):
    """Synchronous event store with optimistic locking."""

    def save(
        self, aggregate_id: str, events: Sequence[Event], expected_version: int | None = None
    ) -> None:
        """Append ``events`` to the stream ``aggregate_id``."""
        ...

    def load(self, aggregate_id: str, from_version: int = 0) -> list[Event]:
        """The stream's events with version > ``from_version``, in order."""
        ...


@runtime_checkable
class AsyncEventStore(Protocol):
    """Asynchronous event store with the same interface."""

    async def save(
        self, aggregate_id: str, events: Sequence[Event], expected_version: int | None = None
    ) -> None:
        """Append ``events`` to the stream ``aggregate_id``."""
        ...

    async def load(self, aggregate_id: str, from_version: int = 0) -> list[Event]:
        """The stream's events with version > ``from_version``, in order."""
        ...


@runtime_checkable
class SnapshotStore(Protocol):
    """Keeps the latest snapshot of each aggregate (a cache of its events)."""

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store ``snapshot``; an older one than the stored one is ignored."""
        ...

    def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        """The newest snapshot of ``aggregate_id``, or None."""
        ...


@runtime_checkable
class AsyncSnapshotStore(Protocol):
    """The async snapshot methods of an async event store."""

    async def save_snapshot_async(self, snapshot: Snapshot) -> None:
        """Store ``snapshot``; an older one than the stored one is ignored."""
        ...

    async def load_snapshot_async(self, aggregate_id: str) -> Snapshot | None:
        """The newest snapshot of ``aggregate_id``, or None."""
        ...


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as recorded in the global log.

    ``position`` orders all events of the store (gaps are allowed, order is
    what counts); ``stream_id`` and ``version`` place it in its stream.
    """

    position: int
    stream_id: str
    version: int
    event: Event


@runtime_checkable
class GlobalEventLog(Protocol):
    """The store's events across all streams, in commit-safe position order."""

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Up to ``limit`` events with position > ``after_position``, ascending.

        An implementation must never return an event at a position below one
        it returned before to the same caller's checkpoint: readers advance
        their checkpoint to the last position they saw.
        """
        ...

    def head_position(self) -> int:
        """The position of the newest event readers can see (0 when empty)."""
        ...


@runtime_checkable
class AsyncGlobalEventLog(Protocol):
    """The async variant of :class:`GlobalEventLog`."""

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Up to ``limit`` events with position > ``after_position``, ascending."""
        ...

    async def head_position(self) -> int:
        """The position of the newest event readers can see (0 when empty)."""
        ...


def check_save_arguments(
    aggregate_id: str, events: Sequence[Event], expected_version: int | None
) -> None:
    """Reject malformed save arguments with errors that say what is wrong."""
    if not isinstance(aggregate_id, str) or not aggregate_id:
        raise ValueError(f"aggregate_id must be a non-empty string, got {aggregate_id!r}")
    if expected_version is not None and (
        isinstance(expected_version, bool)
        or not isinstance(expected_version, int)
        or expected_version < 0
    ):
        raise ValueError(f"expected_version must be None or an int >= 0, got {expected_version!r}")
    if isinstance(events, Event):
        raise TypeError("events must be a sequence of events; wrap a single event in a list")
    seen: set[str] = set()
    for event in events:
        if not isinstance(event, Event):
            raise TypeError(f"can only store Event instances, got {type(event).__name__}")
        if event.id in seen:
            raise ValueError(f"event id {event.id} appears twice in one save")
        seen.add(event.id)
