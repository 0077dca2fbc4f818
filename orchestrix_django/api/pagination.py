"""Keyset pagination: every list pages by a key (a position, a version, an id), never an offset.

``?after=<key>&limit=<n>`` returns the items after that key, in key order; a
full page links the next one in the ``Link`` header (and in ``"next"`` for
object bodies). Rows added meanwhile shift an offset, never a key; see
docs/api.md.
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

__all__ = ["after_number", "after_text", "page_limit", "paged", "paged_array"]


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


def _next_url(request: Request, count: int, limit: int, last_key: object) -> str | None:
    """This request's URL with ``after`` set to ``last_key`` when the page is full, else None."""
    if count < limit:
        return None
    return str(replace_query_param(request.build_absolute_uri(), "after", last_key))


def _with_link(response: Response, url: str | None) -> Response:
    """Add the ``Link: <url>; rel="next"`` header when there is a next page."""
    if url is not None:
        response["Link"] = f'<{url}>; rel="next"'
    return response


def paged(request: Request, results: Sequence[Any], limit: int, last_key: object) -> Response:
    """An object body ``{"results": …, "next": …}`` with the ``Link`` header to match.

    ``last_key`` is the key of the page's last item (used only when the page is full).
    """
    url = _next_url(request, len(results), limit, last_key)
    return _with_link(Response({"results": list(results), "next": url}), url)


def paged_array(request: Request, results: Sequence[Any], limit: int, last_key: object) -> Response:
    """An array body (a CloudEvents batch): the ``Link`` header alone links the next page."""
    return _with_link(Response(list(results)), _next_url(request, len(results), limit, last_key))
