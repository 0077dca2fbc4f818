"""Dead letters in the admin: reason, payload, traceback; retry and discard.

A letter parked by a projection (source ``projection:<id>``) is retried
through :func:`~orchestrix_django.projections.control.retry_parked` and discarded
through :func:`~orchestrix_django.projections.control.skip_parked` (a stopped
projection then moves past it and resumes). One parked by the message bus
(``bus:<handler>``) is retried by the handler of that name subscribed in
this process (:meth:`~orchestrix_django.bus.DjangoMessageBus.retry_dead_letter`).
Letters from other sources can only be discarded here. Seeing the pages
takes the *view* permission on dead letters, retrying and discarding the
*change* permission.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from orchestrix.core.messaging.dead_letter import DeadLetterStatus
from orchestrix_django.admin.base import (
    OperableAdmin,
    admin_url,
    changelist_url,
    pretty_json,
    shortened,
    unknown_operation,
)
from orchestrix_django.admin.filters import choices_filter, distinct_filter
from orchestrix_django.models import DeadLetterRecord, EventRecord, ProjectionStateRecord
from orchestrix_django.operations import (
    PROJECTION_SOURCE_PREFIX,
    Outcome,
    discard_dead_letter,
    retry_dead_letter,
    retry_kind,
)

__all__ = ["DeadLetterAdmin"]


def _statuses() -> list[tuple[str, str]]:
    return [(status.value, status.value) for status in DeadLetterStatus]


@admin.register(DeadLetterRecord)
class DeadLetterAdmin(OperableAdmin):
    """Messages that could not be handled, waiting for an operator."""

    list_display = (
        "id",
        "source",
        "status",
        "message_type",
        "short_reason",
        "attempts",
        "stream_id",
        "version",
        "created_at",
        "resolved_at",
    )
    list_filter = (
        choices_filter("status", "status", _statuses),
        distinct_filter("source", "source"),
    )
    search_fields = ("=id", "=message_id", "=stream_id")
    search_help_text = "An exact dead letter id, message (event) id or stream id."
    ordering = ("-created_at",)
    actions = ["retry_letters", "discard_letters"]
    detail_template = "admin/orchestrix_django/deadletterrecord/detail.html"
    # Oldest first: a projection's letters are retried in the order of its events.
    action_order = ("created_at", "id")

    @admin.display(description="reason")
    def short_reason(self, letter: DeadLetterRecord) -> str:
        """The reason, shortened."""
        return shortened(letter.reason)

    # -- actions -----------------------------------------------------------------------

    @admin.action(description="Retry the selected dead letters", permissions=["change"])
    def retry_letters(self, request: HttpRequest, queryset: QuerySet[DeadLetterRecord]) -> None:
        """Handle each parked message again (projection and bus letters)."""
        self.run_action(request, queryset, retry_dead_letter)

    @admin.action(description="Discard the selected dead letters", permissions=["change"])
    def discard_letters(self, request: HttpRequest, queryset: QuerySet[DeadLetterRecord]) -> None:
        """Give up on each parked message."""
        self.run_action(request, queryset, discard_dead_letter)

    # -- the detail page ---------------------------------------------------------------

    def detail_title(self, obj: Model) -> str:
        """``Dead letter 3f2a…``."""
        return f"Dead letter {obj.pk}"

    def detail_context(self, request: HttpRequest, obj: Model) -> dict[str, Any]:
        """Payload, traceback, links to the event and its projection, and the buttons."""
        assert isinstance(obj, DeadLetterRecord)
        event = None
        if obj.message_id:
            event = (
                EventRecord.objects.using(obj._state.db)
                .filter(event_id=obj.message_id)
                .values_list("position", flat=True)
                .first()
            )
        projection_url = None
        if obj.source.startswith(PROJECTION_SOURCE_PREFIX):
            projection_id = obj.source[len(PROJECTION_SOURCE_PREFIX) :]
            if ProjectionStateRecord.objects.using(obj._state.db).filter(pk=projection_id).exists():
                projection_url = admin_url(ProjectionStateRecord, "change", quote(projection_id))
        return {
            "letter": obj,
            "payload_json": pretty_json(obj.payload),
            "event_url": admin_url(EventRecord, "change", event) if event is not None else None,
            "stream_events_url": changelist_url(EventRecord, stream_id=obj.stream_id)
            if obj.stream_id
            else None,
            "projection_url": projection_url,
            "retry_kind": retry_kind(obj.source),
            "parked": obj.status == DeadLetterStatus.PARKED.value,
            "operate_url": admin_url(DeadLetterRecord, "operate", quote(obj.pk)),
            "source_url": changelist_url(DeadLetterRecord, source=obj.source),
        }

    def operate(self, request: HttpRequest, row_id: str, operation: str) -> Outcome:
        """Retry or discard the letter (``operation`` = retry or discard)."""
        if operation == "retry":
            return retry_dead_letter(row_id)
        if operation == "discard":
            return discard_dead_letter(row_id)
        return unknown_operation(operation)
