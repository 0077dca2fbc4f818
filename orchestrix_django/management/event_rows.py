"""Reading the event table as stored, in chunks: for the verify and export commands.

These commands look at rows as they are (not decoded, or decoded under
their control), so they read the table itself rather than through
:class:`~orchestrix_django.storage.events.DjangoEventStore`, which decodes and
upcasts. Every read is a keyset page of at most ``chunk`` rows: memory stays
bounded however long the log is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import QuerySet

from orchestrix_django.models import EventRecord, StreamRecord
from orchestrix_django.storage.rows import ROW_FIELDS, EventRow

__all__ = ["rows_by_position", "rows_by_stream"]

_Columns = tuple[Any, ...]


def _events(using: str, streams: Iterable[str] | None) -> QuerySet[EventRecord]:
    events = EventRecord.objects.using(using)
    if streams is not None:
        events = events.filter(stream_id__in=sorted(set(streams)))
    return events


def rows_by_position(
    using: str,
    *,
    after: int = 0,
    until: int | None = None,
    streams: Iterable[str] | None = None,
    chunk: int,
    labelled: bool = False,
) -> Iterator[list[EventRow]]:
    """Pages of rows in log order, with ``after < position <= until``.

    ``labelled``: each row carries its stream's aggregate type (one more query a page).
    """
    events = _events(using, streams).order_by("position")
    if until is not None:
        events = events.filter(position__lte=until)
    while True:
        rows: list[_Columns] = list(
            events.filter(position__gt=after).values_list(*ROW_FIELDS)[:chunk]
        )
        if not rows:
            return
        labels = _aggregate_types(using, {row[1] for row in rows}) if labelled else {}
        yield [EventRow.from_columns(row, labels.get(row[1], "")) for row in rows]
        if len(rows) < chunk:
            return
        after = rows[-1][0]


def rows_by_stream(
    using: str, *, streams: Iterable[str] | None = None, chunk: int
) -> Iterator[list[EventRow]]:
    """Pages of rows stream by stream, each stream in version order.

    Each page is the rest of the current stream, then the next streams: two
    plain range queries on the ``(stream_id, version)`` index, where one
    ``OR`` of both would make some planners scan the table.
    """
    events = _events(using, streams).order_by("stream_id", "version")
    rows: list[_Columns] = list(events.values_list(*ROW_FIELDS)[:chunk])
    while rows:
        yield [EventRow.from_columns(row) for row in rows]
        if len(rows) < chunk:
            return
        stream_id, version = rows[-1][1], rows[-1][2]
        rows = list(
            events.filter(stream_id=stream_id, version__gt=version).values_list(*ROW_FIELDS)[:chunk]
        )
        if len(rows) < chunk:
            rows += list(
                events.filter(stream_id__gt=stream_id).values_list(*ROW_FIELDS)[: chunk - len(rows)]
            )


def _aggregate_types(using: str, stream_ids: Iterable[str]) -> dict[str, str]:
    """The aggregate type label of each of these streams (one query)."""
    return dict(
        StreamRecord.objects.using(using)
        .filter(stream_id__in=sorted(set(stream_ids)))
        .values_list("stream_id", "aggregate_type")
    )
