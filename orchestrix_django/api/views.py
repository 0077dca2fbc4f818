"""The API's views: the log, streams, projections, sagas and dead letters; rebuild and retry.

See :mod:`orchestrix_django.api` for the URLs, media types and access rules,
and :mod:`orchestrix_django.api.pagination` for paging.

Events are read through :class:`~orchestrix_django.storage.events.DjangoEventStore`,
so they come decoded and upcast to their current class, and the global log
only ever shows committed events in position order. A stored event that
does not decode or upcast is a server-side problem (HTTP 500, naming it),
not the client's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any

from django.contrib import messages
from django.db import models
from django.urls import reverse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework import status as http
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orchestrix.core.common.exceptions import EventDecodeError, UnknownEventTypeError, UpcastError
from orchestrix.core.eventsourcing.event_store import MAX_POSITION
from orchestrix.core.execution.saga import SagaStatus
from orchestrix.core.messaging.dead_letter import DeadLetterStatus
from orchestrix_django.api.pagination import (
    after_number,
    after_text,
    next_url,
    page_limit,
    paged,
    set_next_link,
)
from orchestrix_django.api.permissions import Access, OrchestrixAccess
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
    DeadLetterOperationSerializer,
    DeadLetterPageSerializer,
    DeadLetterSerializer,
    ErrorSerializer,
    ProjectionListSerializer,
    ProjectionOperationSerializer,
    ProjectionSerializer,
    SagaPageSerializer,
    SagaSerializer,
    StreamPageSerializer,
    StreamSerializer,
)
from orchestrix_django.models import (
    DeadLetterRecord,
    EventRecord,
    ProjectionStateRecord,
    SagaStateRecord,
    StreamRecord,
)
from orchestrix_django.operations import (
    Outcome,
    discard_dead_letter,
    pause_projection,
    rebuild_projection,
    resume_projection,
    retry_dead_letter,
)
from orchestrix_django.projections.runner import ProjectionStatus, projection_status, projections
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.cloudevents import stored_cloudevent
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.projection_state import DjangoProjectionStateStore
from orchestrix_django.storage.saga_state import SAGA_STATE_FIELDS

__all__ = [
    "ApiRootView",
    "DeadLetterDetailView",
    "DeadLetterDiscardView",
    "DeadLetterListView",
    "DeadLetterRetryView",
    "EventDetailView",
    "EventLogView",
    "EventsView",
    "OrchestrixAPIView",
    "OrchestrixSchema",
    "ProjectionDetailView",
    "ProjectionListView",
    "ProjectionPauseView",
    "ProjectionRebuildView",
    "ProjectionResumeView",
    "SagaDetailView",
    "SagaListView",
    "StreamDetailView",
    "StreamEventsView",
    "StreamListView",
    "UnreadableEvent",
]

_STREAM_FIELDS = (
    "stream_id",
    "aggregate_type",
    "version",
    "first_position",
    "last_position",
    "created_at",
    "updated_at",
)
_SAGA_FIELDS = (*SAGA_STATE_FIELDS, "deadline")
_LETTER_FIELDS = (
    "id",
    "source",
    "status",
    "message_type",
    "message_id",
    "payload",
    "reason",
    "error_type",
    "traceback",
    "handler",
    "attempts",
    "position",
    "stream_id",
    "version",
    "created_at",
    "resolved_at",
)

# -- schema pieces shared by the views ------------------------------------------------------

_LIMIT = OpenApiParameter(
    "limit",
    {"type": "integer", "minimum": 1},
    description="Items per page (default: ORCHESTRIX['API_PAGE_SIZE']); larger values are "
    "capped at ORCHESTRIX['API_MAX_PAGE_SIZE'].",
)
#: ``after`` as a position or a version: what :func:`after_number` accepts.
_AFTER_NUMBER_SCHEMA = {"type": "integer", "minimum": 0, "maximum": MAX_POSITION}
#: Text in a query: anything but NUL characters, which no stored value holds (400).
_TEXT_SCHEMA = {"type": "string", "pattern": "^[^\\x00]*$"}
_AFTER_ID = OpenApiParameter(
    "after", _TEXT_SCHEMA, description="Start after this id: the last id of the previous page."
)
_LINK = OpenApiParameter(
    "Link",
    str,
    OpenApiParameter.HEADER,
    response=[200],
    description='The next page, when this one is full: `<url>; rel="next"`.',
)
_NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such item.")
_BAD_QUERY = OpenApiResponse(OpenApiTypes.OBJECT, description="A query parameter is invalid.")
_UNREADABLE = OpenApiResponse(
    ErrorSerializer, description="A stored event does not decode or upcast (see the detail)."
)


#: The answers to a request the API's permission and authentication classes refuse.
_REFUSALS = {
    "401": "Not authenticated, with an authentication class that asks for credentials "
    "(WWW-Authenticate), or wrong credentials.",
    "403": "Not authenticated, or without the Django permission this endpoint needs.",
}


def _events_responses(many: bool) -> dict[Any, Any]:
    media = CLOUDEVENTS_BATCH if many else CLOUDEVENT
    body = CloudEventSerializer(many=many)
    return {
        (200, media): body,
        (200, "application/json"): body,
        400: _BAD_QUERY,
        404: _NOT_FOUND,
        500: _UNREADABLE,
    }


# -- the base views ------------------------------------------------------------------------


class OrchestrixSchema(AutoSchema):
    """drf-spectacular's schema of a view, with the view's own ``operation_id``.

    The list and detail views of one resource would otherwise share an
    operationId (``streams_retrieve``), which drf-spectacular warns about.
    """

    def get_operation_id(self) -> str:
        """The view's ``operation_id``, else drf-spectacular's guess."""
        own: str | None = getattr(self.view, "operation_id", None)
        return own or str(super().get_operation_id())

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        """The operation, with the refusals every endpoint can answer (401, 403)."""
        operation: dict[str, Any] | None = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        error = self.resolve_serializer(ErrorSerializer, "response").ref
        for code, description in _REFUSALS.items():
            operation["responses"].setdefault(
                code,
                {"content": {"application/json": {"schema": error}}, "description": description},
            )
        return operation


class OrchestrixAPIView(OrchestrixAccess, APIView):
    """Base of the API's views: the configured access rules, JSON, and a drf-spectacular schema.

    Renderers and parsers are fixed here rather than taken from the
    project's ``REST_FRAMEWORK`` settings: the API's bodies are JSON whatever
    the project's defaults.
    """

    renderer_classes = [JSONRenderer]
    # The write endpoints take no body; any usual empty one (a form's, curl -d '') is fine.
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    schema = OrchestrixSchema()
    #: The view's operationId in the OpenAPI schema.
    operation_id: str | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Access checks first, then refuse NUL characters before any query sees them.

        No id or filter can hold a NUL (saves refuse them), and PostgreSQL
        raises on one in a query's text: an id with one is a 404, a query
        parameter with one a 400 naming it.
        """
        super().initial(request, *args, **kwargs)
        if any("\x00" in str(value) for value in kwargs.values()):
            raise NotFound("no such item: ids never contain NUL characters")
        bad = sorted({key for key, value in request.query_params.items() if "\x00" in key + value})
        if bad:
            raise ValidationError(dict.fromkeys(bad, "must not contain NUL characters"))


class EventsView(ErrorsAsJSON, OrchestrixAPIView):
    """Base of the views that serve events: CloudEvents media types, errors as plain JSON."""

    renderer_classes = [CloudEventBatchRenderer, JSONRenderer]


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


def _url(request: Request, name: str, **kwargs: Any) -> str:
    """The absolute URL of one of the API's views, in the namespace it was included under."""
    match = request.resolver_match
    namespace = match.namespace if match is not None else ""
    path = reverse(f"{namespace}:{name}" if namespace else name, kwargs=kwargs)
    return str(request.build_absolute_uri(path))


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
                    "streams": _url(request, "stream-list"),
                    "events": _url(request, "event-log"),
                    "projections": _url(request, "projection-list"),
                    "sagas": _url(request, "saga-list"),
                    "dead_letters": _url(request, "dead-letter-list"),
                    "schema": _url(request, "schema"),
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
            _AFTER_NUMBER_SCHEMA,
            description="Start after this position (default: 0, the start).",
        ),
        _LIMIT,
        _LINK,
    ],
    responses=_events_responses(many=True),
)
class EventLogView(EventsView):
    """The global log: every stream's events in position order, after a position."""

    operation_id = "events_list"
    model_permissions = ((EventRecord, Access.VIEW),)

    def get(self, request: Request) -> Response:
        """A page of the log (see the pagination module)."""
        after = after_number(request)
        limit = page_limit(request, cap=int(orchestrix_settings.MAX_READ_ALL_LIMIT))
        store = DjangoEventStore()
        with _readable():
            events = store.read_all(after, limit)
            body = [stored_cloudevent(stored, store.codec) for stored in events]
        url = next_url(request, events[-1].position) if len(events) >= limit else None
        return set_next_link(Response(body), url)


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


def _stream_data(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    stream_id = row["stream_id"]
    return {
        **row,
        "url": _url(request, "stream-detail", stream_id=stream_id),
        "events_url": _url(request, "stream-events", stream_id=stream_id),
    }


@extend_schema(
    summary="Streams",
    parameters=[
        OpenApiParameter(
            "aggregate_type",
            _TEXT_SCHEMA,
            description="Only the streams of this aggregate type (the class name "
            "AggregateRepository labels them with).",
        ),
        _AFTER_ID,
        _LIMIT,
        _LINK,
    ],
    responses={200: StreamPageSerializer, 400: _BAD_QUERY},
)
class StreamListView(OrchestrixAPIView):
    """Streams by id, optionally of one aggregate type."""

    operation_id = "streams_list"
    model_permissions = ((StreamRecord, Access.VIEW),)

    def get(self, request: Request) -> Response:
        """A page of streams."""
        filters = {"aggregate_type": request.query_params.get("aggregate_type")}
        return _keyset_page(
            request,
            StreamRecord,
            "stream_id",
            filters,
            _STREAM_FIELDS,
            _stream_data,
            StreamSerializer,
        )


@extend_schema(summary="One stream", responses={200: StreamSerializer, 404: _NOT_FOUND})
class StreamDetailView(OrchestrixAPIView):
    """One stream's summary."""

    operation_id = "streams_retrieve"
    model_permissions = ((StreamRecord, Access.VIEW),)

    def get(self, request: Request, stream_id: str) -> Response:
        """The stream's summary, with the link to its events."""
        row = (
            StreamRecord.objects.using(str(orchestrix_settings.DATABASE))
            .filter(pk=stream_id)
            .values(*_STREAM_FIELDS)
            .first()
        )
        if row is None:
            raise NotFound(f"no stream {stream_id!r}")
        return Response(StreamSerializer(_stream_data(request, row)).data)


@extend_schema(
    summary="A stream's events",
    parameters=[
        OpenApiParameter(
            "after",
            _AFTER_NUMBER_SCHEMA,
            description="Start after this version (default: 0, the start).",
        ),
        _LIMIT,
        _LINK,
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
        url = next_url(request, events[-1].version) if len(events) >= limit else None
        return set_next_link(Response(body), url)


# -- projections ---------------------------------------------------------------------------


def _projection_data(
    request: Request, status: ProjectionStatus, configured: bool
) -> dict[str, Any]:
    pid = status.projection_id
    return {
        **dataclasses.asdict(status),
        "configured": configured,
        "url": _url(request, "projection-detail", projection_id=pid),
        "rebuild_url": _url(request, "projection-rebuild", projection_id=pid)
        if configured
        else None,
        "pause_url": _url(request, "projection-pause", projection_id=pid),
        "resume_url": _url(request, "projection-resume", projection_id=pid),
    }


def _known_projection(projection_id: str) -> bool:
    """Configured here, or with a stored state (whose runners may live elsewhere)."""
    return (
        projection_id in projections()
        or DjangoProjectionStateStore().load_state(projection_id) is not None
    )


@extend_schema(summary="Projections", responses={200: ProjectionListSerializer})
class ProjectionListView(OrchestrixAPIView):
    """Every configured projection, and every other one with a stored checkpoint."""

    operation_id = "projections_list"
    model_permissions = ((ProjectionStateRecord, Access.VIEW),)

    def get(self, request: Request) -> Response:
        """Position, lag and health of each (a handful: not paginated)."""
        configured = projections()
        head = DjangoEventStore().head_position()
        stored = {state.projection_id for state in DjangoProjectionStateStore().list_states()}
        results = [
            _projection_data(request, projection_status(pid, head=head), pid in configured)
            for pid in sorted(set(configured) | stored)
        ]
        return Response(
            ProjectionListSerializer({"results": results}).data,
        )


@extend_schema(summary="One projection", responses={200: ProjectionSerializer, 404: _NOT_FOUND})
class ProjectionDetailView(OrchestrixAPIView):
    """One projection."""

    operation_id = "projections_retrieve"
    model_permissions = ((ProjectionStateRecord, Access.VIEW),)

    def get(self, request: Request, projection_id: str) -> Response:
        """Its position, lag, health and parked events."""
        if not _known_projection(projection_id):
            raise NotFound(f"no projection {projection_id!r}")
        status = projection_status(projection_id)
        configured = projection_id in projections()
        return Response(ProjectionSerializer(_projection_data(request, status, configured)).data)


def _projection_outcome(
    request: Request, projection_id: str, outcome: Outcome, code: int
) -> Response:
    """The answer to an operation on a projection: what it did, and the projection now."""
    status = projection_status(projection_id)
    body = {
        "ok": outcome.ok,
        "detail": outcome.text,
        "projection": _projection_data(request, status, projection_id in projections()),
    }
    return Response(ProjectionOperationSerializer(body).data, status=code)


@extend_schema(
    summary="Rebuild a projection",
    request=None,
    responses={
        200: OpenApiResponse(ProjectionOperationSerializer, description="Rebuilt: at the head."),
        202: OpenApiResponse(
            ProjectionOperationSerializer,
            description="Reset and partly rebuilt: the runners catch up the rest.",
        ),
        404: _NOT_FOUND,
        409: OpenApiResponse(
            ProjectionOperationSerializer,
            description="Reset, then stopped at a failing event (see its dead letter).",
        ),
        500: OpenApiResponse(ProjectionOperationSerializer, description="The reset failed."),
    },
)
class ProjectionRebuildView(OrchestrixAPIView):
    """Rebuild a projection in place: reset it, then catch up for a bounded time.

    The read model and checkpoint are reset in one transaction, then the
    projection catches up within the request for at most
    ``ORCHESTRIX["API_REBUILD_SECONDS"]``; the runners (``orchestrix_run`` or
    the Celery tasks) catch up the rest, batch by batch. An HTTP request is
    no place for a long replay (proxies time out, workers get recycled), and
    stopping early loses nothing: every batch commits with its checkpoint.
    Readers see the read model fill up meanwhile; ``orchestrix_rebuild``
    rebuilds without them noticing.
    """

    operation_id = "projections_rebuild"
    model_permissions = ((ProjectionStateRecord, Access.CHANGE),)

    def post(self, request: Request, projection_id: str) -> Response:
        """Reset and catch up (see the class docs)."""
        if projection_id not in projections():
            raise NotFound(
                f"no projection {projection_id!r} is configured (ORCHESTRIX['PROJECTIONS'])"
            )
        outcome = rebuild_projection(
            projection_id, seconds=float(orchestrix_settings.API_REBUILD_SECONDS)
        )
        if outcome.level >= messages.ERROR:
            code = http.HTTP_500_INTERNAL_SERVER_ERROR
        elif not outcome.ok:
            code = http.HTTP_409_CONFLICT
        elif projection_status(projection_id).lag == 0:
            code = http.HTTP_200_OK
        else:
            code = http.HTTP_202_ACCEPTED
        return _projection_outcome(request, projection_id, outcome, code)


_PAUSE_RESPONSES = {
    200: OpenApiResponse(ProjectionOperationSerializer, description="Done."),
    404: _NOT_FOUND,
}


@extend_schema(summary="Pause a projection", request=None, responses=_PAUSE_RESPONSES)
class ProjectionPauseView(OrchestrixAPIView):
    """Stop the runners from advancing a projection (the admin's *Pause*)."""

    operation_id = "projections_pause"
    model_permissions = ((ProjectionStateRecord, Access.CHANGE),)

    def post(self, request: Request, projection_id: str) -> Response:
        """Set its paused flag."""
        if not _known_projection(projection_id):
            raise NotFound(f"no projection {projection_id!r}")
        outcome = pause_projection(projection_id)
        return _projection_outcome(request, projection_id, outcome, http.HTTP_200_OK)


@extend_schema(summary="Resume a projection", request=None, responses=_PAUSE_RESPONSES)
class ProjectionResumeView(OrchestrixAPIView):
    """Let the runners advance a paused projection again (the admin's *Resume*)."""

    operation_id = "projections_resume"
    model_permissions = ((ProjectionStateRecord, Access.CHANGE),)

    def post(self, request: Request, projection_id: str) -> Response:
        """Clear its paused flag."""
        if not _known_projection(projection_id):
            raise NotFound(f"no projection {projection_id!r}")
        outcome = resume_projection(projection_id)
        return _projection_outcome(request, projection_id, outcome, http.HTTP_200_OK)


# -- sagas ---------------------------------------------------------------------------------


def _keyset_page(
    request: Request,
    model: type[models.Model],
    key: str,
    filters: dict[str, str | None],
    fields: Sequence[str],
    to_data: Callable[[Request, dict[str, Any]], dict[str, Any]],
    serializer: type[serializers.BaseSerializer],
) -> Response:
    """A page of ``model``'s rows by ``key``, after the ``after`` key, with the
    ``filters`` that were given (None: not asked for), as ``serializer`` data."""
    limit = page_limit(request)
    rows = model._default_manager.using(str(orchestrix_settings.DATABASE)).order_by(key)
    given = {field: value for field, value in filters.items() if value is not None}
    if given:
        rows = rows.filter(**given)
    after = after_text(request)
    if after is not None:
        rows = rows.filter(**{f"{key}__gt": after})
    page = [to_data(request, row) for row in rows.values(*fields)[:limit]]
    last = page[-1][key] if page else None
    return paged(request, serializer(page, many=True).data, limit, last)


def _choice(request: Request, name: str, allowed: list[str]) -> str | None:
    """A query parameter that must be one of ``allowed`` (None when absent)."""
    value = request.query_params.get(name)
    if value is not None and value not in allowed:
        raise ValidationError({name: f"expected one of {', '.join(allowed)}, got {value!r}"})
    return value


def _saga_data(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "url": _url(request, "saga-detail", saga_id=row["saga_id"])}


@extend_schema(
    summary="Sagas",
    parameters=[
        OpenApiParameter(
            "status", str, enum=[s.value for s in SagaStatus], description="Only this status."
        ),
        OpenApiParameter("saga_type", _TEXT_SCHEMA, description="Only sagas of this type."),
        _AFTER_ID,
        _LIMIT,
        _LINK,
    ],
    responses={200: SagaPageSerializer, 400: _BAD_QUERY},
)
class SagaListView(OrchestrixAPIView):
    """Sagas by id, optionally of one type or status."""

    operation_id = "sagas_list"
    model_permissions = ((SagaStateRecord, Access.VIEW),)

    def get(self, request: Request) -> Response:
        """A page of sagas with their step history."""
        filters = {
            "status": _choice(request, "status", [s.value for s in SagaStatus]),
            "saga_type": request.query_params.get("saga_type"),
        }
        return _keyset_page(
            request, SagaStateRecord, "saga_id", filters, _SAGA_FIELDS, _saga_data, SagaSerializer
        )


@extend_schema(summary="One saga", responses={200: SagaSerializer, 404: _NOT_FOUND})
class SagaDetailView(OrchestrixAPIView):
    """One saga."""

    operation_id = "sagas_retrieve"
    model_permissions = ((SagaStateRecord, Access.VIEW),)

    def get(self, request: Request, saga_id: str) -> Response:
        """Its state and step history."""
        row = (
            SagaStateRecord.objects.using(str(orchestrix_settings.DATABASE))
            .filter(pk=saga_id)
            .values(*_SAGA_FIELDS)
            .first()
        )
        if row is None:
            raise NotFound(f"no saga {saga_id!r}")
        return Response(SagaSerializer(_saga_data(request, row)).data)


# -- dead letters --------------------------------------------------------------------------


def _letter_data(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    letter_id = row["id"]
    return {
        **row,
        "url": _url(request, "dead-letter-detail", dead_letter_id=letter_id),
        "retry_url": _url(request, "dead-letter-retry", dead_letter_id=letter_id),
        "discard_url": _url(request, "dead-letter-discard", dead_letter_id=letter_id),
    }


def _letter_row(dead_letter_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (
        DeadLetterRecord.objects.using(str(orchestrix_settings.DATABASE))
        .filter(pk=dead_letter_id)
        .values(*_LETTER_FIELDS)
        .first()
    )
    return found


@extend_schema(
    summary="Dead letters",
    parameters=[
        OpenApiParameter(
            "status",
            str,
            enum=[s.value for s in DeadLetterStatus],
            description="Only this status (default: all).",
        ),
        OpenApiParameter(
            "source", _TEXT_SCHEMA, description="Only this source, e.g. projection:balances."
        ),
        _AFTER_ID,
        _LIMIT,
        _LINK,
    ],
    responses={200: DeadLetterPageSerializer, 400: _BAD_QUERY},
)
class DeadLetterListView(OrchestrixAPIView):
    """Dead letters by id, optionally of one status or source."""

    operation_id = "dead_letters_list"
    model_permissions = ((DeadLetterRecord, Access.VIEW),)

    def get(self, request: Request) -> Response:
        """A page of dead letters."""
        filters = {
            "status": _choice(request, "status", [s.value for s in DeadLetterStatus]),
            "source": request.query_params.get("source"),
        }
        return _keyset_page(
            request,
            DeadLetterRecord,
            "id",
            filters,
            _LETTER_FIELDS,
            _letter_data,
            DeadLetterSerializer,
        )


@extend_schema(summary="One dead letter", responses={200: DeadLetterSerializer, 404: _NOT_FOUND})
class DeadLetterDetailView(OrchestrixAPIView):
    """One dead letter."""

    operation_id = "dead_letters_retrieve"
    model_permissions = ((DeadLetterRecord, Access.VIEW),)

    def get(self, request: Request, dead_letter_id: str) -> Response:
        """The letter: the message, why it failed, how often."""
        row = _letter_row(dead_letter_id)
        if row is None:
            raise NotFound(f"no dead letter {dead_letter_id!r}")
        return Response(DeadLetterSerializer(_letter_data(request, row)).data)


def _letter_operation(
    request: Request, dead_letter_id: str, operation: Callable[[str], Outcome]
) -> Response:
    """Run ``operation`` on the letter; 200 with the letter as it is now, 409 when refused."""
    if _letter_row(dead_letter_id) is None:
        raise NotFound(f"no dead letter {dead_letter_id!r}")
    outcome = operation(dead_letter_id)
    row = _letter_row(dead_letter_id)
    if row is None:  # deleted meanwhile
        raise NotFound(f"no dead letter {dead_letter_id!r}")
    body = {"ok": outcome.ok, "detail": outcome.text, "dead_letter": _letter_data(request, row)}
    code = http.HTTP_200_OK if outcome.ok else http.HTTP_409_CONFLICT
    return Response(DeadLetterOperationSerializer(body).data, status=code)


@extend_schema(
    summary="Retry a dead letter",
    request=None,
    responses={
        200: OpenApiResponse(DeadLetterOperationSerializer, description="Retried: it succeeded."),
        404: _NOT_FOUND,
        409: OpenApiResponse(
            DeadLetterOperationSerializer,
            description="Not retried (not parked, or from a source that cannot be "
            "retried here), or it failed again.",
        ),
    },
)
class DeadLetterRetryView(OrchestrixAPIView):
    """Handle a parked message again, by the projection or bus handler that failed on it.

    A projection's letter is retried through
    :func:`~orchestrix_django.projections.runner.retry_parked` (a stopped projection
    resumes from the event and catches up), a bus letter by the handler of
    that name subscribed in this process. A failed retry is recorded on the
    letter (``attempts + 1``), which stays parked.
    """

    operation_id = "dead_letters_retry"
    model_permissions = ((DeadLetterRecord, Access.CHANGE),)

    def post(self, request: Request, dead_letter_id: str) -> Response:
        """Retry it and return the letter as it is now."""
        return _letter_operation(request, dead_letter_id, retry_dead_letter)


@extend_schema(
    summary="Discard a dead letter",
    request=None,
    responses={
        200: OpenApiResponse(
            DeadLetterOperationSerializer,
            description="Discarded (a stopped projection moved past it).",
        ),
        404: _NOT_FOUND,
        409: OpenApiResponse(DeadLetterOperationSerializer, description="Not parked any more."),
    },
)
class DeadLetterDiscardView(OrchestrixAPIView):
    """Give up on a parked message (the admin's *Discard*, and a projection page's *Skip*).

    A projection's letter is skipped through
    :func:`~orchestrix_django.projections.runner.skip_parked`: the projection moves
    past the event and resumes.
    """

    operation_id = "dead_letters_discard"
    model_permissions = ((DeadLetterRecord, Access.CHANGE),)

    def post(self, request: Request, dead_letter_id: str) -> Response:
        """Discard it and return the letter as it is now."""
        return _letter_operation(request, dead_letter_id, discard_dead_letter)
