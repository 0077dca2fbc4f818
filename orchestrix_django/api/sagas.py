"""The API's saga endpoints: sagas by id with their step history, and one saga."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrix.core.execution.saga import SagaStatus
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
from orchestrix_django.api.serializers import SagaPageSerializer, SagaSerializer
from orchestrix_django.models import SagaStateRecord

__all__ = ["SagaDetailView", "SagaListView"]


class SagaView(RecordView):
    """Base of the views over stored saga states."""

    model = SagaStateRecord
    item_serializer = SagaSerializer
    noun = "saga"

    def item(self, request: Request, row: dict[str, Any]) -> dict[str, Any]:
        """The state with the link to itself."""
        return {**row, "url": api_url(request, "saga-detail", saga_id=row["saga_id"])}


@extend_schema(
    summary="Sagas",
    parameters=[
        OpenApiParameter(
            "status", str, enum=[s.value for s in SagaStatus], description="Only this status."
        ),
        OpenApiParameter("saga_type", TEXT_SCHEMA, description="Only sagas of this type."),
        AFTER_ID,
        LIMIT,
        LINK,
    ],
    responses={200: SagaPageSerializer, 400: BAD_QUERY},
)
class SagaListView(SagaView):
    """Sagas by id, optionally of one type or status."""

    operation_id = "sagas_list"
    model_permissions = ((SagaStateRecord, Access.VIEW),)

    def get(self, request: Request) -> Response:
        """A page of sagas with their step history."""
        filters = {
            "status": choice(request, "status", [s.value for s in SagaStatus]),
            "saga_type": request.query_params.get("saga_type"),
        }
        return self.page(request, filters)


@extend_schema(summary="One saga", responses={200: SagaSerializer, 404: NOT_FOUND})
class SagaDetailView(SagaView):
    """One saga."""

    operation_id = "sagas_retrieve"
    model_permissions = ((SagaStateRecord, Access.VIEW),)

    def get(self, request: Request, saga_id: str) -> Response:
        """Its state and step history."""
        return self.detail(request, saga_id)
