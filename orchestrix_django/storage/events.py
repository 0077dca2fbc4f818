"""The Django event store: the core ``EventStore`` protocol on Django models.

Optimistic locking by the database, all-or-nothing saves, idempotent retries,
a global log that never loses an event, and input refused before it reaches
the database: see "Guarantees of the event store" in ``docs/django.md``.
``events_committed`` (:mod:`orchestrix_django.signals`) is sent after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from django.db import IntegrityError, connections
from django.db.models import Max

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
from orchestrix.core.serialization.event_codec import EncodedEvent
from orchestrix_django.models import EventRecord, StreamRecord
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.append import Append, refused
from orchestrix_django.storage.configured import EventDecoding
from orchestrix_django.storage.limits import (
    MAX_EVENT_BYTES,
    check_column_lengths,
    check_storable,
    never_stored,
)
from orchestrix_django.storage.mysql_sqlite import append_with_lock_row
from orchestrix_django.storage.personal_data import PersonalDataCodec, encrypt_events
from orchestrix_django.storage.postgresql import append_postgresql
from orchestrix_django.storage.rows import (
    LOG_BEFORE_QUERY,
    LOG_QUERY,
    STREAM_QUERY,
    DecodeFilter,
    row_decoder,
    select,
    stream_version,
)
from orchestrix_django.storage.snapshots import read_snapshot, store_snapshot

__all__ = ["DjangoEventStore"]


class DjangoEventStore(EventDecoding):
    """A synchronous event store on the Django ORM (see the module docs).

    Every argument defaults to the ``ORCHESTRIX`` settings: ``using`` the
    database alias, ``registry`` the event registry decoding goes through,
    ``upcasters`` the upcaster registry applied on every read.
    """

    #: The repository passes ``aggregate_type`` to stores that say they take it.
    accepts_aggregate_type = True

    #: The largest event a save accepts: the JSON text of its data and metadata,
    #: in bytes (see :data:`MAX_EVENT_BYTES`). Raise it in a subclass if you must;
    #: MySQL and MariaDB also need ``max_allowed_packet`` above it.
    max_event_bytes: int = MAX_EVENT_BYTES

    def __init__(
        self,
        using: str | None = None,
        *,
        registry: EventRegistry | None = None,
        upcasters: UpcasterRegistry | None = None,
        observability: ObservabilityHooks | None = None,
        insert_batch_size: int | None = None,
    ) -> None:
        super().__init__(using, registry=registry, upcasters=upcasters)
        self._observability = observability
        self._insert_batch_size = insert_batch_size

    # -- configuration, resolved lazily so that settings are never read at import

    @property
    def hooks(self) -> ObservabilityHooks:
        """Where the store reports what it does."""
        configured = self._observability or orchestrix_settings.OBSERVABILITY
        return configured if configured is not None else get_observability()

    # -- writing ----------------------------------------------------------------

    def save(
        self,
        aggregate_id: str,
        events: Sequence[Event],
        expected_version: int | None = None,
        *,
        aggregate_type: str | None = None,
    ) -> None:
        """Append ``events`` to ``aggregate_id`` if it is at ``expected_version``.

        ``aggregate_type`` (given by the repository) labels the stream in the
        admin and the API.
        """
        check_save_arguments(aggregate_id, events, expected_version)
        if not events:
            return
        codec = self.codec
        encoded = [codec.encode(event) for event in events]  # fails before touching the database
        self._save(aggregate_id, events, encoded, expected_version, aggregate_type)

    def _save(
        self,
        aggregate_id: str,
        events: Sequence[Event],
        encoded: list[EncodedEvent],
        expected_version: int | None,
        aggregate_type: str | None,
    ) -> None:
        """Append events and their encoded form, reporting it (the tail of both saves)."""
        check_column_lengths(aggregate_id, events, encoded, aggregate_type)
        check_storable(aggregate_id, encoded, connections[self.using], self.max_event_bytes)
        if isinstance(self.codec, PersonalDataCodec):  # ENCRYPT_PERSONAL_DATA is on
            # After the checks: they name the field as written, not its ciphertext.
            encoded = encrypt_events(events, encoded, self.using)
        hooks = self.hooks
        with hooks.start_event_store_operation("save") as span:
            span.set_attribute("aggregate_id", aggregate_id)
            span.set_attribute("count", len(events))
            stored = self._append(aggregate_id, events, encoded, expected_version, aggregate_type)
        if stored:
            hooks.record_events_stored(aggregate_id, stored[0].version, len(stored))

    def save_encoded(
        self,
        aggregate_id: str,
        encoded: Sequence[EncodedEvent],
        expected_version: int | None = None,
        *,
        aggregate_type: str | None = None,
    ) -> None:
        """Append events in their stored form, as they are (an import).

        The append path of :meth:`save` (its lock, optimistic locking,
        idempotent retries and ``events_committed``), but the rows get
        ``encoded`` byte for byte instead of a fresh encoding: an imported
        event keeps its id, schema version, data and metadata exactly. Each
        event is decoded first, through the registry, for the signal and the
        indexed id columns; one that does not decode is refused before
        anything is written. (What decodes is what :meth:`save` takes: the
        decoder gives back only values the encoder accepts, a naive datetime
        an older version stored being read as UTC.)
        """
        items = list(encoded)
        codec = self.codec
        if isinstance(codec, PersonalDataCodec):
            codec = codec.batch()  # each subject's key looked up once
        events = [codec.decode(item, stream_id=aggregate_id) for item in items]
        check_save_arguments(aggregate_id, events, expected_version)
        if not events:
            return
        self._save(aggregate_id, events, items, expected_version, aggregate_type)

    def _append(
        self,
        aggregate_id: str,
        events: Sequence[Event],
        encoded: list[EncodedEvent],
        expected_version: int | None,
        aggregate_type: str | None,
    ) -> list[StoredEvent]:
        """Append through the write path of the database's dialect."""
        append = Append(
            aggregate_id,
            events,
            encoded,
            expected_version,
            aggregate_type,
            self.using,
            self._insert_batch_size or int(orchestrix_settings.INSERT_BATCH_SIZE),
            type(self),
            self.hooks,
        )
        postgresql = connections[append.using].vendor == "postgresql"
        try:
            return append_postgresql(append) if postgresql else append_with_lock_row(append)
        except IntegrityError:
            return refused(append)

    # -- reading ------------------------------------------------------------------

    def stream_version(self, aggregate_id: str) -> int:
        """The number of events in the stream (0 if it does not exist)."""
        return stream_version(self.using, aggregate_id)

    def load(self, aggregate_id: str, from_version: int = 0) -> list[Event]:
        """The stream's events with version > ``from_version``, decoded and upcast."""
        check_from_version(from_version)
        with self.hooks.start_event_store_operation("load") as span:
            span.set_attribute("aggregate_id", aggregate_id)
            events = [record.event for record in self.iter_stream(aggregate_id, from_version)]
        self.hooks.record_event_loaded(aggregate_id, len(events))
        return events

    def iter_stream(self, aggregate_id: str, from_version: int = 0) -> Iterator[StoredEvent]:
        """Stream the events of ``aggregate_id`` after ``from_version`` without
        holding them all in memory (``READ_CHUNK_SIZE`` rows per query)."""
        check_from_version(from_version)
        return self._iter_stream(aggregate_id, from_version, upcast=True)

    def _iter_stream(
        self, aggregate_id: str, from_version: int, *, upcast: bool
    ) -> Iterator[StoredEvent]:
        # Keyset pages by version rather than a server-side cursor: a stream
        # only grows at its end, so the pages are consistent, and a short
        # stream (the common case) costs one query without a cursor's round trips.
        if never_stored(aggregate_id):
            return
        chunk = int(orchestrix_settings.READ_CHUNK_SIZE)
        after = max(from_version, 0)
        decode = self._row_decoder(upcast=upcast)
        while True:
            rows = select(self.using, STREAM_QUERY, [aggregate_id, after, chunk])
            for row in rows:
                yield decode(row)
            if len(rows) < chunk:
                return
            after = rows[-1][2]

    def read_all(
        self,
        after_position: int = 0,
        limit: int = 1000,
        *,
        before_position: int | None = None,
        decode_only: DecodeFilter | None = None,
    ) -> list[StoredEvent]:
        """Up to ``limit`` events of all streams with position > ``after_position``
        (and < ``before_position`` when given: a reader that hit an undecodable
        event at some position can still take the events before it).

        With ``decode_only`` (a projection's :meth:`~ProjectionEngine.handles`),
        only the events it wants are decoded; the others come as their
        envelope, a plain :class:`Event` with their id, type and timestamp, so
        that an event the reader does not need can't stop it.
        """
        return self._read_all(
            after_position,
            limit,
            upcast=True,
            before_position=before_position,
            decode_only=decode_only,
        )

    def _read_all(
        self,
        after_position: int,
        limit: int,
        *,
        upcast: bool,
        before_position: int | None = None,
        decode_only: DecodeFilter | None = None,
    ) -> list[StoredEvent]:
        check_read_all_arguments(after_position, limit, before_position)
        limit = min(limit, int(orchestrix_settings.MAX_READ_ALL_LIMIT))
        after = max(after_position, 0)
        if before_position is None:
            rows = select(self.using, LOG_QUERY, [after, limit])
        else:
            rows = select(self.using, LOG_BEFORE_QUERY, [after, before_position, limit])
        decode = self._row_decoder(upcast=upcast, rows=rows, decode_only=decode_only)
        return [decode(row) for row in rows]

    def head_position(self) -> int:
        """The position of the newest stored event (0 when the log is empty)."""
        head = EventRecord.objects.using(self.using).aggregate(head=Max("position"))["head"]
        return int(head or 0)

    def stream_ids(self) -> list[str]:
        """Every stream id, oldest first."""
        return list(
            StreamRecord.objects.using(self.using)
            .order_by("first_position")
            .values_list("stream_id", flat=True)
        )

    def _row_decoder(
        self,
        *,
        upcast: bool,
        rows: Sequence[tuple[Any, ...]] = (),
        decode_only: DecodeFilter | None = None,
    ) -> Callable[[tuple[Any, ...]], StoredEvent]:
        """The decoder of one read: this store's codec, and its upcasters if ``upcast``."""
        codec = self.codec
        return row_decoder(
            codec, self.upcasters if upcast else None, rows=rows, decode_only=decode_only
        )

    # -- snapshots ------------------------------------------------------------------

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` unless a newer one is stored; refuse one ahead of its stream."""
        store_snapshot(self.using, snapshot, self.hooks)

    def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        """The newest snapshot of ``aggregate_id``, or None."""
        return read_snapshot(self.using, aggregate_id, self.hooks)
