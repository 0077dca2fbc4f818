"""Projections in the admin: position, lag, health; rebuild, pause, resume, retry, skip.

The list shows every projection with a checkpoint (its state row) and names
the configured ones that have none yet. A projection's page adds its parked
events, each with *Retry* and *Skip* buttons. Seeing the pages takes the
*view* permission on projections, operating them the *change* permission.
Rebuilds are done in place within a time budget (see
:mod:`orchestrix_django.operations`).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.db.models import BigIntegerField, CharField, Count, Model, OuterRef, QuerySet, Subquery
from django.db.models.expressions import Value
from django.db.models.functions import Coalesce, Concat
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from orchestrix.core.messaging.dead_letter import DeadLetterStatus
from orchestrix_django.admin.base import (
    OperableAdmin,
    admin_url,
    changelist_url,
    database,
    shortened,
    unknown_operation,
)
from orchestrix_django.admin.filters import choices_filter
from orchestrix_django.models import DeadLetterRecord, ProjectionStateRecord
from orchestrix_django.operations import (
    PROJECTION_SOURCE_PREFIX,
    Outcome,
    discard_dead_letter,
    pause_projection,
    rebuild_projection,
    resume_projection,
    retry_dead_letter,
)
from orchestrix_django.projections.rebuild import read_model_name
from orchestrix_django.projections.registry import projections
from orchestrix_django.projections.status import projection_status
from orchestrix_django.storage.events import DjangoEventStore

__all__ = ["ProjectionAdmin"]

#: Parked events listed on a projection's page.
PARKED_SHOWN = 50


def _parked_counts() -> Subquery:
    """A row's number of parked dead letters (one subquery, not one query per row)."""
    letters = (
        DeadLetterRecord.objects.filter(
            status=DeadLetterStatus.PARKED.value,
            source=Concat(
                Value(PROJECTION_SOURCE_PREFIX), OuterRef("projection_id"), output_field=CharField()
            ),
        )
        .order_by()
        .values("status")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Subquery(letters, output_field=BigIntegerField())


@admin.register(ProjectionStateRecord)
class ProjectionAdmin(OperableAdmin):
    """Projections and their operations."""

    list_display = (
        "projection_id",
        "position",
        "head",
        "lag",
        "healthy",
        "is_paused",
        "parked",
        "error",
        "updated_at",
    )
    list_filter = (
        choices_filter("is_healthy", "health", lambda: [("1", "healthy"), ("0", "unhealthy")]),
        choices_filter("paused", "runners", lambda: [("1", "paused"), ("0", "running")]),
    )
    # A handful of rows: counting them is free.
    show_full_result_count = True
    search_fields = ("projection_id",)
    ordering = ("projection_id",)
    actions = ["rebuild_projections", "pause_projections", "resume_projections"]
    detail_template = "admin/orchestrix_django/projectionstaterecord/detail.html"
    #: Seconds a rebuild catches up in the request before leaving the rest to the runners.
    rebuild_seconds = 10.0

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProjectionStateRecord]:
        """States with the head of the log and their parked-letter counts."""
        head = DjangoEventStore().head_position()
        states: QuerySet[ProjectionStateRecord] = super().get_queryset(request)
        return states.annotate(
            head_position=Value(head, output_field=BigIntegerField()),
            parked_count=Coalesce(_parked_counts(), Value(0)),
        )

    # -- columns ---------------------------------------------------------------------

    @admin.display(description="position", ordering="last_processed_position")
    def position(self, record: ProjectionStateRecord) -> int:
        """The position of the last event applied."""
        return int(record.last_processed_position)

    @admin.display(description="head")
    def head(self, record: Any) -> int:
        """The position of the newest event of the log."""
        return int(record.head_position)

    @admin.display(description="lag")
    def lag(self, record: Any) -> int:
        """Events the projection is behind the head."""
        return max(int(record.head_position) - int(record.last_processed_position), 0)

    @admin.display(description="healthy", boolean=True, ordering="is_healthy")
    def healthy(self, record: ProjectionStateRecord) -> bool:
        """Whether the last batch went well and no event is parked."""
        return bool(record.is_healthy)

    @admin.display(description="runners", ordering="paused")
    def is_paused(self, record: ProjectionStateRecord) -> str:
        """ "paused" when an operator (or a failure) paused it, else "running"."""
        return "paused" if record.paused else "running"

    @admin.display(description="parked events", ordering="parked_count")
    def parked(self, record: Any) -> Any:
        """Its parked events, linked to them."""
        count = int(record.parked_count)
        if not count:
            return 0
        url = changelist_url(
            DeadLetterRecord,
            source=f"{PROJECTION_SOURCE_PREFIX}{record.projection_id}",
            status=DeadLetterStatus.PARKED.value,
        )
        return format_html('<a href="{}">{}</a>', url, count)

    @admin.display(description="last error")
    def error(self, record: ProjectionStateRecord) -> str:
        """The last error, shortened."""
        return shortened(record.last_error)

    # -- actions -----------------------------------------------------------------------

    @admin.action(description="Rebuild the selected projections", permissions=["change"])
    def rebuild_projections(
        self, request: HttpRequest, queryset: QuerySet[ProjectionStateRecord]
    ) -> None:
        """Reset and catch up (within :attr:`rebuild_seconds`; the runners do the rest)."""
        self.run_action(
            request,
            queryset,
            lambda pid: rebuild_projection(pid, seconds=self.rebuild_seconds),
        )

    @admin.action(description="Pause the selected projections", permissions=["change"])
    def pause_projections(
        self, request: HttpRequest, queryset: QuerySet[ProjectionStateRecord]
    ) -> None:
        """Stop the runners from advancing them."""
        self.run_action(request, queryset, pause_projection)

    @admin.action(description="Resume the selected projections", permissions=["change"])
    def resume_projections(
        self, request: HttpRequest, queryset: QuerySet[ProjectionStateRecord]
    ) -> None:
        """Let the runners advance them again."""
        self.run_action(request, queryset, resume_projection)

    # -- pages ---------------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list, naming configured projections that have no state row yet."""
        stored = set(
            ProjectionStateRecord.objects.using(database()).values_list("projection_id", flat=True)
        )
        try:
            configured = sorted(projections())
        except Exception as error:  # a broken ORCHESTRIX["PROJECTIONS"]: say so, list anyway
            configured = []
            self.message_user(request, f"ORCHESTRIX['PROJECTIONS']: {error}", messages.ERROR)
        context = {"not_started": [pid for pid in configured if pid not in stored]}
        return super().changelist_view(request, {**context, **(extra_context or {})})

    def detail_title(self, obj: Model) -> str:
        """``Projection balances``."""
        return f"Projection {obj}"

    def detail_context(self, request: HttpRequest, obj: Model) -> dict[str, Any]:
        """Its status, configuration and parked events."""
        assert isinstance(obj, ProjectionStateRecord)
        projection_id = obj.projection_id
        try:
            projection = projections().get(projection_id)
        except Exception as error:  # a broken ORCHESTRIX["PROJECTIONS"]: show the state anyway
            self.message_user(request, f"ORCHESTRIX['PROJECTIONS']: {error}", messages.ERROR)
            projection = None
        parked = list(
            DeadLetterRecord.objects.using(obj._state.db)
            .filter(
                source=f"{PROJECTION_SOURCE_PREFIX}{projection_id}",
                status=DeadLetterStatus.PARKED.value,
            )
            .order_by("created_at", "id")[:PARKED_SHOWN]
        )
        for letter in parked:
            letter.url = admin_url(DeadLetterRecord, "change", quote(letter.pk))  # type: ignore[attr-defined]
        return {
            "status": projection_status(projection_id),
            "projection": projection,
            "read_model": read_model_name(projection_id),
            "parked": parked,
            "operate_url": admin_url(ProjectionStateRecord, "operate", quote(projection_id)),
            "dead_letters_url": changelist_url(
                DeadLetterRecord, source=f"{PROJECTION_SOURCE_PREFIX}{projection_id}"
            ),
            "rebuild_seconds": self.rebuild_seconds,
        }

    # -- operations from the detail page --------------------------------------------------

    def operate(self, request: HttpRequest, row_id: str, operation: str) -> Outcome:
        """Run a button's operation: rebuild, pause, resume, or retry/skip a parked event."""
        letter = request.POST.get("dead_letter", "")
        if operation == "rebuild":
            return rebuild_projection(row_id, seconds=self.rebuild_seconds)
        if operation == "pause":
            return pause_projection(row_id)
        if operation == "resume":
            return resume_projection(row_id)
        if operation in ("retry", "skip") and letter:
            return self._letter_operation(row_id, operation, letter)
        return unknown_operation(operation)

    @staticmethod
    def _letter_operation(projection_id: str, operation: str, dead_letter_id: str) -> Outcome:
        source = (
            DeadLetterRecord.objects.using(database())
            .filter(pk=dead_letter_id)
            .values_list("source", flat=True)
            .first()
        )
        if source != f"{PROJECTION_SOURCE_PREFIX}{projection_id}":
            return Outcome(
                messages.ERROR,
                f"Dead letter {dead_letter_id} is not one of projection {projection_id}'s.",
            )
        if operation == "retry":
            return retry_dead_letter(dead_letter_id)
        return discard_dead_letter(dead_letter_id)
