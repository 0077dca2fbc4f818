"""Reading the event table: the read queries and the decoding of their rows into events.

Rows come straight from the driver (JSON as text, timestamps as the driver
returns them) and are decoded in Python: see ``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections
from django.db.models import Max

from orchestrix.core.common.exceptions import (
    EventDecodeError,
    OrchestrixError,
    UnknownEventTypeError,
)
from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.eventsourcing.versioning import UpcasterRegistry
from orchestrix.core.messaging.message import Event, EventRegistry
from orchestrix.core.serialization.event_codec import EncodedEvent, EventCodec
from orchestrix_django.models import EventRecord
from orchestrix_django.storage.limits import never_stored
from orchestrix_django.storage.personal_data import PersonalDataCodec

__all__ = [
    "LOG_BEFORE_QUERY",
    "LOG_QUERY",
    "ROW_FIELDS",
    "STREAM_QUERY",
    "DecodeFilter",
    "EventRow",
    "row_decoder",
    "select",
    "stream_version",
]

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


@dataclass(frozen=True)
class EventRow:
    """A row of the event table as plain values: the event as stored (encoded), and its place."""

    stream_id: str
    version: int
    encoded: EncodedEvent
    position: int | None = None
    aggregate_type: str = ""

    @classmethod
    def from_columns(cls, columns: Sequence[Any], aggregate_type: str = "") -> EventRow:
        """The row of :data:`ROW_FIELDS` values, data and metadata as the database returned them."""
        position, stream_id, version, event_id, event_type, schema, timestamp, data, meta = columns
        return cls(
            stream_id=stream_id,
            version=int(version),
            position=int(position),
            aggregate_type=aggregate_type,
            encoded=EncodedEvent(
                event_id=event_id,
                event_type=event_type,
                schema_version=int(schema),
                timestamp=timestamp,
                data=data,
                metadata=meta,
            ),
        )

    @classmethod
    def from_record(cls, record: EventRecord) -> EventRow:
        """The row of a model instance."""
        return cls(
            stream_id=record.stream_id,
            version=record.version,
            position=record.position,
            encoded=EncodedEvent(
                record.event_id,
                record.event_type,
                record.schema_version,
                record.timestamp,
                record.data,
                record.metadata,
            ),
        )


#: The read queries, by the statement's shape; see select.
STREAM_QUERY = (
    "SELECT {columns} FROM {table} WHERE {stream_id} = %s AND {version} > %s "
    "ORDER BY {version} LIMIT %s"
)
LOG_QUERY = "SELECT {columns} FROM {table} WHERE {position} > %s ORDER BY {position} LIMIT %s"
LOG_BEFORE_QUERY = (
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
    moment: datetime = value
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _parse_timestamp(value: Any) -> datetime:
    """A stored timestamp the driver returned as text (SQLite), as an aware datetime."""
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def stream_version(using: str, aggregate_id: str) -> int:
    """The number of events in the stream (0 if it does not exist)."""
    if never_stored(aggregate_id):
        return 0
    version = (
        EventRecord.objects.using(using)
        .filter(stream_id=aggregate_id)
        .aggregate(version=Max("version"))["version"]
    )
    return int(version or 0)


def select(using: str, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Run one of the read queries below (``{table}`` and the columns filled in)."""
    connection = connections[using]
    sql = _SQL_CACHE.get((connection.vendor, query))
    if sql is None:
        quote = connection.ops.quote_name
        columns = [quote(name) for name in ROW_FIELDS]
        if connection.vendor == "postgresql":
            # Microseconds since the epoch, turned into a datetime by
            # row_decoder: a third of the cost of a row is Django's
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


def row_decoder(
    codec: EventCodec,
    upcasters: UpcasterRegistry | None,
    *,
    rows: Sequence[tuple[Any, ...]] = (),
    decode_only: DecodeFilter | None = None,
) -> Callable[[tuple[Any, ...]], StoredEvent]:
    """A function turning one row of the read queries into a StoredEvent.

    Made once per read, so that the settings behind the codec and the
    upcasters are looked up once, not per row. ``rows``, when given, are
    the rows it will decode: with personal data encrypted, the keys of
    their subjects are looked up at once (one query, not one per subject).
    ``decode_only``: see :meth:`DjangoEventStore.read_all`.
    """
    if isinstance(codec, PersonalDataCodec):  # ENCRYPT_PERSONAL_DATA is on
        codec = codec.batch()  # each subject's key looked up once per read
        codec.prefetch_keys(row[_DATA_COLUMN] for row in rows)
    decode = codec.decode_parts
    resolve = codec.resolve
    registry = codec.registry
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
