"""The append of the event store on MySQL/MariaDB and SQLite: a lock row, then the ORM's inserts.

The lock is an update of the one row of ``AppendLock`` (a row lock on
MySQL/MariaDB, the database write lock on SQLite), held until the transaction
commits, so transactions commit in the order of the positions they took.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, transaction

from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix_django.models import AppendLock, EventRecord, StreamRecord
from orchestrix_django.storage.append import Append, mismatched, placed
from orchestrix_django.storage.rows import stream_version

__all__ = ["append_with_lock_row"]


def append_with_lock_row(append: Append) -> list[StoredEvent]:
    """Append in one transaction (a savepoint inside an outer one) after the lock."""
    using = append.using
    connection = connections[using]
    with transaction.atomic(using=using):
        # The lock comes first: appends then never interleave, so the
        # version read below is still the stream's version at insert
        # (and on SQLite a read before the first write would make a
        # concurrent writer fail at once instead of waiting).
        _lock_appends(connection)
        current = stream_version(using, append.aggregate_id)
        if append.expected_version is not None and append.expected_version != current:
            return mismatched(append, current)
        records = _insert(append, current)
        _update_stream(append, records)
        return placed(append, [(record.position, record.version) for record in records])


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


def _insert(append: Append, current: int) -> list[EventRecord]:
    aggregate_id, using = append.aggregate_id, append.using
    pairs = zip(append.events, append.encoded, strict=True)
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
        for index, (event, item) in enumerate(pairs, start=1)
    ]
    manager = EventRecord.objects.using(using)
    manager.bulk_create(records, batch_size=append.batch_size)
    first: int | None = records[0].position
    if first is None:
        # Backends that can't return ids from a bulk insert (MySQL).
        positions = dict(
            manager.filter(stream_id=aggregate_id, version__gt=current).values_list(
                "version", "position"
            )
        )
        for record in records:
            record.position = positions[record.version]
    return records


def _update_stream(append: Append, records: list[EventRecord]) -> None:
    aggregate_id, aggregate_type, using = append.aggregate_id, append.aggregate_type, append.using
    last = records[-1]
    now = last.recorded_at
    update = ["version", "last_position", "updated_at"]
    if aggregate_type:
        update.append("aggregate_type")
    # MySQL's ON DUPLICATE KEY UPDATE takes no conflict target.
    target = (
        ["stream_id"] if connections[using].features.supports_update_conflicts_with_target else None
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
