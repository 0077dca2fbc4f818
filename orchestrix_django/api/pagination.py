"""Keyset pagination: every list pages by a key (a position, a version, an id), never an offset.

A list takes ``?after=<key>&limit=<n>`` and returns up to ``limit`` items
whose key is greater than ``after``, in key order: the global log by
position, a stream's events by version, streams, sagas and dead letters by
id. ``limit`` defaults to ``ORCHESTRIX["API_PAGE_SIZE"]`` and is capped at
``ORCHESTRIX["API_MAX_PAGE_SIZE"]`` (a larger one is not an error: the page
is just that long). An offset would skip or repeat items when rows are
added meanwhile; a key does not: the next page starts after the last key
seen, whatever was written since. For the global log this also relies on
the store committing appends in position order, so a page never moves past
an event that commits later.

The next page is linked when the page is full, with the ``after`` of its
last item and the other query parameters kept:

* in the ``Link`` response header (RFC 8288): ``<…?after=42&limit=100>;
  rel="next"``, on every list;
* also in the body, as ``"next"``, for lists whose body is an object
  (``{"results": [...], "next": "…"}``). Event lists are CloudEvents batches,
  whose body must be a JSON array: the header alone carries their link.

A shorter page is the end of the list as it is now. The log goes on growing:
to follow it, ask again with ``after`` set to the ``position`` attribute of
the last event received.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from orchestrix.core.eventsourcing.event_store import MAX_POSITION
from orchestrix_django.settings import orchestrix_settings

__all__ = ["after_number", "after_text", "next_url", "page_limit", "paged", "set_next_link"]


def page_limit(request: Request, *, cap: int | None = None) -> int:
    """The page size asked for (``limit``), defaulted and capped (``cap``: a lower cap)."""
    text = request.query_params.get("limit")
    limit = int(orchestrix_settings.API_PAGE_SIZE)
    if text is not None:
        try:
            limit = int(text)
        except ValueError:
            raise ValidationError({"limit": f"expected a whole number, got {text!r}"}) from None
        if limit < 1:
            raise ValidationError({"limit": f"expected a number >= 1, got {limit}"})
    limit = min(limit, int(orchestrix_settings.API_MAX_PAGE_SIZE))
    return min(limit, cap) if cap is not None else limit


def after_number(request: Request) -> int:
    """``after`` as a position or version (0, the start, when absent)."""
    text = request.query_params.get("after")
    if text is None:
        return 0
    try:
        after = int(text)
    except ValueError:
        raise ValidationError({"after": f"expected a whole number, got {text!r}"}) from None
    if not 0 <= after <= MAX_POSITION:
        raise ValidationError({"after": f"expected a number from 0 to {MAX_POSITION}, got {after}"})
    return after


def after_text(request: Request) -> str | None:
    """``after`` as an id (None, the start, when absent)."""
    return request.query_params.get("after") or None


def next_url(request: Request, after: object) -> str:
    """This request's URL with ``after`` set to the last key of its page."""
    return str(replace_query_param(request.build_absolute_uri(), "after", after))


def set_next_link(response: Response, url: str | None) -> Response:
    """Add the ``Link: <url>; rel="next"`` header when there is a next page."""
    if url is not None:
        response["Link"] = f'<{url}>; rel="next"'
    return response


def paged(request: Request, results: Sequence[Any], limit: int, last_key: object) -> Response:
    """An object body ``{"results": …, "next": …}`` with the ``Link`` header to match.

    ``last_key`` is the key of the page's last item (used only when the page is full).
    """
    url = next_url(request, last_key) if len(results) >= limit else None
    return set_next_link(Response({"results": list(results), "next": url}), url)
