"""In-memory event stores: the reference implementation of the store semantics.

They keep event objects as they are, are thread-safe, and implement the
global log that projections read. Like every store, they refuse an event that
a store serialising it could not give back equal (a field that does not fit
its annotation, a naive datetime): each event is encoded by the codec on save,
which raises :class:`~orchestrix.core.common.exceptions.EncodeError` before
anything is stored. Use them in tests and for
prototypes; the semantics are the ones every other store must match (the
contract suite in :mod:`orchestrix.testing` checks it).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from orchestrix.core.common.exceptions import ConcurrencyError, DuplicateEventError
from orchestrix.core.common.observability import ObservabilityHooks, get_observability
from orchestrix.core.eventsourcing.event_store import (
    StoredEvent,
    check_from_version,
    check_read_all_arguments,
    check_save_arguments,
)
from orchestrix.core.eventsourcing.snapshot import Snapshot
from orchestrix.core.eventsourcing.versioning import UpcasterRegistry
from orchestrix.core.messaging.message import Event, EventRegistry
from orchestrix.core.serialization.event_codec import EventCodec

__all__ = ["InMemoryAsyncEventStore", "InMemoryEventStore"]


class _MemoryLog:
    """The shared state and logic of both in-memory stores."""

    def __init__(
        self,
        observability: ObservabilityHooks | None,
        upcasters: UpcasterRegistry | None,
        registry: EventRegistry | None,
    ) -> None:
        self._upcasters = upcasters
        self._registry = registry
        self._streams: dict[str, list[StoredEvent]] = {}
        self._log: list[StoredEvent] = []
        self._by_id: dict[str, StoredEvent] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._lock = threading.RLock()
        self._observability = observability
        self._codec = EventCodec(registry)

    @property
    def hooks(self) -> ObservabilityHooks:
        return self._observability or get_observability()

    def save(
        self, aggregate_id: str, events: Sequence[Event], expected_version: int | None
    ) -> None:
        check_save_arguments(aggregate_id, events, expected_version)
        if not events:
            return
        for event in events:
            self._codec.encode(event)  # refuses what a serialising store could not give back
        hooks = self.hooks
        with hooks.start_event_store_operation("save") as span, self._lock:
            span.set_attribute("aggregate_id", aggregate_id)
            stream = self._streams.get(aggregate_id, [])
            if self._is_retry(aggregate_id, events):
                return
            current = len(stream)
            if expected_version is not None and expected_version != current:
                raise ConcurrencyError(aggregate_id, expected_version, current)
            position = len(self._log)
            stored = [
                StoredEvent(position + i + 1, aggregate_id, current + i + 1, event)
                for i, event in enumerate(events)
            ]
            self._streams[aggregate_id] = [*stream, *stored]
            self._log.extend(stored)
            for record in stored:
                self._by_id[record.event.id] = record
        hooks.record_events_stored(aggregate_id, current + 1, len(events))

    def _is_retry(self, aggregate_id: str, events: Sequence[Event]) -> bool:
        """True for a repeated save; raises for a partial or foreign overlap."""
        found = [self._by_id.get(event.id) for event in events]
        if all(record is None for record in found):
            return False
        known = [record for record in found if record is not None]
        first = known[0]
        same = (
            len(known) == len(events)
            and all(record.stream_id == aggregate_id for record in known)
            and [record.version for record in known]
            == list(range(first.version, first.version + len(events)))
        )
        if same:
            return True
        raise DuplicateEventError(
            aggregate_id,
            [record.event.id for record in known],
            "they are stored elsewhere or only part of this save is",
        )

    def load(self, aggregate_id: str, from_version: int) -> list[Event]:
        check_from_version(from_version)
        with self._lock:
            stream = self._streams.get(aggregate_id, [])
            events = [record.event for record in stream[from_version:]]
        self.hooks.record_event_loaded(aggregate_id, len(events))
        return events

    def stream_version(self, aggregate_id: str) -> int:
        with self._lock:
            return len(self._streams.get(aggregate_id, []))

    def read_all(self, after_position: int, limit: int) -> list[StoredEvent]:
        check_read_all_arguments(after_position, limit)
        after_position = max(after_position, 0)
        with self._lock:
            # Positions are 1..len(log) without gaps, so a slice is exact.
            return self._log[after_position : after_position + limit]

    def upcast(self, events: list[Event]) -> list[Event]:
        upcasters = self._upcasters
        if upcasters is None:
            return events
        return [upcasters.upcast_to_latest(e, self._registry) for e in events]

    async def upcast_async(self, events: list[Event]) -> list[Event]:
        upcasters = self._upcasters
        if upcasters is None:
            return events
        return [await upcasters.upcast_to_latest_async(e, self._registry) for e in events]

    def upcast_records(self, records: list[StoredEvent]) -> list[StoredEvent]:
        if self._upcasters is None:
            return records
        events = self.upcast([r.event for r in records])
        return [
            StoredEvent(r.position, r.stream_id, r.version, e)
            for r, e in zip(records, events, strict=True)
        ]

    async def upcast_records_async(self, records: list[StoredEvent]) -> list[StoredEvent]:
        if self._upcasters is None:
            return records
        events = await self.upcast_async([r.event for r in records])
        return [
            StoredEvent(r.position, r.stream_id, r.version, e)
            for r, e in zip(records, events, strict=True)
        ]

    def head_position(self) -> int:
        with self._lock:
            return len(self._log)

    def save_snapshot(self, snapshot: Snapshot) -> None:
        with self._lock:
            current = len(self._streams.get(snapshot.aggregate_id, []))
            if snapshot.version > current:
                raise ValueError(
                    f"snapshot of {snapshot.aggregate_id!r} at version {snapshot.version} is "
                    f"ahead of its stream (version {current})"
                )
            stored = self._snapshots.get(snapshot.aggregate_id)
            if stored is not None and stored.version > snapshot.version:
                return
            self._snapshots[snapshot.aggregate_id] = snapshot
        self.hooks.record_snapshot_saved(snapshot.aggregate_id, snapshot.version)

    def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        with self._lock:
            snapshot = self._snapshots.get(aggregate_id)
        if snapshot is not None:
            self.hooks.record_snapshot_loaded(aggregate_id, snapshot.version)
        return snapshot

    def stream_ids(self) -> list[str]:
        with self._lock:
            return list(self._streams)


class InMemoryEventStore:
    """A thread-safe in-memory :class:`EventStore` with snapshots and a global log.

    Events are kept as the objects that were saved. With ``upcasters``, events
    of an older schema version are upcast on every read (to the latest
    version in ``registry``, the default event registry unless given).
    """

    def __init__(
        self,
        observability: ObservabilityHooks | None = None,
        *,
        upcasters: UpcasterRegistry | None = None,
        registry: EventRegistry | None = None,
    ) -> None:
        self._memory = _MemoryLog(observability, upcasters, registry)

    def save(
        self, aggregate_id: str, events: Sequence[Event], expected_version: int | None = None
    ) -> None:
        """Append ``events`` (all or none) if the stream is at ``expected_version``."""
        self._memory.save(aggregate_id, events, expected_version)

    def load(self, aggregate_id: str, from_version: int = 0) -> list[Event]:
        """The stream's events with version > ``from_version``."""
        return self._memory.upcast(self._memory.load(aggregate_id, from_version))

    def stream_version(self, aggregate_id: str) -> int:
        """The number of events in the stream (0 if it does not exist)."""
        return self._memory.stream_version(aggregate_id)

    def stream_ids(self) -> list[str]:
        """Every stream id, in order of creation."""
        return self._memory.stream_ids()

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` unless a newer one is stored."""
        self._memory.save_snapshot(snapshot)

    def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        """The newest snapshot of ``aggregate_id``, or None."""
        return self._memory.load_snapshot(aggregate_id)

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Up to ``limit`` events of all streams after ``after_position``."""
        return self._memory.upcast_records(self._memory.read_all(after_position, limit))

    def head_position(self) -> int:
        """The position of the newest event (0 when empty)."""
        return self._memory.head_position()


class InMemoryAsyncEventStore:
    """The async twin of :class:`InMemoryEventStore` (same semantics, awaitable)."""

    def __init__(
        self,
        observability: ObservabilityHooks | None = None,
        *,
        upcasters: UpcasterRegistry | None = None,
        registry: EventRegistry | None = None,
    ) -> None:
        self._memory = _MemoryLog(observability, upcasters, registry)

    async def save(
        self, aggregate_id: str, events: Sequence[Event], expected_version: int | None = None
    ) -> None:
        """Append ``events`` (all or none) if the stream is at ``expected_version``."""
        self._memory.save(aggregate_id, events, expected_version)

    async def load(self, aggregate_id: str, from_version: int = 0) -> list[Event]:
        """The stream's events with version > ``from_version``."""
        return await self._memory.upcast_async(self._memory.load(aggregate_id, from_version))

    async def stream_version(self, aggregate_id: str) -> int:
        """The number of events in the stream (0 if it does not exist)."""
        return self._memory.stream_version(aggregate_id)

    async def save_snapshot_async(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` unless a newer one is stored."""
        self._memory.save_snapshot(snapshot)

    async def load_snapshot_async(self, aggregate_id: str) -> Snapshot | None:
        """The newest snapshot of ``aggregate_id``, or None."""
        return self._memory.load_snapshot(aggregate_id)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Up to ``limit`` events of all streams after ``after_position``."""
        records = self._memory.read_all(after_position, limit)
        return await self._memory.upcast_records_async(records)

    async def head_position(self) -> int:
        """The position of the newest event (0 when empty)."""
        return self._memory.head_position()
