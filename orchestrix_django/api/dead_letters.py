"""The API's dead letter endpoints: letters by id, one letter; retry, discard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status as http
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrix.core.messaging.dead_letter import DeadLetterStatus
from orchestrix_django.api.base import (
    AFTER_ID,
    BAD_QUERY,
    LIMIT,
    LINK,
    NOT_FOUND,
    TEXT_SCHEMA,
    RecordView,
    api_url,
    choice,
)
from orchestrix_django.api.permissions import Access
from orchestrix_django.api.serializers import (
    DeadLetterOperationSerializer,
    DeadLetterPageSerializer,
    DeadLetterSerializer,
)
from orchestrix_django.models import DeadLetterRecord
from orchestrix_django.operations import Outcome, discard_dead_letter, retry_dead_letter

__all__ = [
    "DeadLetterDetailView",
    "DeadLetterDiscardView",
    "DeadLetterListView",
    "DeadLetterRetryView",
]


class DeadLetterView(RecordView):
    """Base of the views over dead letters."""

    model = DeadLetterRecord
    item_serializer = DeadLetterSerializer
    noun = "dead letter"

    def item(self, request: Request, row: dict[str, Any]) -> dict[str, Any]:
        """The letter with the links to itself and to its operations."""
        letter_id = row["id"]
        return {
            **row,
            "url": api_url(request, "dead-letter-detail", dead_letter_id=letter_id),
            "retry_url": api_url(request, "dead-letter-retry", dead_letter_id=letter_id),
            "discard_url": api_url(request, "dead-letter-discard", dead_letter_id=letter_id),
        }

    def operate(
        self, request: Request, dead_letter_id: str, operation: Callable[[str], Outcome]
    ) -> Response:
        """Run ``operation`` on the letter; 200 with the letter as it is now, 409 when refused."""
        self.row(dead_letter_id)
        outcome = operation(dead_letter_id)
        row = self.row(dead_letter_id)  # 404 when deleted meanwhile
        body = {"ok": outcome.ok, "detail": outcome.text, "dead_letter": self.item(request, row)}
        code = http.HTTP_200_OK if outcome.ok else http.HTTP_409_CONFLICT
        return Response(DeadLetterOperationSerializer(body).data, status=code)


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
            "source", TEXT_SCHEMA, description="Only this source, e.g. projection:balances."
        ),
        AFTER_ID,
        LIMIT,
        LINK,
    ],
    responses={200: DeadLetterPageSerializer, 400: BAD_QUERY},
)
class DeadLetterListView(DeadLetterView):
    """Dead letters by id, optionally of one status or source."""

    operation_id = "dead_letters_list"
    model_permissions = ((DeadLetterRecord, Access.VIEW),)

    def get(self, request: Request) -> Response:
        """A page of dead letters."""
        filters = {
            "status": choice(request, "status", [s.value for s in DeadLetterStatus]),
            "source": request.query_params.get("source"),
        }
        return self.page(request, filters)


@extend_schema(summary="One dead letter", responses={200: DeadLetterSerializer, 404: NOT_FOUND})
class DeadLetterDetailView(DeadLetterView):
    """One dead letter."""

    operation_id = "dead_letters_retrieve"
    model_permissions = ((DeadLetterRecord, Access.VIEW),)

    def get(self, request: Request, dead_letter_id: str) -> Response:
        """The letter: the message, why it failed, how often."""
        return self.detail(request, dead_letter_id)


@extend_schema(
    summary="Retry a dead letter",
    request=None,
    responses={
        200: OpenApiResponse(DeadLetterOperationSerializer, description="Retried: it succeeded."),
        404: NOT_FOUND,
        409: OpenApiResponse(
            DeadLetterOperationSerializer,
            description="Not retried (not parked, or from a source that cannot be "
            "retried here), or it failed again.",
        ),
    },
)
class DeadLetterRetryView(DeadLetterView):
    """Handle a parked message again, by the projection or bus handler that failed on it.

    A failed retry counts on the letter, which stays parked (see docs/api.md, *Retry*).
    """

    operation_id = "dead_letters_retry"
    model_permissions = ((DeadLetterRecord, Access.CHANGE),)

    def post(self, request: Request, dead_letter_id: str) -> Response:
        """Retry it and return the letter as it is now."""
        return self.operate(request, dead_letter_id, retry_dead_letter)


@extend_schema(
    summary="Discard a dead letter",
    request=None,
    responses={
        200: OpenApiResponse(
            DeadLetterOperationSerializer,
            description="Discarded (a stopped projection moved past it).",
        ),
        404: NOT_FOUND,
        409: OpenApiResponse(DeadLetterOperationSerializer, description="Not parked any more."),
    },
)
class DeadLetterDiscardView(DeadLetterView):
    """Give up on a parked message (the admin's *Discard*, and a projection page's *Skip*).

    A projection's letter is skipped: the projection moves past its event and resumes.
    """

    operation_id = "dead_letters_discard"
    model_permissions = ((DeadLetterRecord, Access.CHANGE),)

    def post(self, request: Request, dead_letter_id: str) -> Response:
        """Discard it and return the letter as it is now."""
        return self.operate(request, dead_letter_id, discard_dead_letter)
