"""A read-only admin for read models: projections write them, people only look."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db.models import Model
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

__all__ = ["ReadModelAdmin", "saga_link", "stream_link"]


def stream_link(stream_id: str, text: str = "events") -> SafeString:
    """A link to the stream's timeline in Orchestrix's admin pages."""
    url = reverse("admin:orchestrix_django_streamrecord_change", args=[quote(stream_id)])
    return format_html('<a href="{}">{}</a>', url, text)


def saga_link(saga_id: str, text: str = "saga") -> SafeString:
    """A link to the saga's page (status, steps, compensations) in Orchestrix's admin pages."""
    url = reverse("admin:orchestrix_django_sagastaterecord_change", args=[quote(saga_id)])
    return format_html('<a href="{}">{}</a>', url, text)


class ReadModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Lists and shows a read model; nobody adds, changes or deletes its rows here.

    A row edited by hand would be overwritten by the next event, and lost by
    the next replay: the events are the truth, the read model only a view.
    """

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Rows come from events only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Rows come from events only."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Rows come from events only (a replay rebuilds them all)."""
        return False
