"""The API's projection endpoints: position, lag, health; rebuild, pause, resume."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status as http
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrix_django.api.base import NOT_FOUND, OrchestrixAPIView, api_url
from orchestrix_django.api.permissions import Access
from orchestrix_django.api.serializers import (
    ProjectionListSerializer,
    ProjectionOperationSerializer,
    ProjectionSerializer,
)
from orchestrix_django.models import ProjectionStateRecord
from orchestrix_django.operations import (
    Outcome,
    pause_projection,
    rebuild_projection,
    resume_projection,
)
from orchestrix_django.projections.registry import projections
from orchestrix_django.projections.status import ProjectionStatus, projection_status
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.projection_state import DjangoProjectionStateStore

__all__ = [
    "ProjectionDetailView",
    "ProjectionListView",
    "ProjectionPauseView",
    "ProjectionRebuildView",
    "ProjectionResumeView",
]


def _projection_data(
    request: Request, status: ProjectionStatus, configured: bool
) -> dict[str, Any]:
    pid = status.projection_id
    return {
        **dataclasses.asdict(status),
        "configured": configured,
        "url": api_url(request, "projection-detail", projection_id=pid),
        "rebuild_url": api_url(request, "projection-rebuild", projection_id=pid)
        if configured
        else None,
        "pause_url": api_url(request, "projection-pause", projection_id=pid),
        "resume_url": api_url(request, "projection-resume", projection_id=pid),
    }


def _known_projection(projection_id: str) -> bool:
    """Configured here, or with a stored state (whose runners may live elsewhere)."""
    return (
        projection_id in projections()
        or DjangoProjectionStateStore().load_state(projection_id) is not None
    )


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


def _switch(request: Request, projection_id: str, operation: Callable[[str], Outcome]) -> Response:
    """Pause or resume a known projection; 200 with the projection as it is now."""
    if not _known_projection(projection_id):
        raise NotFound(f"no projection {projection_id!r}")
    return _projection_outcome(request, projection_id, operation(projection_id), http.HTTP_200_OK)


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
        return Response(ProjectionListSerializer({"results": results}).data)


@extend_schema(summary="One projection", responses={200: ProjectionSerializer, 404: NOT_FOUND})
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


@extend_schema(
    summary="Rebuild a projection",
    request=None,
    responses={
        200: OpenApiResponse(ProjectionOperationSerializer, description="Rebuilt: at the head."),
        202: OpenApiResponse(
            ProjectionOperationSerializer,
            description="Reset and partly rebuilt: the runners catch up the rest.",
        ),
        404: NOT_FOUND,
        409: OpenApiResponse(
            ProjectionOperationSerializer,
            description="Reset, then stopped at a failing event (see its dead letter).",
        ),
        500: OpenApiResponse(ProjectionOperationSerializer, description="The reset failed."),
    },
)
class ProjectionRebuildView(OrchestrixAPIView):
    """Rebuild a projection in place: reset it, then catch up for a bounded time.

    The runners catch up what ``ORCHESTRIX["API_REBUILD_SECONDS"]`` leaves
    (see docs/api.md, *Rebuild*).
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
        code: int
        if outcome.level >= messages.ERROR:
            code = http.HTTP_500_INTERNAL_SERVER_ERROR
        elif not outcome.ok:
            code = http.HTTP_409_CONFLICT
        elif projection_status(projection_id).lag == 0:
            code = http.HTTP_200_OK
        else:
            code = http.HTTP_202_ACCEPTED
        return _projection_outcome(request, projection_id, outcome, code)


_SWITCH_RESPONSES = {
    200: OpenApiResponse(ProjectionOperationSerializer, description="Done."),
    404: NOT_FOUND,
}


@extend_schema(summary="Pause a projection", request=None, responses=_SWITCH_RESPONSES)
class ProjectionPauseView(OrchestrixAPIView):
    """Stop the runners from advancing a projection (the admin's *Pause*)."""

    operation_id = "projections_pause"
    model_permissions = ((ProjectionStateRecord, Access.CHANGE),)

    def post(self, request: Request, projection_id: str) -> Response:
        """Set its paused flag."""
        return _switch(request, projection_id, pause_projection)


@extend_schema(summary="Resume a projection", request=None, responses=_SWITCH_RESPONSES)
class ProjectionResumeView(OrchestrixAPIView):
    """Let the runners advance a paused projection again (the admin's *Resume*)."""

    operation_id = "projections_resume"
    model_permissions = ((ProjectionStateRecord, Access.CHANGE),)

    def post(self, request: Request, projection_id: str) -> Response:
        """Clear its paused flag."""
        return _switch(request, projection_id, resume_projection)
