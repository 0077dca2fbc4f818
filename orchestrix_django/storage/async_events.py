"""The async event store: the core ``AsyncEventStore`` protocol on :class:`DjangoEventStore`."""

from __future__ import annotations

from collections.abc import Sequence

from asgiref.sync import sync_to_async

from orchestrix.core.common.observability import ObservabilityHooks
from orchestrix.core.eventsourcing.event_store import StoredEvent, check_from_version
from orchestrix.core.eventsourcing.snapshot import Snapshot
from orchestrix.core.eventsourcing.versioning import UpcasterRegistry
from orchestrix.core.messaging.message import Event, EventRegistry
from orchestrix_django.storage.events import DjangoEventStore

__all__ = ["DjangoAsyncEventStore"]


class DjangoAsyncEventStore:
    """The async twin of :class:`DjangoEventStore`.

    Each call runs the synchronous store in Django's thread for sync code
    (``sync_to_async``), so transactions and connections behave as in
    synchronous Django.
    """

    accepts_aggregate_type = True

    def __init__(
        self,
        using: str | None = None,
        *,
        registry: EventRegistry | None = None,
        upcasters: UpcasterRegistry | None = None,
        observability: ObservabilityHooks | None = None,
        insert_batch_size: int | None = None,
    ) -> None:
        self.sync_store = DjangoEventStore(
            using,
            registry=registry,
            upcasters=upcasters,
            observability=observability,
            insert_batch_size=insert_batch_size,
        )

    async def save(
        self,
        aggregate_id: str,
        events: Sequence[Event],
        expected_version: int | None = None,
        *,
        aggregate_type: str | None = None,
    ) -> None:
        """Append ``events`` to ``aggregate_id`` if it is at ``expected_version``."""
        await sync_to_async(self.sync_store.save)(
            aggregate_id, events, expected_version, aggregate_type=aggregate_type
        )

    async def load(self, aggregate_id: str, from_version: int = 0) -> list[Event]:
        """The stream's events with version > ``from_version``, decoded and upcast.

        Upcasters run on the async path here, so ones that await I/O work.
        """
        check_from_version(from_version)
        records = await sync_to_async(self._load_raw)(aggregate_id, from_version)
        return [await self._upcast(record.event) for record in records]

    def _load_raw(self, aggregate_id: str, from_version: int) -> list[StoredEvent]:
        store = self.sync_store
        records = list(store._iter_stream(aggregate_id, from_version, upcast=False))
        store.hooks.record_event_loaded(aggregate_id, len(records))
        return records

    async def _upcast(self, event: Event) -> Event:
        upcasters = self.sync_store.upcasters
        if upcasters is None:
            return event
        return await upcasters.upcast_to_latest_async(event, self.sync_store.codec.registry)

    async def stream_version(self, aggregate_id: str) -> int:
        """The number of events in the stream (0 if it does not exist)."""
        return await sync_to_async(self.sync_store.stream_version)(aggregate_id)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Up to ``limit`` events of all streams with position > ``after_position``."""
        records = await sync_to_async(self.sync_store._read_all)(
            after_position, limit, upcast=False
        )
        return [
            StoredEvent(r.position, r.stream_id, r.version, await self._upcast(r.event))
            for r in records
        ]

    async def head_position(self) -> int:
        """The position of the newest stored event (0 when the log is empty)."""
        return await sync_to_async(self.sync_store.head_position)()

    async def save_snapshot_async(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` unless a newer one is stored."""
        await sync_to_async(self.sync_store.save_snapshot)(snapshot)

    async def load_snapshot_async(self, aggregate_id: str) -> Snapshot | None:
        """The newest snapshot of ``aggregate_id``, or None."""
        return await sync_to_async(self.sync_store.load_snapshot)(aggregate_id)
