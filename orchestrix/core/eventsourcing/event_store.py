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

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from orchestrix.core.eventsourcing.snapshot import Snapshot
from orchestrix.core.messaging.message import Event

__all__ = [
    "MAX_POSITION",
    "AsyncEventStore",
    "AsyncGlobalEventLog",
    "AsyncSnapshotStore",
    "EventStore",
    "GlobalEventLog",
    "SnapshotStore",
    "StoredEvent",
    "check_from_version",
    "check_read_all_arguments",
    "check_save_arguments",
    "unstorable_character",
]

#: The largest version, expected version or position a store accepts: a signed
#: 64-bit integer, what every database's BIGINT holds.
MAX_POSITION = 2**63 - 1

#: Characters no store keeps in text: NUL (PostgreSQL refuses it in text and
#: JSON, C libraries end strings at it) and lone UTF-16 surrogates, which are
#: not characters at all and can't be encoded as UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


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


def unstorable_character(text: str) -> str | None:
    """A description of the first character of ``text`` no store keeps, or None.

    NUL and lone surrogates (``"\\ud800"``, what decoding invalid UTF-8 with
    ``surrogateescape`` leaves behind) are refused in every stored string.
    """
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    what = "a NUL character" if char == "\x00" else f"a lone surrogate ({char!r})"
    return f"{what} at index {found.start()}"


def _check_identifier(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    problem = unstorable_character(value)
    if problem is not None:
        raise ValueError(
            f"{name} {value[:80]!r} contains {problem}; ids and types must be valid "
            "Unicode text without NUL"
        )


def _check_int(name: str, value: object, allowed: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int ({allowed}), got {value!r}")
    return value


def check_save_arguments(
    aggregate_id: str, events: Sequence[Event], expected_version: int | None
) -> None:
    """Reject malformed save arguments with errors that say what is wrong.

    The stream id, and each event's id and type, must be non-empty text
    without NUL or lone surrogates; ``expected_version`` None or an int from
    0 to :data:`MAX_POSITION`.
    """
    _check_identifier("aggregate_id", aggregate_id)
    if expected_version is not None and (
        isinstance(expected_version, bool)
        or not isinstance(expected_version, int)
        or not 0 <= expected_version <= MAX_POSITION
    ):
        raise ValueError(
            f"expected_version must be None or an int from 0 to 2**63-1, got {expected_version!r}"
        )
    if isinstance(events, Event):
        raise TypeError("events must be a sequence of events; wrap a single event in a list")
    seen: set[str] = set()
    for event in events:
        if not isinstance(event, Event):
            raise TypeError(f"can only store Event instances, got {type(event).__name__}")
        if event.id in seen:
            raise ValueError(f"event id {event.id} appears twice in one save")
        _check_identifier("event id", event.id)
        _check_identifier(f"the type of event {event.id}", event.type)
        seen.add(event.id)


def check_from_version(from_version: int) -> int:
    """``from_version`` of a load, if it is an int from 0 to :data:`MAX_POSITION`."""
    _check_int("from_version", from_version, "a stream version >= 0")
    if not 0 <= from_version <= MAX_POSITION:
        raise ValueError(f"from_version must be from 0 to 2**63-1, got {from_version}")
    return from_version


def check_read_all_arguments(
    after_position: int, limit: int, before_position: int | None = None
) -> None:
    """Reject malformed ``read_all`` arguments.

    ``after_position`` is an int up to :data:`MAX_POSITION` (a negative one
    reads from the start, as 0 does: every position is after it);
    ``limit`` at least 1; ``before_position`` None or an int up to
    :data:`MAX_POSITION`.
    """
    _check_int("after_position", after_position, "a position, 0 for the start")
    if after_position > MAX_POSITION:
        raise ValueError(f"after_position must be at most 2**63-1, got {after_position}")
    _check_int("limit", limit, "the most events to return")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if before_position is not None:
        _check_int("before_position", before_position, "a position")
        if before_position > MAX_POSITION:
            raise ValueError(f"before_position must be at most 2**63-1, got {before_position}")
