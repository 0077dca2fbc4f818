"""The API's root, the event log, events and streams.

Events are read through :class:`~orchestrix_django.storage.events.DjangoEventStore`:
decoded and upcast, the log showing committed events only, in position order.
A stored event that does not decode is the server's problem (500), not the client's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status as http
from rest_framework.exceptions import APIException, NotFound
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrix.core.common.exceptions import EventDecodeError, UnknownEventTypeError, UpcastError
from orchestrix_django.api.base import (
    AFTER_ID,
    AFTER_NUMBER_SCHEMA,
    BAD_QUERY,
    LIMIT,
    LINK,
    NOT_FOUND,
    TEXT_SCHEMA,
    OrchestrixAPIView,
    RecordView,
    api_url,
)
from orchestrix_django.api.pagination import after_number, page_limit, paged_array
from orchestrix_django.api.permissions import Access
from orchestrix_django.api.renderers import (
    CLOUDEVENT,
    CLOUDEVENTS_BATCH,
    CloudEventBatchRenderer,
    CloudEventRenderer,
    ErrorsAsJSON,
)
from orchestrix_django.api.serializers import (
    ApiRootSerializer,
    CloudEventSerializer,
    ErrorSerializer,
    StreamPageSerializer,
    StreamSerializer,
)
from orchestrix_django.models import EventRecord, StreamRecord
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.cloudevents import stored_cloudevent
from orchestrix_django.storage.events import DjangoEventStore

__all__ = [
    "ApiRootView",
    "EventDetailView",
    "EventLogView",
    "EventsView",
    "StreamDetailView",
    "StreamEventsView",
    "StreamListView",
    "UnreadableEvent",
]


_UNREADABLE = OpenApiResponse(
    ErrorSerializer, description="A stored event does not decode or upcast (see the detail)."
)


def _events_responses(many: bool) -> dict[Any, Any]:
    media = CLOUDEVENTS_BATCH if many else CLOUDEVENT
    body = CloudEventSerializer(many=many)
    return {
        (200, media): body,
        (200, "application/json"): body,
        400: BAD_QUERY,
        404: NOT_FOUND,
        500: _UNREADABLE,
    }


class UnreadableEvent(APIException):
    """A stored event does not decode or upcast: the stored data, not the request, is wrong."""

    status_code = http.HTTP_500_INTERNAL_SERVER_ERROR
    default_code = "unreadable_event"
    default_detail = "A stored event cannot be read."


@contextmanager
def _readable() -> Iterator[None]:
    """Turn the store's decoding errors into :class:`UnreadableEvent`."""
    try:
        yield
    except (EventDecodeError, UnknownEventTypeError, UpcastError) as error:
        raise UnreadableEvent(
            f"{error}. Run `python manage.py orchestrix_verify` to find every such event."
        ) from error


class EventsView(ErrorsAsJSON, OrchestrixAPIView):
    """Base of the views that serve events: CloudEvents media types, errors as plain JSON."""

    renderer_classes = [CloudEventBatchRenderer, JSONRenderer]


# -- the root ----------------------------------------------------------------------------


@extend_schema(summary="Where everything is", responses={200: ApiRootSerializer})
class ApiRootView(OrchestrixAPIView):
    """Links to every list of the API and to its OpenAPI schema."""

    operation_id = "root"
    model_permissions = ()

    def get(self, request: Request) -> Response:
        """The links."""
        return Response(
            ApiRootSerializer(
                {
                    "streams": api_url(request, "stream-list"),
                    "events": api_url(request, "event-log"),
                    "projections": api_url(request, "projection-list"),
                    "sagas": api_url(request, "saga-list"),
                    "dead_letters": api_url(request, "dead-letter-list"),
                    "schema": api_url(request, "schema"),
                }
            ).data
        )


# -- events --------------------------------------------------------------------------------


@extend_schema(
    summary="The global log after a position",
    description="Events with a position greater than `after`, in position order, "
    "decoded and upcast; only committed events, and never one that commits later "
    "below a position already returned. To follow the log, ask again with `after` "
    "set to the last event's `position`.",
    parameters=[
        OpenApiParameter(
            "after",
            AFTER_NUMBER_SCHEMA,
            description="Start after this position (default: 0, the start).",
        ),
        LIMIT,
        LINK,
    ],
    responses=_events_responses(many=True),
)
class EventLogView(EventsView):
    """The global log: every stream's events in position order, after a position."""

    operation_id = "events_list"
    model_permissions = ((EventRecord, Access.VIEW),)

    def get(self, request: Request) -> Response:
        """A page of the log."""
        after = after_number(request)
        limit = page_limit(request, cap=int(orchestrix_settings.MAX_READ_ALL_LIMIT))
        store = DjangoEventStore()
        with _readable():
            events = store.read_all(after, limit)
            body = [stored_cloudevent(stored, store.codec) for stored in events]
        return paged_array(request, body, limit, events[-1].position if events else None)


@extend_schema(summary="One event", responses=_events_responses(many=False))
class EventDetailView(EventsView):
    """One event, by id."""

    operation_id = "events_retrieve"
    model_permissions = ((EventRecord, Access.VIEW),)
    renderer_classes = [CloudEventRenderer, JSONRenderer]

    def get(self, request: Request, event_id: str) -> Response:
        """The event, decoded and upcast."""
        store = DjangoEventStore()
        position = (
            EventRecord.objects.using(store.using)
            .filter(event_id=event_id)
            .values_list("position", flat=True)
            .first()
        )
        if position is None:
            raise NotFound(f"no event {event_id!r}")
        with _readable():
            found = store.read_all(position - 1, 1)
            if not found or found[0].position != position:
                raise NotFound(f"no event {event_id!r}")
            return Response(stored_cloudevent(found[0], store.codec))


# -- streams -------------------------------------------------------------------------------


class StreamView(RecordView):
    """Base of the views over stream summaries."""

    model = StreamRecord
    item_serializer = StreamSerializer
    noun = "stream"

    def item(self, request: Request, row: dict[str, Any]) -> dict[str, Any]:
        """The summary with the links to itself and to its events."""
        stream_id = row["stream_id"]
        return {
            **row,
            "url": api_url(request, "stream-detail", stream_id=stream_id),
            "events_url": api_url(request, "stream-events", stream_id=stream_id),
        }


@extend_schema(
    summary="Streams",
    parameters=[
        OpenApiParameter(
            "aggregate_type",
            TEXT_SCHEMA,
            description="Only the streams of this aggregate type (the class name "
            "AggregateRepository labels them with).",
        ),
        AFTER_ID,
        LIMIT,
        LINK,
    ],
    responses={200: StreamPageSerializer, 400: BAD_QUERY},
)
class StreamListView(StreamView):
    """Streams by id, optionally of one aggregate type."""

    operation_id = "streams_list"
    model_permissions = ((StreamRecord, Access.VIEW),)

    def get(self, request: Request) -> Response:
        """A page of streams."""
        return self.page(request, {"aggregate_type": request.query_params.get("aggregate_type")})


@extend_schema(summary="One stream", responses={200: StreamSerializer, 404: NOT_FOUND})
class StreamDetailView(StreamView):
    """One stream's summary."""

    operation_id = "streams_retrieve"
    model_permissions = ((StreamRecord, Access.VIEW),)

    def get(self, request: Request, stream_id: str) -> Response:
        """The stream's summary, with the link to its events."""
        return self.detail(request, stream_id)


@extend_schema(
    summary="A stream's events",
    parameters=[
        OpenApiParameter(
            "after",
            AFTER_NUMBER_SCHEMA,
            description="Start after this version (default: 0, the start).",
        ),
        LIMIT,
        LINK,
    ],
    responses=_events_responses(many=True),
)
class StreamEventsView(EventsView):
    """A stream's events in version order, after a version."""

    operation_id = "streams_events_list"
    model_permissions = ((StreamRecord, Access.VIEW), (EventRecord, Access.VIEW))

    def get(self, request: Request, stream_id: str) -> Response:
        """A page of the stream's events, decoded and upcast."""
        after = after_number(request)
        limit = page_limit(request)
        store = DjangoEventStore()
        if store.stream_version(stream_id) == 0:
            raise NotFound(f"no stream {stream_id!r}")
        with _readable():
            events = list(islice(store.iter_stream(stream_id, after), limit))
            body = [stored_cloudevent(stored, store.codec) for stored in events]
        return paged_array(request, body, limit, events[-1].version if events else None)
