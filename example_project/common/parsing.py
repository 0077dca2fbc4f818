"""Reading a command's JSON body without trusting it: bounded size, bounded nesting.

DRF's ``JSONParser`` reads a body of any length (Django's
``DATA_UPLOAD_MAX_MEMORY_SIZE`` guards forms, not a stream read) and hands
it to ``json.load``, whose recursion fails deep in the interpreter on
10,000 nested arrays: a 500. :class:`BoundedJSONParser` answers both with
a 4xx instead: 413 for a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, 400 for
JSON nested deeper than :data:`MAX_DEPTH`, naming the top-level field the
nesting is in (commands are flat: three levels are the most they use).
The values themselves are checked field by field by
:func:`~example_project.common.commands.build_command`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.parsers import JSONParser

__all__ = ["MAX_DEPTH", "BodyTooLarge", "BoundedJSONParser", "too_deep"]

#: The deepest nesting of arrays and objects a command body may have.
MAX_DEPTH = 32

#: A JSON string (with its escapes) or one of the characters that give a document its shape.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:]', re.DOTALL)


class BodyTooLarge(APIException):
    """A request body larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE``: 413."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"
    default_detail = "The request body is too large."


def body_limit() -> int | None:
    """The largest body accepted, in bytes (None: no limit), as Django's setting says."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return None if limit is None else int(limit)


def too_deep(text: str, limit: int = MAX_DEPTH) -> str | None:
    """Where ``text`` nests deeper than ``limit``: its top-level field, ``""`` for the document.

    None when it does not. Reads the shape only (strings and brackets), in
    one pass, without building anything; whether it is valid JSON is the
    parser's business.
    """
    depth = 0
    field = ""
    last_string = ""
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return field
        elif token in "]}":
            depth -= 1
            if depth <= 1:
                field = ""
        elif token == ":":
            if depth == 1:
                field = last_string
        else:
            last_string = token
    return None


def _field_name(token: str) -> str:
    """The field's name as sent, or its JSON text when that is not valid Unicode."""
    try:
        name = str(json.loads(token))
        name.encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return token
    return name


class BoundedJSONParser(JSONParser):
    """``JSONParser`` with a size limit (413) and a nesting limit (400 naming the field)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        """The parsed body, or a 4xx saying what is wrong with it."""
        limit = body_limit()
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise BodyTooLarge(f"The request body is larger than {limit} bytes.")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ParseError(f"The body is not UTF-8: {error}") from None
        token = too_deep(text)
        if token is not None:
            where = _field_name(token) if token else "non_field_errors"
            raise ValidationError({where: [f"nested deeper than {MAX_DEPTH} levels"]})
        try:
            return json.loads(text, parse_constant=_refuse_constant)
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from None


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")
