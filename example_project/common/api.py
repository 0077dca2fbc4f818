"""A Django REST framework view that accepts one kind of command.

``POST`` a JSON object with the command's fields:

* **400** with ``{"field": ["message", …], …}`` (the shape of DRF's own
  validation errors) when the payload does not make a valid command: the
  messages are those of Orchestrix's validators, every field at once, and
  nothing was stored. Hostile input gets the same: text with a NUL
  character or a lone surrogate, a value of the wrong type, JSON nested
  deeper than :data:`~example_project.common.parsing.MAX_DEPTH` (named by
  its top-level field); a body that is not JSON at all is a 400 too;
* **413** for a body larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE``;
* **404** when the command names an aggregate that does not exist;
* **409** when the domain refuses the command (insufficient funds, a frozen
  account, …);
* **201**, **202** or **200** (the view's ``success_status``) with the ids
  of what the command created or started.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django.core.exceptions import RequestDataTooBig
from django.http import QueryDict
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from example_project.common.commands import CommandRejected, build_command, execute
from example_project.common.parsing import BodyTooLarge, BoundedJSONParser, body_limit
from orchestrix.core.common.exceptions import AggregateNotFoundError
from orchestrix.core.common.validation import ValidationError
from orchestrix.core.messaging.message import Command

__all__ = ["CommandView", "ReadModelView"]


class CommandView(APIView):
    """Accepts ``command_class`` commands (see the module docs).

    URL parameters (``<account_id>``) fill the command fields of the same
    name; a body that gives another value for one is a 400.
    """

    command_class: ClassVar[type[Command]]
    success_status: ClassVar[int] = status.HTTP_202_ACCEPTED
    parser_classes = [BoundedJSONParser, FormParser, MultiPartParser]

    def post(self, request: Request, **url_fields: str) -> Response:
        """Build, validate and execute the command."""
        try:
            body = request.data
        except RequestDataTooBig:  # Django read the body first, and refused it
            raise BodyTooLarge(f"The request body is larger than {body_limit()} bytes.") from None
        if isinstance(body, QueryDict):  # a form post, from the browsable API
            body = body.dict()
        if not isinstance(body, Mapping):
            return Response(
                {"non_field_errors": ["the body must be a JSON object"]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        payload = dict(body)
        for name, value in url_fields.items():
            if name in payload and payload[name] != value:
                return Response(
                    {name: [f"must match the URL ({value!r}), got {payload[name]!r}"]},
                    status=status.HTTP_400_BAD_REQUEST,
                )
            payload[name] = value
        try:
            command = build_command(self.command_class, payload)
            execute(command)
        except ValidationError as invalid:
            return Response(invalid.errors, status=status.HTTP_400_BAD_REQUEST)
        except AggregateNotFoundError as missing:
            return Response({"detail": str(missing)}, status=status.HTTP_404_NOT_FOUND)
        except CommandRejected as refused:
            answer = {"detail": str(refused)}
            if refused.field:
                answer["field"] = refused.field
            return Response(answer, status=status.HTTP_409_CONFLICT)
        return Response(
            {"command": command.type, "command_id": command.id, **self.accepted(command)},
            status=self.success_status,
        )

    def accepted(self, command: Any) -> dict[str, Any]:
        """What the response tells about an executed command (ids, links), besides its own id."""
        return {}


class ReadModelView(generics.RetrieveAPIView):  # type: ignore[type-arg]
    """One row of a read model by its key (``lookup_field``, taken from the URL).

    A key with a NUL character is not found: no key holds one (commands
    refuse them), and PostgreSQL refuses one in a query.
    """

    def get_object(self) -> Any:
        """The row, or 404."""
        if "\x00" in str(self.kwargs.get(self.lookup_url_kwarg or self.lookup_field, "")):
            raise NotFound("No such item: keys never contain NUL characters.")
        return super().get_object()
