"""Renderers for events in CloudEvents JSON (structured and batched mode).

The bodies are plain JSON; only the media type differs:
``application/cloudevents+json`` for one event and
``application/cloudevents-batch+json`` for a list of them (a JSON array of
events, the CloudEvents batch format).
"""

from __future__ import annotations

from typing import Any

from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

__all__ = [
    "CLOUDEVENT",
    "CLOUDEVENTS_BATCH",
    "CloudEventBatchRenderer",
    "CloudEventRenderer",
    "ErrorsAsJSON",
]

#: The media type of one event in CloudEvents JSON.
CLOUDEVENT = "application/cloudevents+json"
#: The media type of a JSON array of events in CloudEvents JSON.
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"


class CloudEventRenderer(JSONRenderer):
    """One event as ``application/cloudevents+json``."""

    media_type = CLOUDEVENT
    format = "cloudevent"


class CloudEventBatchRenderer(JSONRenderer):
    """A list of events as ``application/cloudevents-batch+json``."""

    media_type = CLOUDEVENTS_BATCH
    format = "cloudevents"


class ErrorsAsJSON(APIView):
    """A mixin for views whose renderers are not plain JSON: error bodies are JSON.

    An error (``{"detail": …}``) is neither a CloudEvent nor an OpenAPI
    document, whatever the client accepted for the answer it hoped for.
    """

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        """Switch an error response to :class:`JSONRenderer`."""
        response = super().finalize_response(request, response, *args, **kwargs)
        renderer = getattr(response, "accepted_renderer", None)
        # Exactly JSONRenderer: the CloudEvents and OpenAPI ones subclass it.
        if (
            response.status_code >= 400
            and renderer is not None
            and type(renderer) is not JSONRenderer
        ):
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response
