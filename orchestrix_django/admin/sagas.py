"""Sagas in the admin (read-only): status, current step, step history, deadlines.

The list filters by status and saga type and searches by exact saga id or
correlation id; a saga's page shows its steps as a table (status, attempts,
result, error, times, compensation) and links its correlation id to the
events that share it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from orchestrix.core.execution.saga import SagaState, SagaStatus
from orchestrix_django.admin.base import OrchestrixAdmin, admin_url, changelist_url, pretty_json
from orchestrix_django.admin.filters import choices_filter, distinct_filter
from orchestrix_django.models import EventRecord, SagaStateRecord
from orchestrix_django.storage.saga_state import SAGA_STATE_FIELDS

__all__ = ["SagaAdmin", "decode_saga", "saga_steps"]


def _statuses() -> list[tuple[str, str]]:
    return [(status.value, status.value.replace("_", " ")) for status in SagaStatus]


def decode_saga(record: SagaStateRecord) -> tuple[SagaState | None, str | None]:
    """The state as the saga reads it (:meth:`SagaState.from_dict`), or why it does not decode."""
    try:
        data = {name: getattr(record, name) for name in SAGA_STATE_FIELDS}
        return SagaState.from_dict(data), None
    except Exception as failure:
        return None, f"{type(failure).__name__}: {failure}"


def saga_steps(record: SagaStateRecord) -> tuple[list[dict[str, Any]], str | None]:
    """The rows of a saga's step table, and why its state does not decode (or None).

    Times come from :meth:`SagaState.from_dict` (as the saga reads them);
    results are shown as stored (JSON). When the state does not decode, the
    stored steps are shown as they are, with the error.
    """
    stored = record.steps if isinstance(record.steps, list) else []
    state, error = decode_saga(record)
    decoded: list[Any] = list(state.steps) if state else [None] * len(stored)
    rows = []
    for raw, step in zip(stored, decoded, strict=False):
        raw = raw if isinstance(raw, dict) else {"name": repr(raw)}
        # The decoded result reads better (12.50, not a tagged decimal); as stored otherwise.
        result = step.result if step else raw.get("result")
        rows.append(
            {
                "name": raw.get("name"),
                "status": str(raw.get("status", "")).replace("_", " "),
                "attempts": raw.get("attempts"),
                "result": pretty_json(result) if result is not None else None,
                "error": raw.get("error"),
                "started_at": step.started_at if step else raw.get("started_at"),
                "finished_at": step.finished_at if step else raw.get("finished_at"),
                "compensated_at": step.compensated_at if step else raw.get("compensated_at"),
                "compensation_attempts": raw.get("compensation_attempts"),
                "compensation_error": raw.get("compensation_error"),
                "current": raw.get("name") == record.current_step,
            }
        )
    return rows, error


@admin.register(SagaStateRecord)
class SagaAdmin(OrchestrixAdmin):
    """Sagas: what they did, what they are doing, what failed."""

    list_display = (
        "saga_id",
        "saga_type",
        "state",
        "current_step",
        "deadline",
        "created_at",
        "updated_at",
    )
    list_filter = (
        choices_filter("status", "status", _statuses),
        distinct_filter("saga_type", "saga type"),
    )
    date_hierarchy = "created_at"
    search_fields = ("=saga_id", "=correlation_id")
    search_help_text = "An exact saga id or correlation id."
    ordering = ("-created_at",)
    sortable_by = ("created_at", "deadline")
    actions = None
    detail_template = "admin/orchestrix_django/sagastaterecord/detail.html"

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Saga states are written by the sagas; nobody edits them here."""
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[SagaStateRecord], search_term: str
    ) -> tuple[QuerySet[SagaStateRecord], bool]:
        """The sagas whose id or correlation id is exactly the term (index lookups)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(saga_id=term) | Q(correlation_id=term)), False

    @admin.display(description="status", ordering="status")
    def state(self, record: SagaStateRecord) -> str:
        """The status, with "overdue" when its deadline passed before it finished."""
        status = record.status.replace("_", " ")
        return f"{status} (overdue)" if _overdue(record) else status

    def detail_title(self, obj: Model) -> str:
        """``Saga OrderSaga order-7``."""
        return f"Saga {obj}"

    def detail_context(self, request: HttpRequest, obj: Model) -> dict[str, Any]:
        """The step table, kwargs and links along the correlation."""
        assert isinstance(obj, SagaStateRecord)
        steps, decode_error = saga_steps(obj)
        state, _ = decode_saga(obj)
        cause = None
        if obj.causation_id:
            cause = (
                EventRecord.objects.using(obj._state.db)
                .filter(event_id=obj.causation_id)
                .values_list("position", flat=True)
                .first()
            )
        return {
            "saga": obj,
            "status_label": obj.status.replace("_", " "),
            "overdue": _overdue(obj),
            "steps": steps,
            "decode_error": decode_error,
            "kwargs_json": pretty_json(state.kwargs if state else obj.kwargs),
            "correlation_url": changelist_url(EventRecord, correlation_id=obj.correlation_id)
            if obj.correlation_id
            else None,
            "sagas_url": changelist_url(SagaStateRecord, q=obj.correlation_id)
            if obj.correlation_id
            else None,
            "cause_url": admin_url(EventRecord, "change", cause) if cause is not None else None,
        }


def _overdue(record: SagaStateRecord) -> bool:
    finished = record.status in (SagaStatus.COMPLETED.value, SagaStatus.FAILED.value)
    return bool(record.deadline and not finished and record.deadline < timezone.now())
