"""The event log in the admin: events (read-only for everyone) and streams.

* **Events**: a list newest first, filtered by type, stream, correlation id
  and date, searched by exact stream id, event id or correlation id (index
  lookups, not ``LIKE`` scans); an event's page shows its data and metadata
  as JSON, the upcast form when it differs from the stored one (or why the
  event cannot be decoded), and links along its causation and correlation.
* **Streams**: the summary table kept on append (never an aggregation over
  the log), and each stream's page: its events as a timeline.

No one adds, changes or deletes an event here, superusers included.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ORDER_VAR, PAGE_VAR, ChangeList
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from orchestrix.core.messaging.message import qualified_name
from orchestrix_django.admin.base import OrchestrixAdmin, admin_url, changelist_url, pretty_json
from orchestrix_django.admin.filters import distinct_filter, value_filter
from orchestrix_django.admin.pagination import capped_count
from orchestrix_django.models import EventRecord, SnapshotRecord, StreamRecord
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.personal_data import PersonalDataCodec, readable_data
from orchestrix_django.storage.rows import EventRow

__all__ = ["DecodedEvent", "EventAdmin", "StreamAdmin", "decode_event_record"]

#: Events per window of a stream's timeline.
TIMELINE_PAGE = 100
#: Events sharing a correlation id, or caused by an event, are counted up to this.
RELATED_COUNT_LIMIT = 1000
#: Events caused by an event listed on its page.
CAUSED_SHOWN = 20

#: URL parameters the event list accepts: the indexed columns only, so that a
#: hand-made URL cannot ask for a scan of the log (``?data__icontains=…``).
EVENT_LOOKUPS = frozenset(
    {
        "position",
        "position__lt",
        "position__lte",
        "position__gt",
        "position__gte",
        "stream_id",
        "stream_id__exact",
        "event_id",
        "event_id__exact",
        "event_type",
        "event_type__exact",
        "correlation_id",
        "correlation_id__exact",
        "causation_id",
        "causation_id__exact",
        "timestamp__gte",
        "timestamp__lt",
        "timestamp__year",
        "timestamp__month",
        "timestamp__day",
    }
)


# ---------------------------------------------------------------- decoding


@dataclasses.dataclass(frozen=True)
class DecodedEvent:
    """What decoding a stored event gave: its class, its upcast form, or the error."""

    class_name: str | None = None
    error: str | None = None
    #: Set when upcasters turned the event into a newer schema.
    upcast_schema_version: int | None = None
    upcast_data: Any = None
    upcast_metadata: Any = None
    #: The stored data with its personal fields decrypted (or their placeholders
    #: once the subject is forgotten); None when none is encrypted.
    data: Any = None

    @property
    def upcast(self) -> bool:
        """Whether the event handlers receive differs from the stored one."""
        return self.upcast_schema_version is not None


def decode_event_record(record: EventRecord, store: DjangoEventStore | None = None) -> DecodedEvent:
    """Decode ``record`` as the store reads it (codec, then upcasters), never raising.

    An undecodable event (unknown type, data that no longer fits its class, a
    failing upcaster) comes back with ``error`` saying why, as an operator
    should see it, instead of breaking the page.
    """
    store = store if store is not None else DjangoEventStore(record._state.db)
    encoded = EventRow.from_record(record).encoded
    try:
        event = store.codec.decode(
            encoded, stream_id=record.stream_id, version=record.version, position=record.position
        )
    except Exception as error:
        return DecodedEvent(error=f"{type(error).__name__}: {error}")
    class_name = qualified_name(type(event))
    readable = None
    try:
        if isinstance(store.codec, PersonalDataCodec):
            readable = readable_data(event, record.data, store.codec)
        upcasters = store.upcasters
        latest = upcasters.upcast_to_latest(event, store.codec.registry) if upcasters else event
        if latest is event:
            return DecodedEvent(class_name=class_name, data=readable)
        again = store.codec.encode(latest)
    except Exception as error:
        return DecodedEvent(
            class_name=class_name, error=f"{type(error).__name__}: {error}", data=readable
        )
    if (again.schema_version, again.data, again.metadata) == (
        record.schema_version,
        readable if readable is not None else record.data,
        record.metadata,
    ):
        return DecodedEvent(class_name=class_name, data=readable)
    return DecodedEvent(
        class_name=qualified_name(type(latest)),
        upcast_schema_version=again.schema_version,
        upcast_data=again.data,
        upcast_metadata=again.metadata,
        data=readable,
    )


# ---------------------------------------------------------------- links


def event_url(position: int) -> str:
    """The admin page of the event at ``position``."""
    return admin_url(EventRecord, "change", position)


def stream_url(stream_id: str) -> str:
    """The admin page (timeline) of stream ``stream_id``."""
    return admin_url(StreamRecord, "change", quote(stream_id))


def _stream_link(stream_id: str) -> str:
    return format_html('<a href="{}">{}</a>', stream_url(stream_id), stream_id)


# ---------------------------------------------------------------- events


def _date_chosen(request: HttpRequest) -> bool:
    """Whether the list is limited to a year, month or day of the date hierarchy."""
    return any(name.startswith("timestamp__") for name in request.GET)


@admin.register(EventRecord)
class EventAdmin(OrchestrixAdmin):
    """The event log: read-only for everyone, fast on millions of events."""

    list_display = (
        "position",
        "stream",
        "version",
        "event_type",
        "timestamp",
        "correlation",
    )
    list_display_links = ("position",)
    list_filter = (
        distinct_filter("event_type", "event type"),
        value_filter("stream_id", "stream"),
        value_filter("correlation_id", "correlation id"),
        value_filter("causation_id", "causation id"),
    )
    date_hierarchy = "timestamp"
    search_fields = ("=stream_id", "=event_id", "=correlation_id")
    search_help_text = "An exact stream id, event id or correlation id."
    ordering = ("-position",)
    sortable_by = ("position",)
    actions = None
    list_per_page = 100
    detail_template = "admin/orchestrix_django/eventrecord/detail.html"

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Events are facts: nobody changes one, superusers included."""
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[EventRecord]:
        """Events; the list leaves their JSON columns out (the event page reads them)."""
        queryset = super().get_queryset(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and str(match.url_name).endswith("_changelist"):
            queryset = queryset.defer("data", "metadata")
        return queryset

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        """Newest first: by position, or by timestamp within a chosen date range.

        Within a date range the timestamp index then answers the page by
        itself; ordered by position, the database would walk the log back
        from its end until it reached the range (timestamps grow with
        positions, which its statistics do not know).
        """
        if _date_chosen(request):
            return ("-timestamp", "-position")
        return ("-position",)

    def search_match(self, term: str) -> Q:
        """The exact search fields; a number also finds the event at that position."""
        match = super().search_match(term)
        if term.isdigit() and len(term) < 19:
            match |= Q(position=int(term))
        return match

    def lookup_allowed(self, lookup: str, value: Any, request: Any = None) -> bool:
        """Only lookups on indexed columns (see :data:`EVENT_LOOKUPS`)."""
        return lookup in EVENT_LOOKUPS

    def list_context(self, request: HttpRequest, changelist: ChangeList) -> dict[str, Any]:
        """A link to the events older than a full page (keyset paging)."""
        positions = [record.position for record in changelist.result_list]
        full = len(positions) >= changelist.list_per_page
        if full and not request.GET.get(ORDER_VAR) and not _date_chosen(request):
            return {
                "older_link": changelist.get_query_string(
                    {"position__lt": min(positions)}, [PAGE_VAR]
                )
            }
        return {}

    @admin.display(description="stream", ordering="stream_id")
    def stream(self, record: EventRecord) -> str:
        """The stream, linked to its timeline."""
        return _stream_link(record.stream_id)

    @admin.display(description="correlation id")
    def correlation(self, record: EventRecord) -> str:
        """The correlation id, linked to the events that share it."""
        if not record.correlation_id:
            return "-"
        return format_html(
            '<a href="{}">{}</a>',
            changelist_url(EventRecord, correlation_id=record.correlation_id),
            record.correlation_id,
        )

    def detail_title(self, obj: Model) -> str:
        """``Event 42: AccountOpened``."""
        assert isinstance(obj, EventRecord)
        return f"Event {obj.position}: {obj.event_type}"

    def detail_context(self, request: HttpRequest, obj: Model) -> dict[str, Any]:
        """JSON, the decoded/upcast form, and the neighbours along stream and causation."""
        assert isinstance(obj, EventRecord)
        events = EventRecord.objects.using(obj._state.db)
        neighbours = dict(
            events.filter(stream_id=obj.stream_id, version__in=[obj.version - 1, obj.version + 1])
            .order_by()
            .values_list("version", "position")
        )
        cause = None
        if obj.causation_id:
            cause = (
                events.filter(event_id=obj.causation_id)
                .order_by()
                .values("position", "event_type", "stream_id")
                .first()
            )
        caused = list(
            events.filter(causation_id=obj.event_id)
            .order_by("position")
            .values("position", "event_type", "stream_id")[: CAUSED_SHOWN + 1]
        )
        correlated = 0
        if obj.correlation_id:
            correlated = capped_count(
                events.filter(correlation_id=obj.correlation_id), RELATED_COUNT_LIMIT
            )
        decoded = decode_event_record(obj)
        return {
            "event": obj,
            "decoded": decoded,
            "upcast_data_json": pretty_json(decoded.upcast_data) if decoded.upcast else None,
            "upcast_metadata_json": pretty_json(decoded.upcast_metadata)
            if decoded.upcast
            else None,
            # Personal data decrypted (or its placeholders, once erased), as readers see it.
            "data_json": pretty_json(decoded.data if decoded.data is not None else obj.data),
            "metadata_json": pretty_json(obj.metadata),
            "stream_url": stream_url(obj.stream_id),
            "stream_events_url": changelist_url(EventRecord, stream_id=obj.stream_id),
            "previous_url": event_url(neighbours[obj.version - 1])
            if obj.version - 1 in neighbours
            else None,
            "next_url": event_url(neighbours[obj.version + 1])
            if obj.version + 1 in neighbours
            else None,
            "correlation_url": changelist_url(EventRecord, correlation_id=obj.correlation_id)
            if obj.correlation_id
            else None,
            "correlated": correlated,
            "correlated_more": correlated > RELATED_COUNT_LIMIT,
            "cause": {**cause, "url": event_url(cause["position"])} if cause else None,
            "caused": [{**c, "url": event_url(c["position"])} for c in caused[:CAUSED_SHOWN]],
            "caused_more": changelist_url(EventRecord, causation_id=obj.event_id)
            if len(caused) > CAUSED_SHOWN
            else None,
        }


# ---------------------------------------------------------------- streams


@admin.register(StreamRecord)
class StreamAdmin(OrchestrixAdmin):
    """Streams from their summary rows; a stream's page is its timeline."""

    list_display = (
        "stream_id",
        "aggregate_type",
        "event_count",
        "version",
        "first_change",
        "last_change",
        "first_position",
        "last_position",
    )
    list_filter = (distinct_filter("aggregate_type", "aggregate type"),)
    date_hierarchy = "updated_at"
    search_fields = ("=stream_id",)
    search_help_text = "An exact stream id."
    ordering = ("-updated_at",)
    sortable_by = ("stream_id", "updated_at", "last_position")
    actions = None
    detail_template = "admin/orchestrix_django/streamrecord/detail.html"

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Stream summaries are kept by the store; nobody edits them."""
        return False

    @admin.display(description="events", ordering="version")
    def event_count(self, record: StreamRecord) -> int:
        """Events in the stream (versions run 1, 2, 3, …: the current version)."""
        return int(record.version)

    @admin.display(description="first change")
    def first_change(self, record: StreamRecord) -> Any:
        """When the stream's first event was stored."""
        return record.created_at

    @admin.display(description="last change", ordering="updated_at")
    def last_change(self, record: StreamRecord) -> Any:
        """When the stream's last event was stored."""
        return record.updated_at

    def detail_title(self, obj: Model) -> str:
        """``Stream account-42``."""
        return f"Stream {obj}"

    def detail_context(self, request: HttpRequest, obj: Model) -> dict[str, Any]:
        """A window of the stream's events (``?after=<version>``), oldest first."""
        assert isinstance(obj, StreamRecord)
        try:
            after = max(int(request.GET.get("after", "0")), 0)
        except ValueError:
            after = 0
        window = (
            EventRecord.objects.using(obj._state.db)
            .filter(stream_id=obj.stream_id, version__gt=after)
            .order_by("version")
            .values(
                "position",
                "version",
                "event_type",
                "timestamp",
                "correlation_id",
                "causation_id",
            )[: TIMELINE_PAGE + 1]
        )
        rows: list[dict[str, Any]] = [dict(row) for row in window]
        more = len(rows) > TIMELINE_PAGE
        rows = rows[:TIMELINE_PAGE]
        for row in rows:
            row["url"] = event_url(row["position"])
            if row["correlation_id"]:
                row["correlation_url"] = changelist_url(
                    EventRecord, correlation_id=row["correlation_id"]
                )
        base = stream_url(obj.stream_id)
        snapshot = (
            SnapshotRecord.objects.using(obj._state.db)
            .filter(pk=obj.stream_id)
            .values("version", "timestamp", "aggregate_type")
            .first()
        )
        return {
            "stream": obj,
            "timeline": rows,
            "snapshot": snapshot,
            "events_url": changelist_url(EventRecord, stream_id=obj.stream_id),
            "earlier_url": f"{base}?after={max(after - TIMELINE_PAGE, 0)}" if after > 0 else None,
            "later_url": f"{base}?after={rows[-1]['version']}" if more else None,
            "first_shown": rows[0]["version"] if rows else None,
            "last_shown": rows[-1]["version"] if rows else None,
        }
