"""The Django event store: the core ``EventStore`` protocols on Django models.

``DjangoEventStore`` (sync) and ``DjangoAsyncEventStore`` (async) store events
in :class:`~orchestrix_django.models.EventRecord`, with these guarantees:

* **Optimistic locking by the database.** A unique constraint on
  ``(stream_id, version)`` makes two racing writers yield exactly one winner;
  the loser gets :class:`ConcurrencyError`, never an ``IntegrityError``.
* **All or nothing.** The events of one save are inserted in one transaction
  (a savepoint inside an outer ``atomic`` block), in batches of
  ``INSERT_BATCH_SIZE`` rows per statement, not one round trip per event.
* **Idempotent retries.** A save whose events are all stored already, in this
  stream at the same versions, stores nothing and succeeds.
* **A global log that never loses an event.** Appends take a transaction-scoped
  lock right before their insert (``pg_advisory_xact_lock`` on PostgreSQL, a
  row lock on MySQL/MariaDB, the database write lock on SQLite), so
  transactions commit in the order of the positions they took and a reader of
  :meth:`DjangoEventStore.read_all` can never see position 42 before 41.
  The lock is held until the surrounding transaction commits: append late in
  long transactions (``ATOMIC_REQUESTS``) to keep writers flowing.
* **Few round trips.** On PostgreSQL a save outside a transaction is one
  statement, the ``orchestrix_append`` function (lock, version check, insert,
  stream row; see :mod:`orchestrix_django.storage.postgresql`), committing by
  itself; reads use plain cursors and keyset pages, never server-side cursors.
* **Events come back as their classes**, decoded through the event registry
  and upcast to the latest schema version; undecodable rows (not JSON, the
  wrong shape, nested too deeply, an upcaster that fails on them) raise
  :class:`EventDecodeError`, and rows of an unknown type or schema version
  :class:`UnknownEventTypeError`, naming the stream, version, type and position.
* **Personal data encrypted at rest**, when ``ENCRYPT_PERSONAL_DATA`` is on:
  the fields event classes declare personal are encrypted on save with their
  subject's key and decrypted on read (see :mod:`orchestrix_django.storage.personal_data`).
* **Input it can't store exactly is refused before the database is touched**,
  with a ``ValueError`` (``TypeError`` for a wrong kind of argument) that names
  the event and the field, on every database alike:

  - every field of an event must fit its annotation, by the rules the decoder
    reads it back with (see :mod:`orchestrix.core.serialization.event_codec`):
    :class:`~orchestrix.core.common.exceptions.EncodeError` (a ``ValueError``
    and a ``TypeError``) names the event type, the field's path, what the
    annotation takes and what it got;

  - ids and types: non-empty text without NUL or lone surrogates (see
    :func:`~orchestrix.core.eventsourcing.event_store.check_save_arguments`), no
    longer than their columns (255 characters);
  - the data and metadata of an event: no NUL character and no lone surrogate
    in any string (PostgreSQL's text and jsonb refuse NUL and surrogate escapes;
    the other databases would keep them, so an event stored there could not be
    copied to PostgreSQL); nested at most :data:`MAX_JSON_DEPTH` levels
    (:data:`MARIADB_MAX_JSON_DEPTH` on MariaDB, whose JSON columns refuse
    deeper documents); no integer of more than 4300 digits (Python's JSON
    limit) and, on MySQL, none beyond 64 bits (its JSON type keeps them as
    doubles); at most :attr:`DjangoEventStore.max_event_bytes` bytes of JSON;
  - ``expected_version``, ``from_version``, positions: ints up to 2**63-1, the
    range of the BIGINT columns.

  On MySQL and MariaDB one INSERT of a save must also fit ``max_allowed_packet``
  (16 MiB by default on MariaDB): lower ``INSERT_BATCH_SIZE`` if saves carry
  many large events.

``events_committed`` (see :mod:`orchestrix_django.signals`) is sent after the
commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import Max
from django.utils import timezone

from orchestrix.core.common.exceptions import (
    ConcurrencyError,
    DuplicateEventError,
    EventDecodeError,
    OrchestrixError,
    UnknownEventTypeError,
)
from orchestrix.core.common.observability import ObservabilityHooks, get_observability
from orchestrix.core.eventsourcing.event_store import (
    StoredEvent,
    check_from_version,
    check_read_all_arguments,
    check_save_arguments,
    unstorable_character,
)
from orchestrix.core.eventsourcing.snapshot import Snapshot
from orchestrix.core.eventsourcing.versioning import UpcasterRegistry
from orchestrix.core.messaging.message import Event, EventRegistry
from orchestrix.core.serialization.event_codec import EncodedEvent
from orchestrix_django.models import AppendLock, EventRecord, SnapshotRecord, StreamRecord
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.signals import events_committed
from orchestrix_django.storage.configured import EventDecoding
from orchestrix_django.storage.personal_data import PersonalDataCodec, encrypt_events
from orchestrix_django.storage.postgresql import append_parameters, run_append

__all__ = ["DjangoAsyncEventStore", "DjangoEventStore"]

logger = logging.getLogger("orchestrix.store")

#: The key of the PostgreSQL advisory lock that orders appends ("orchestr").
APPEND_LOCK_KEY = 0x6F72636865737472

#: How deeply an event's stored JSON may nest, its data (or metadata) object
#: being level 1. MySQL's own limit; on PostgreSQL and SQLite, Orchestrix's:
#: reading JSON back costs Python a few frames per level, and a reader deep in
#: a call stack must not hit the recursion limit.
MAX_JSON_DEPTH = 100

#: MariaDB's JSON columns (a CHECK with JSON_VALID) refuse documents nested 32
#: levels deep.
MARIADB_MAX_JSON_DEPTH = 31

#: The largest event :class:`DjangoEventStore` stores by default: the JSON text
#: of its data and metadata, in bytes (as sent to the database, non-ASCII
#: characters escaped). Events are facts, not files: keep large payloads
#: elsewhere and store a reference.
MAX_EVENT_BYTES = 8 * 1024 * 1024

#: The columns of a stored event, in the order the read queries return them.
ROW_FIELDS = (
    "position",
    "stream_id",
    "version",
    "event_id",
    "event_type",
    "schema_version",
    "timestamp",
    "data",
    "metadata",
)


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
        _check_column_lengths(aggregate_id, events, encoded, aggregate_type)
        _check_storable(aggregate_id, encoded, connections[self.using], self.max_event_bytes)
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
        using = self.using
        connection = connections[using]
        ids = [e.event_id for e in encoded]
        if connection.vendor == "postgresql":
            return self._append_postgresql(
                aggregate_id, events, encoded, expected_version, aggregate_type, ids
            )
        try:
            with transaction.atomic(using=using):
                # The lock comes first: appends then never interleave, so the
                # version read below is still the stream's version at insert
                # (and on SQLite a read before the first write would make a
                # concurrent writer fail at once instead of waiting).
                self._lock_appends(connection)
                current = self.stream_version(aggregate_id)
                if expected_version is not None and expected_version != current:
                    if self._already_stored(aggregate_id, ids):
                        return []  # a retried save: everything is stored already
                    raise ConcurrencyError(aggregate_id, expected_version, current)
                records = self._insert(aggregate_id, events, encoded, current, using)
                self._update_stream(aggregate_id, records, aggregate_type, using)
                stored = [
                    StoredEvent(r.position, aggregate_id, r.version, e)
                    for r, e in zip(records, events, strict=True)
                ]
                transaction.on_commit(
                    lambda: self._announce(aggregate_id, stored, using), using=using
                )
                return stored
        except IntegrityError:
            return self._refused(aggregate_id, ids, expected_version)

    def _append_postgresql(
        self,
        aggregate_id: str,
        events: Sequence[Event],
        encoded: list[EncodedEvent],
        expected_version: int | None,
        aggregate_type: str | None,
        ids: list[str],
    ) -> list[StoredEvent]:
        """``_append`` in one statement after the lock (see ``storage.postgresql``)."""
        using = self.using
        connection = connections[using]
        now = timezone.now()
        size = self._insert_batch_size or int(orchestrix_settings.INSERT_BATCH_SIZE)
        chunks = [
            append_parameters(
                APPEND_LOCK_KEY,
                aggregate_id,
                events[start : start + size],
                encoded[start : start + size],
                expected_version,
                aggregate_type,
                now,
            )
            for start in range(0, len(events), size)
        ]
        # Outside a transaction, a save of one chunk is one statement that
        # commits by itself: one round trip, no BEGIN and COMMIT around it.
        # Inside one, a savepoint keeps a refused save from spoiling it.
        alone = len(chunks) == 1 and connection.get_autocommit()
        scope = contextlib.nullcontext() if alone else transaction.atomic(using=using)
        try:
            with scope, connection.cursor() as cursor:
                current, inserted = run_append(cursor, chunks[0])
                if not inserted:
                    if self._already_stored(aggregate_id, ids):
                        return []  # a retried save: everything is stored already
                    raise ConcurrencyError(
                        aggregate_id,
                        expected_version if expected_version is not None else current,
                        current,
                    )
                for chunk in chunks[1:]:
                    # Under the lock: each chunk goes on where the previous one ended.
                    chunk["expected"] = inserted[-1][1]
                    inserted += run_append(cursor, chunk)[1]
                stored = [
                    StoredEvent(position, aggregate_id, version, event)
                    for (position, version), event in zip(inserted, events, strict=True)
                ]
                transaction.on_commit(
                    lambda: self._announce(aggregate_id, stored, using), using=using
                )
                return stored
        except IntegrityError:
            return self._refused(aggregate_id, ids, expected_version)

    def _refused(
        self, aggregate_id: str, ids: list[str], expected_version: int | None
    ) -> list[StoredEvent]:
        """After a unique violation: a retried save (stored already) or a lost race."""
        # The events' ids are stored already (a retried save: the common
        # case, found here rather than by a query on every save), or a
        # writer that bypasses the append lock (another tool, a REPEATABLE
        # READ snapshot taken before the lock) took these versions.
        if self._already_stored(aggregate_id, ids):
            return []
        current = self.stream_version(aggregate_id)
        raise ConcurrencyError(
            aggregate_id,
            expected_version if expected_version is not None else current,
            current,
            "another writer appended first",
        ) from None

    def _announce(self, aggregate_id: str, stored: list[StoredEvent], using: str) -> None:
        """Send ``events_committed``; a failing receiver must not fail the committed save.

        Its error is logged and counted (receivers that deliver further, like
        the message bus, park their own failures as dead letters).
        """
        responses = events_committed.send_robust(
            sender=type(self), stream_id=aggregate_id, events=stored, using=using
        )
        for receiver, response in responses:
            if isinstance(response, Exception):
                name = getattr(receiver, "__qualname__", repr(receiver))
                logger.error(
                    "events_committed receiver %s failed for stream %s",
                    name,
                    aggregate_id,
                    exc_info=response,
                )
                self.hooks.record_handler_error(
                    "events_committed", name, f"{type(response).__name__}: {response}"
                )

    def _already_stored(self, aggregate_id: str, ids: list[str]) -> bool:
        """Whether these events are stored already, as this very save (a retry).

        Raises :class:`DuplicateEventError` when only some of them are, or
        they are stored in another stream or at other versions.
        """
        known = list(
            EventRecord.objects.using(self.using)
            .filter(event_id__in=ids)
            .order_by()  # no need to sort: the rows are looked up by id
            .values_list("event_id", "stream_id", "version")
        )
        if not known:
            return False
        by_id = {event_id: (stream, version) for event_id, stream, version in known}
        if len(by_id) == len(ids) and all(by_id[i][0] == aggregate_id for i in ids):
            first = by_id[ids[0]][1]
            if [by_id[i][1] for i in ids] == list(range(first, first + len(ids))):
                return True
        raise DuplicateEventError(
            aggregate_id, sorted(by_id), "they are stored elsewhere or only part of this save is"
        )

    @staticmethod
    def _lock_appends(connection: Any) -> None:
        """The append lock of MySQL/MariaDB and SQLite: an update of the lock row.

        (PostgreSQL's, an advisory lock, is taken by ``orchestrix_append``.)
        """
        with connection.cursor() as cursor:
            table = connection.ops.quote_name(AppendLock._meta.db_table)
            cursor.execute(f"UPDATE {table} SET appends = appends + 1 WHERE id = 1")
            if cursor.rowcount == 0:
                # The lock row is made by a migration; recreate it if someone removed it.
                AppendLock.objects.using(connection.alias).get_or_create(id=1)
                cursor.execute(f"UPDATE {table} SET appends = appends + 1 WHERE id = 1")

    def _insert(
        self,
        aggregate_id: str,
        events: Sequence[Event],
        encoded: list[EncodedEvent],
        current: int,
        using: str,
    ) -> list[EventRecord]:
        records = [
            EventRecord(
                stream_id=aggregate_id,
                version=current + index,
                event_id=item.event_id,
                event_type=item.event_type,
                schema_version=item.schema_version,
                data=item.data,
                metadata=item.metadata,
                timestamp=item.timestamp,
                correlation_id=event.correlation_id,
                causation_id=event.causation_id,
            )
            for index, (event, item) in enumerate(zip(events, encoded, strict=True), start=1)
        ]
        batch_size = self._insert_batch_size or int(orchestrix_settings.INSERT_BATCH_SIZE)
        manager = EventRecord.objects.using(using)
        manager.bulk_create(records, batch_size=batch_size)
        if records[0].position is None:
            # Backends that can't return ids from a bulk insert (MySQL).
            positions = dict(
                manager.filter(stream_id=aggregate_id, version__gt=current).values_list(
                    "version", "position"
                )
            )
            for record in records:
                record.position = positions[record.version]
        return records

    @staticmethod
    def _update_stream(
        aggregate_id: str, records: list[EventRecord], aggregate_type: str | None, using: str
    ) -> None:
        last = records[-1]
        now = last.recorded_at
        update = ["version", "last_position", "updated_at"]
        if aggregate_type:
            update.append("aggregate_type")
        # MySQL's ON DUPLICATE KEY UPDATE takes no conflict target.
        target = (
            ["stream_id"]
            if connections[using].features.supports_update_conflicts_with_target
            else None
        )
        StreamRecord.objects.using(using).bulk_create(
            [
                StreamRecord(
                    stream_id=aggregate_id,
                    aggregate_type=aggregate_type or "",
                    version=last.version,
                    first_position=records[0].position,
                    last_position=last.position,
                    created_at=now,
                    updated_at=now,
                )
            ],
            update_conflicts=True,
            unique_fields=target,
            update_fields=update,
        )

    # -- reading ------------------------------------------------------------------

    def stream_version(self, aggregate_id: str) -> int:
        """The number of events in the stream (0 if it does not exist)."""
        if _never_stored(aggregate_id):
            return 0
        version = (
            EventRecord.objects.using(self.using)
            .filter(stream_id=aggregate_id)
            .aggregate(version=Max("version"))["version"]
        )
        return int(version or 0)

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
        if _never_stored(aggregate_id):
            return
        chunk = int(orchestrix_settings.READ_CHUNK_SIZE)
        after = max(from_version, 0)
        decode = self._row_decoder(upcast=upcast)
        while True:
            rows = self._select(_STREAM_QUERY, [aggregate_id, after, chunk])
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
            rows = self._select(_LOG_QUERY, [after, limit])
        else:
            rows = self._select(_LOG_BEFORE_QUERY, [after, before_position, limit])
        decode = self._row_decoder(upcast=upcast, rows=rows, decode_only=decode_only)
        return [decode(row) for row in rows]

    def _select(self, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """Run one of the read queries below (``{table}`` and the columns filled in)."""
        connection = connections[self.using]
        sql = _SQL_CACHE.get((connection.vendor, query))
        if sql is None:
            quote = connection.ops.quote_name
            columns = [quote(name) for name in ROW_FIELDS]
            if connection.vendor == "postgresql":
                # Microseconds since the epoch, turned into a datetime by
                # _row_decoder: a third of the cost of a row is Django's
                # pure-Python timestamptz loader otherwise.
                columns[ROW_FIELDS.index("timestamp")] = (
                    f"(EXTRACT(EPOCH FROM {quote('timestamp')}) * 1000000)::bigint"
                )
            sql = query.format(
                table=quote(EventRecord._meta.db_table),
                columns=", ".join(columns),
                **{name: quote(name) for name in ("position", "stream_id", "version")},
            )
            _SQL_CACHE[(connection.vendor, query)] = sql
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            try:
                return list(cursor.fetchall())
            except DatabaseError as error:
                if "decode to UTF-8" not in str(error):
                    raise
                # SQLite hands back what was written, and only it can hold bytes
                # that are not UTF-8 in a text column (PostgreSQL and MariaDB
                # refuse them): a row written around the store, named as such.
                raise EventDecodeError(
                    f"a stored event holds text that is not valid UTF-8 ({error}); it was "
                    "written around the store: find it with CAST(column AS BLOB) and repair it"
                ) from error

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
        """A function turning one row of the read queries into a StoredEvent.

        Made once per read, so that the settings behind the codec and the
        upcasters are looked up once, not per row. ``rows``, when given, are
        the rows it will decode: with personal data encrypted, the keys of
        their subjects are looked up at once (one query, not one per subject).
        ``decode_only``: see :meth:`read_all`.
        """
        codec = self.codec
        if isinstance(codec, PersonalDataCodec):  # ENCRYPT_PERSONAL_DATA is on
            codec = codec.batch()  # each subject's key looked up once per read
            codec.prefetch_keys(row[_DATA_COLUMN] for row in rows)
        decode = codec.decode_parts
        resolve = codec.resolve
        registry = codec.registry
        upcasters = self.upcasters if upcast else None
        classes: dict[tuple[str, int], type[Event]] = {}
        wanted: dict[tuple[str, int], bool] = {}

        def decode_row(row: tuple[Any, ...]) -> StoredEvent:
            position, stream_id, version, event_id, event_type, schema, timestamp, data, meta = row
            if decode_only is not None:
                key = (event_type, schema)
                wants = wanted.get(key)
                if wants is None:
                    wants = wanted[key] = _wants(decode_only, registry, event_type, schema)
                if not wants:
                    envelope = Event(id=event_id, type=event_type, timestamp=_timestamp(timestamp))
                    return StoredEvent(position, stream_id, version, envelope)
            # The rows come straight from the driver: JSON as text (psycopg's
            # jsonb too, through Django's loaders), timestamps as microseconds
            # on PostgreSQL (see _select), naive on MySQL (UTC, as Django
            # stores them) and text on SQLite.
            if type(data) is str or type(meta) is str:
                try:
                    data = _loads(data) if type(data) is str else data
                    meta = _loads(meta) if type(meta) is str else meta
                except (ValueError, RecursionError) as error:
                    raise EventDecodeError(
                        "the stored data is nested too deeply to decode"
                        if isinstance(error, RecursionError)
                        else f"the stored data is not valid JSON ({error})",
                        event_type=event_type,
                        stream_id=stream_id,
                        version=version,
                        position=position,
                    ) from None
            timestamp = _timestamp(timestamp)
            cls = classes.get((event_type, schema))
            if cls is None:
                try:
                    cls = classes[event_type, schema] = resolve(
                        event_type, schema, stream_id=stream_id, version=version
                    )
                except UnknownEventTypeError:
                    # With the position: a reader of the log can take the events before it.
                    raise UnknownEventTypeError(
                        event_type, schema, stream_id, version, position
                    ) from None
            event = decode(
                event_id,
                event_type,
                schema,
                timestamp,
                data,
                meta,
                stream_id=stream_id,
                version=version,
                position=position,
                cls=cls,
            )
            if upcasters is not None:
                try:
                    event = upcasters.upcast_to_latest(event, registry)
                except OrchestrixError:
                    raise
                except Exception as error:
                    # An upcaster that fails on this stored event: the event
                    # can't be read as its current class (a runner parks it).
                    raise EventDecodeError(
                        f"upcasting failed: {type(error).__name__}: {error}",
                        event_type=event_type,
                        stream_id=stream_id,
                        version=version,
                        position=position,
                    ) from error
            return StoredEvent(position, stream_id, version, event)

        return decode_row

    # -- snapshots ------------------------------------------------------------------

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` unless a newer one is stored; refuse one ahead of its stream."""
        using = self.using
        with transaction.atomic(using=using):
            current = self.stream_version(snapshot.aggregate_id)
            if snapshot.version > current:
                raise ValueError(
                    f"snapshot of {snapshot.aggregate_id!r} at version {snapshot.version} is "
                    f"ahead of its stream (version {current})"
                )
            manager = SnapshotRecord.objects.using(using)
            stored = manager.select_for_update().filter(pk=snapshot.aggregate_id).first()
            if stored is not None and stored.version > snapshot.version:
                return
            values = {
                "aggregate_type": snapshot.aggregate_type,
                "version": snapshot.version,
                "state": snapshot.state,
                "timestamp": snapshot.timestamp,
            }
            if stored is None:
                try:
                    with transaction.atomic(using=using):
                        manager.create(aggregate_id=snapshot.aggregate_id, **values)
                except IntegrityError:
                    # A concurrent first snapshot: keep the newer of the two.
                    manager.filter(pk=snapshot.aggregate_id, version__lte=snapshot.version).update(
                        **values
                    )
            else:
                manager.filter(pk=snapshot.aggregate_id).update(**values)
        self.hooks.record_snapshot_saved(snapshot.aggregate_id, snapshot.version)

    def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        """The newest snapshot of ``aggregate_id``, or None."""
        if _never_stored(aggregate_id):
            return None
        record = SnapshotRecord.objects.using(self.using).filter(pk=aggregate_id).first()
        if record is None:
            return None
        self.hooks.record_snapshot_loaded(aggregate_id, record.version)
        return Snapshot(
            aggregate_id=record.aggregate_id,
            aggregate_type=record.aggregate_type,
            version=record.version,
            state=record.state,
            timestamp=_aware(record.timestamp),
        )


def _check_column_lengths(
    aggregate_id: str,
    events: Sequence[Event],
    encoded: list[EncodedEvent],
    aggregate_type: str | None = None,
) -> None:
    """Refuse ids and types longer than their columns, before touching the database.

    SQLite ignores VARCHAR lengths and would store them, PostgreSQL and MySQL
    refuse them mid-insert with an error naming neither the event nor the
    field: fail alike everywhere, saying which value is too long.
    """
    limits = {
        name: int(getattr(EventRecord._meta.get_field(name), "max_length", 0) or 0)
        for name in ("stream_id", "event_id", "event_type", "correlation_id", "causation_id")
    }
    if len(aggregate_id) > limits["stream_id"]:
        raise ValueError(
            f"aggregate_id is {len(aggregate_id)} characters long; "
            f"at most {limits['stream_id']} can be stored"
        )
    if aggregate_type:
        most = int(getattr(StreamRecord._meta.get_field("aggregate_type"), "max_length", 0) or 0)
        if len(aggregate_type) > most:
            raise ValueError(
                f"aggregate_type is {len(aggregate_type)} characters long; "
                f"at most {most} can be stored"
            )
        problem = unstorable_character(aggregate_type)
        if problem is not None:
            raise ValueError(f"aggregate_type {aggregate_type[:80]!r} contains {problem}")
    for index, (event, item) in enumerate(zip(events, encoded, strict=True), start=1):
        for name, value in (
            ("event_id", item.event_id),
            ("event_type", item.event_type),
            ("correlation_id", event.correlation_id),
            ("causation_id", event.causation_id),
        ):
            if isinstance(value, str) and len(value) > limits[name]:
                raise ValueError(
                    f"event {index} of the save to {aggregate_id!r} ({item.event_type}) has a "
                    f"{name} of {len(value)} characters; at most {limits[name]} can be stored"
                )


def _never_stored(aggregate_id: object) -> bool:
    """Whether ``aggregate_id`` is text no save accepts (NUL, lone surrogates).

    Reads of such an id find nothing, on every database, rather than make the
    driver fail (PostgreSQL refuses NUL in a parameter, no driver encodes a
    lone surrogate): a stream id from a URL is input like any other.
    """
    return type(aggregate_id) is str and unstorable_character(aggregate_id) is not None


class _Unstorable(Exception):
    """A value of an event's JSON that can't be stored; ``path`` says where."""

    def __init__(self, problem: str, hint: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.hint = hint
        self.path: list[str] = []


#: An int of more bits than this may have more than 4300 digits: checked exactly.
_LONG_INT_BITS = 14_000
#: Characters no database keeps (see unstorable_character), for non-ASCII text.
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
_NUL_HINT = (
    "PostgreSQL can't store NUL in text, so no database takes it; "
    "store binary data in a bytes field (base64 in JSON)"
)
_SURROGATE_HINT = (
    "a lone surrogate is not a character (decoding invalid UTF-8 with "
    "errors='surrogateescape' leaves them): decode with errors='replace', or keep the raw "
    "bytes in a bytes field"
)


def _check_storable(
    aggregate_id: str, encoded: list[EncodedEvent], connection: Any, max_bytes: int
) -> None:
    """Refuse events whose JSON a database would refuse or change, naming the event and field.

    One walk over each event's data and metadata (no JSON text is made for
    events well under ``max_bytes``): strings with NUL or lone surrogates,
    nesting deeper than the database takes, integers JSON can't carry, values
    that are not JSON, and the size.
    """
    mariadb = connection.vendor == "mysql" and bool(connection.mysql_is_mariadb)
    max_depth = MARIADB_MAX_JSON_DEPTH if mariadb else MAX_JSON_DEPTH
    int64_only = connection.vendor == "mysql" and not mariadb
    for index, item in enumerate(encoded, start=1):
        size = 0
        for part, value in (("data", item.data), ("metadata", item.metadata)):
            try:
                size += _json_size(value, 1, max_depth, int64_only)
            except _Unstorable as problem:
                where = "".join(reversed(problem.path))
                raise ValueError(
                    f"event {index} of the save to {aggregate_id!r} ({item.event_type}) can't "
                    f"be stored: {part} field {where} {problem.problem}; {problem.hint}"
                ) from None
        if size > max_bytes:
            # The walk's bound is generous; the exact size decides.
            size = len(_compact_json(item.data)) + len(_compact_json(item.metadata))
            if size > max_bytes:
                raise ValueError(
                    f"event {index} of the save to {aggregate_id!r} ({item.event_type}) is "
                    f"{size} bytes of JSON; at most {max_bytes} can be stored "
                    "(DjangoEventStore.max_event_bytes): keep large payloads outside the "
                    "event store and store a reference to them"
                )


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json_size(value: Any, depth: int, max_depth: int, int64_only: bool) -> int:
    """An upper bound of the bytes of ``value`` (a dict or a list) as JSON text.

    Raises :class:`_Unstorable` for what can't be stored. Written for speed
    (every save walks its events): scalars are checked inline, one call per
    container, ASCII strings without a regular expression.
    """
    if depth > max_depth:
        raise _Unstorable(
            f"is nested more than {max_depth} levels deep",
            "MariaDB refuses deeper JSON: flatten the value"
            if max_depth == MARIADB_MAX_JSON_DEPTH
            else "flatten the value",
        )
    is_dict = type(value) is dict
    size = 2
    key: Any = None
    try:
        for key, item in value.items() if is_dict else enumerate(value):
            if is_dict:
                if type(key) is not str:
                    raise _Unstorable("has a key that is not a string", "JSON keys are strings")
                if key.isascii() and "\x00" not in key:
                    size += 6 * len(key) + 4
                else:
                    size += _text_size(key) + 2
            kind = type(item)
            if kind is str:
                if item.isascii() and "\x00" not in item:
                    size += 6 * len(item) + 3
                else:
                    size += _text_size(item) + 1
            elif kind is dict or kind is list:
                size += _json_size(item, depth + 1, max_depth, int64_only) + 1
            elif kind is int:
                size += _int_size(item, int64_only) + 1
            elif kind is float:
                if item - item != 0.0:  # NaN or an infinity
                    raise _Unstorable(
                        f"is {item}, which JSON can't hold",
                        "the codec writes non-finite floats as strings; import them that way",
                    )
                size += 25
            elif item is None or kind is bool:
                size += 6
            else:
                raise _Unstorable(
                    f"is a {kind.__qualname__}, not a JSON value",
                    "an EncodedEvent's data holds only what json.dumps writes",
                )
    except _Unstorable as problem:
        if is_dict:
            problem.path.append(str(key) if depth == 1 else f"[{key!r}]")
        else:
            problem.path.append(f"[{key}]")
        raise
    return size


def _text_size(text: str) -> int:
    """An upper bound of the bytes of ``text`` as a JSON string; raises _Unstorable."""
    if text.isascii():
        if "\x00" not in text:
            return 6 * len(text) + 2  # "\u001f" for a control character
    elif _UNSTORABLE_TEXT.search(text) is None:
        return 12 * len(text) + 2  # "\ud83d\ude00" for an astral character
    problem = str(unstorable_character(text))
    hint = _NUL_HINT if problem.startswith("a NUL") else _SURROGATE_HINT
    raise _Unstorable(f"contains {problem}", hint)


def _int_size(value: int, int64_only: bool) -> int:
    if int64_only and not -(2**63) <= value < 2**64:
        raise _Unstorable(
            "is an integer beyond 64 bits",
            "MySQL's JSON type would keep it as a double, rounded: store it as a "
            "string (a Decimal field)",
        )
    bits = value.bit_length()
    if bits > _LONG_INT_BITS:
        try:
            return len(str(value))
        except ValueError:
            raise _Unstorable(
                "is an integer of more than 4300 digits",
                "Python's json refuses to write it (sys.set_int_max_str_digits)",
            ) from None
    return bits // 3 + 2


#: The read queries, by the statement's shape; see DjangoEventStore._select.
_STREAM_QUERY = (
    "SELECT {columns} FROM {table} WHERE {stream_id} = %s AND {version} > %s "
    "ORDER BY {version} LIMIT %s"
)
_LOG_QUERY = "SELECT {columns} FROM {table} WHERE {position} > %s ORDER BY {position} LIMIT %s"
_LOG_BEFORE_QUERY = (
    "SELECT {columns} FROM {table} WHERE {position} > %s AND {position} < %s "
    "ORDER BY {position} LIMIT %s"
)
_SQL_CACHE: dict[tuple[str, str], str] = {}
_DATA_COLUMN = ROW_FIELDS.index("data")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_json = json.JSONDecoder()


def _loads(text: str) -> Any:
    """``json.loads`` for the JSON the database returns (no surrounding whitespace).

    ``raw_decode`` skips ``loads``' two whitespace scans, a measurable part of
    reading the log; anything but one JSON document still raises ValueError.
    """
    try:
        value, end = _json.raw_decode(text)
    except ValueError:
        return json.loads(text)  # leading whitespace, or invalid: loads says which
    if end != len(text) and text[end:].strip():
        raise ValueError(f"extra data after the JSON document at character {end}")
    return value


#: Whether a reader wants the events of a type decoded: the type, and the class
#: it decodes to (None when none is registered). See DjangoEventStore.read_all.
DecodeFilter = Callable[[str, "type[Event] | None"], bool]


def _wants(
    decode_only: DecodeFilter, registry: EventRegistry, event_type: str, schema: int
) -> bool:
    """Whether ``decode_only`` wants events of this type, stored at this schema version.

    Asked of the class stored events of the type are upcast to (the latest) and
    of the one this schema version decodes to: a reader that wants either reads it.
    """
    classes = []
    for version in (None, schema):
        with contextlib.suppress(OrchestrixError):  # no class registered for it, or two
            classes.append(registry.resolve(event_type, version))
    if not classes:
        return decode_only(event_type, None)
    return any(decode_only(event_type, cls) for cls in classes)


def _timestamp(value: Any) -> datetime:
    """A stored timestamp as the driver returns it, as an aware datetime.

    Microseconds since the epoch on PostgreSQL (see ``_select``), naive on
    MySQL (UTC, as Django stores them), text on SQLite.
    """
    kind = type(value)
    if kind is int:
        return _EPOCH + timedelta(microseconds=value)
    if kind is not datetime:
        return _parse_timestamp(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value  # type: ignore[no-any-return]


def _parse_timestamp(value: Any) -> datetime:
    """A stored timestamp the driver returned as text (SQLite), as an aware datetime."""
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("Orchestrix needs USE_TZ = True (stored timestamps are naive)")
    return moment


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
