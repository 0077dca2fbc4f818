"""The append of the event store on PostgreSQL: one function call, one round trip.

:class:`~orchestrix_django.storage.events.DjangoEventStore` calls ``orchestrix_append``,
the PL/pgSQL function of migration ``0004_append_function``: it takes the
append lock (``pg_advisory_xact_lock``), reads the stream's current version,
inserts the events only if it is the expected one, and upserts the stream's
summary row. Everything that needs no lock (encoding, JSON, the parameters)
happens before the call, so the lock is held for the function's statements
and the commit, none of them waiting on Python; and the function's plans are
kept for the session, so a save is not planned again each time.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.messaging.message import Event
from orchestrix.core.serialization.event_codec import EncodedEvent
from orchestrix_django.storage.append import Append, mismatched, placed

__all__ = ["APPEND_CALL", "APPEND_LOCK_KEY", "append_parameters", "append_postgresql", "run_append"]

#: The key of the PostgreSQL advisory lock that orders appends ("orchestr").
APPEND_LOCK_KEY = 0x6F72636865737472

#: The call. ``events`` is one JSON array of ``[event_id, event_type,
#: schema_version, data, metadata, timestamp, correlation_id, causation_id]``
#: rows: one parameter to send, where one array per column would cost the
#: client-side binding a quoting pass per value. It returns one row per inserted
#: event, (the version before, position, version), in order; a single row with
#: a NULL position when the expected version did not match (nothing inserted).
APPEND_CALL = (
    "SELECT current_version, event_position, event_version FROM orchestrix_append("
    "%(lock_key)s, %(stream_id)s, %(expected)s, %(aggregate_type)s, %(recorded_at)s, "
    "%(events)s::jsonb)"
)


def append_parameters(
    lock_key: int,
    aggregate_id: str,
    events: Sequence[Event],
    encoded: Sequence[EncodedEvent],
    expected_version: int | None,
    aggregate_type: str | None,
    recorded_at: datetime,
) -> dict[str, Any]:
    """The parameters of :data:`APPEND_CALL` (built before the lock is taken)."""
    rows = [
        [
            item.event_id,
            item.event_type,
            item.schema_version,
            item.data,
            item.metadata,
            item.timestamp.isoformat(),
            event.correlation_id,
            event.causation_id,
        ]
        for item, event in zip(encoded, events, strict=True)
    ]
    return {
        "lock_key": lock_key,
        "stream_id": aggregate_id,
        "expected": expected_version,
        "aggregate_type": aggregate_type or "",
        "recorded_at": recorded_at,
        "events": json.dumps(rows, separators=(",", ":")),
    }


def run_append(cursor: Any, parameters: dict[str, Any]) -> tuple[int, list[tuple[int, int]]]:
    """Call ``orchestrix_append``: the stream's version before it, and (position,
    version) of each inserted event (empty when the expected version did not match)."""
    cursor.execute(APPEND_CALL, parameters)
    rows = cursor.fetchall()
    current = int(rows[0][0])
    return current, [(int(position), int(version)) for _, position, version in rows if position]


def append_postgresql(append: Append) -> list[StoredEvent]:
    """Append in one statement per chunk, the first one taking the lock."""
    connection = connections[append.using]
    now = timezone.now()
    size = append.batch_size
    events, encoded = append.events, append.encoded
    chunks = [
        append_parameters(
            APPEND_LOCK_KEY,
            append.aggregate_id,
            events[start : start + size],
            encoded[start : start + size],
            append.expected_version,
            append.aggregate_type,
            now,
        )
        for start in range(0, len(events), size)
    ]
    # Outside a transaction, a save of one chunk is one statement that
    # commits by itself: one round trip, no BEGIN and COMMIT around it.
    # Inside one, a savepoint keeps a refused save from spoiling it.
    alone = len(chunks) == 1 and connection.get_autocommit()
    scope = contextlib.nullcontext() if alone else transaction.atomic(using=append.using)
    with scope, connection.cursor() as cursor:
        current, inserted = run_append(cursor, chunks[0])
        if not inserted:
            return mismatched(append, current)
        for chunk in chunks[1:]:
            # Under the lock: each chunk goes on where the previous one ended.
            chunk["expected"] = inserted[-1][1]
            inserted += run_append(cursor, chunk)[1]
        return placed(append, inserted)
