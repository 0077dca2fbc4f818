"""What the API's views share: the schema class, the base views, OpenAPI pieces, links.

:class:`RecordView` serves one model's rows (a keyset-paged list and one
row), the shape of the stream, saga and dead letter endpoints.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import models
from django.urls import reverse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orchestrix.core.eventsourcing.event_store import MAX_POSITION
from orchestrix_django.api.pagination import after_text, page_limit, paged
from orchestrix_django.api.permissions import OrchestrixAccess
from orchestrix_django.api.serializers import ErrorSerializer
from orchestrix_django.settings import orchestrix_settings

__all__ = [
    "AFTER_ID",
    "AFTER_NUMBER_SCHEMA",
    "BAD_QUERY",
    "LIMIT",
    "LINK",
    "NOT_FOUND",
    "TEXT_SCHEMA",
    "OrchestrixAPIView",
    "OrchestrixSchema",
    "RecordView",
    "api_url",
    "choice",
]

# -- schema pieces shared by the views ------------------------------------------------------

LIMIT = OpenApiParameter(
    "limit",
    {"type": "integer", "minimum": 1},
    description="Items per page (default: ORCHESTRIX['API_PAGE_SIZE']); larger values are "
    "capped at ORCHESTRIX['API_MAX_PAGE_SIZE'].",
)
#: ``after`` as a position or a version: what :func:`.pagination.after_number` accepts.
AFTER_NUMBER_SCHEMA = {"type": "integer", "minimum": 0, "maximum": MAX_POSITION}
#: Text in a query: anything but NUL characters, which no stored value holds (400).
TEXT_SCHEMA = {"type": "string", "pattern": "^[^\\x00]*$"}
AFTER_ID = OpenApiParameter(
    "after", TEXT_SCHEMA, description="Start after this id: the last id of the previous page."
)
LINK = OpenApiParameter(
    "Link",
    str,
    OpenApiParameter.HEADER,
    response=[200],
    description='The next page, when this one is full: `<url>; rel="next"`.',
)
NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such item.")
BAD_QUERY = OpenApiResponse(OpenApiTypes.OBJECT, description="A query parameter is invalid.")

#: The answers to a request the API's permission and authentication classes refuse.
_REFUSALS = {
    "401": "Not authenticated, with an authentication class that asks for credentials "
    "(WWW-Authenticate), or wrong credentials.",
    "403": "Not authenticated, or without the Django permission this endpoint needs.",
}


# -- the base views ------------------------------------------------------------------------


class OrchestrixSchema(AutoSchema):
    """drf-spectacular's schema of a view, with the view's own ``operation_id``.

    Without it, the list and detail views of one resource would share an
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

    Renderers and parsers are fixed, not taken from ``REST_FRAMEWORK``: the
    API's bodies are JSON whatever the project's defaults.
    """

    renderer_classes = [JSONRenderer]
    # The write endpoints take no body; any usual empty one (a form's, curl -d '') is fine.
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    schema = OrchestrixSchema()
    #: The view's operationId in the OpenAPI schema.
    operation_id: str | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Access checks first, then refuse NUL characters before any query sees them.

        No stored id or filter holds a NUL, and PostgreSQL raises on one in a
        query: an id with one is a 404, a query parameter with one a 400.
        """
        super().initial(request, *args, **kwargs)
        if any("\x00" in str(value) for value in kwargs.values()):
            raise NotFound("no such item: ids never contain NUL characters")
        bad = sorted(
            {key for key, value in request.query_params.items() if "\x00" in key + str(value)}
        )
        if bad:
            raise ValidationError(dict.fromkeys(bad, "must not contain NUL characters"))


class RecordView(OrchestrixAPIView):
    """Base of the views over one model's rows, each row as a dict of all its fields.

    The primary key orders the pages (:meth:`page`) and finds one row
    (:meth:`row`); :meth:`item` adds a row's links.
    """

    #: The model whose rows the view serves.
    model: ClassVar[type[models.Model]]
    #: The serializer of one item (a row with its links).
    item_serializer: ClassVar[type[serializers.BaseSerializer[Any]]]
    #: What a row is called in a 404's detail ("no saga 'x'").
    noun: ClassVar[str]

    def item(self, request: Request, row: dict[str, Any]) -> dict[str, Any]:
        """The row with its links."""
        return row

    def _rows(self) -> models.QuerySet[Any]:
        return self.model._default_manager.using(str(orchestrix_settings.DATABASE))

    def row(self, key: str) -> dict[str, Any]:
        """The row whose primary key is ``key``; 404 when there is none."""
        found: dict[str, Any] | None = self._rows().filter(pk=key).values().first()
        if found is None:
            raise NotFound(f"no {self.noun} {key!r}")
        return found

    def detail(self, request: Request, key: str) -> Response:
        """The answer for one row."""
        return Response(self.item_serializer(self.item(request, self.row(key))).data)

    def page(self, request: Request, filters: dict[str, str | None]) -> Response:
        """A page of rows after the ``after`` key, with the ``filters`` given (None: not asked)."""
        limit = page_limit(request)
        key = self.model._meta.pk.name
        rows = self._rows().order_by(key)
        given = {field: value for field, value in filters.items() if value is not None}
        if given:
            rows = rows.filter(**given)
        after = after_text(request)
        if after is not None:
            rows = rows.filter(**{f"{key}__gt": after})
        items = [self.item(request, row) for row in rows.values()[:limit]]
        last = items[-1][key] if items else None
        return paged(request, self.item_serializer(items, many=True).data, limit, last)


def choice(request: Request, name: str, allowed: list[str]) -> str | None:
    """A query parameter that must be one of ``allowed`` (None when absent)."""
    value = request.query_params.get(name)
    if value is not None and value not in allowed:
        raise ValidationError({name: f"expected one of {', '.join(allowed)}, got {value!r}"})
    return value


def api_url(request: Request, name: str, **kwargs: Any) -> str:
    """The absolute URL of one of the API's views, in the namespace it was included under."""
    match = request.resolver_match
    namespace = match.namespace if match is not None else ""
    path = reverse(f"{namespace}:{name}" if namespace else name, kwargs=kwargs)
    return str(request.build_absolute_uri(path))
