"""What every Orchestrix admin page shares: fast lists and read-only detail pages.

:class:`OrchestrixAdmin` is a ``ModelAdmin`` that

* never adds or deletes rows, and never changes one through a form: its
  detail page (the "change" URL) is a read-only page of its own, and a POST
  to it is refused (403). Operations (rebuild, retry, …) are separate POST
  URLs that check the *change* permission; seeing the pages takes the *view*
  permission, as usual in the admin;
* lists with :class:`~orchestrix_django.admin.pagination.EstimatedCountPaginator`,
  no full result count and no facet counts;
* replaces the stock date hierarchy (``SELECT DISTINCT`` of every row's
  year, month or day) with one built from the list's first and last date
  (``MIN``/``MAX`` on an indexed column).
"""

from __future__ import annotations

import calendar
import datetime
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import DateTimeField, Max, Min, Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from orchestrix_django.admin.pagination import EstimatedCountPaginator
from orchestrix_django.operations import Outcome
from orchestrix_django.settings import orchestrix_settings

__all__ = [
    "OrchestrixAdmin",
    "admin_url",
    "changelist_url",
    "database",
    "date_hierarchy_context",
    "pretty_json",
]


def database() -> str:
    """The database alias Orchestrix's tables are on (``ORCHESTRIX["DATABASE"]``)."""
    return str(orchestrix_settings.DATABASE)


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON (non-JSON values as their ``str``)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def shortened(text: str | None, width: int = 80) -> str:
    """``text`` for a list column: cut at ``width`` characters, whole in the tooltip."""
    text = text or ""
    if len(text) <= width:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: width - 1])


def admin_url(model: type[Model], view: str, *args: Any) -> str:
    """The URL of an admin view of ``model`` ("change", "changelist", …)."""
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def changelist_url(model: type[Model], **params: Any) -> str:
    """The URL of ``model``'s list, filtered by ``params``."""
    url = admin_url(model, "changelist")
    return f"{url}?{urlencode(params)}" if params else url


def _local(moment: datetime.datetime | datetime.date) -> datetime.date:
    if isinstance(moment, datetime.datetime):
        return (timezone.localtime(moment) if timezone.is_aware(moment) else moment).date()
    return moment


def _date_bounds(
    changelist: Any, field: str, year: Any, month: Any, day: Any
) -> tuple[datetime.date | None, datetime.date | None]:
    """The first and last date of the whole table within the chosen year, month or day.

    Of the whole table, not of the filtered list: with only its own range as
    a condition, ``MIN``/``MAX`` are two probes of the column's index,
    whereas under another filter (``position < N``, a type) the database may
    walk the index past most of the table to find the first matching row.
    The choices may so include dates without rows in the filtered list.
    """
    rows = changelist.root_queryset.order_by()
    if year:
        start = datetime.datetime(int(year), int(month or 1), int(day or 1))
        if day:
            end = start + datetime.timedelta(days=1)
        elif month:
            end = (start + datetime.timedelta(days=32)).replace(day=1)
        else:
            end = start.replace(year=start.year + 1)
        field_object = changelist.model._meta.get_field(field)
        if isinstance(field_object, DateTimeField):
            if settings.USE_TZ:
                start, end = timezone.make_aware(start), timezone.make_aware(end)
        else:
            start, end = start.date(), end.date()  # type: ignore[assignment]
        rows = rows.filter(**{f"{field}__gte": start, f"{field}__lt": end})
    bounds = rows.aggregate(first=Min(field), last=Max(field))
    first = _local(bounds["first"]) if bounds["first"] is not None else None
    last = _local(bounds["last"]) if bounds["last"] is not None else None
    return first, last


def date_hierarchy_context(changelist: Any) -> dict[str, Any] | None:
    """The context of ``admin/date_hierarchy.html`` for a change list, cheaply.

    Like the stock tag, it drills down year → month → day, starting at the
    year (or month) all rows share. Its choices are every year, month or
    day between the first and the last date of the table (two index probes,
    see :func:`_date_bounds`), not the ones rows really have (a ``SELECT
    DISTINCT`` over every row).
    """
    field = changelist.date_hierarchy
    if not field:
        return None
    names = {part: f"{field}__{part}" for part in ("year", "month", "day")}
    params = changelist.params
    year, month, day = (params.get(names[part]) for part in ("year", "month", "day"))

    def link(filters: dict[str, Any]) -> str:
        return str(changelist.get_query_string(filters, [f"{field}__"]))

    try:
        first, last = _date_bounds(changelist, field, year, month, day)
    except (TypeError, ValueError):
        return None  # a malformed date in the URL: the list says so already
    starts_at_all_dates = not (year or month or day)
    if starts_at_all_dates and first is not None and last is not None and first.year == last.year:
        # Every row is of one year (of one month): start there, as the stock tag does.
        year = first.year
        if first.month == last.month:
            month = first.month
    try:
        if year and month and day:
            chosen = datetime.date(int(year), int(month), int(day))
            return {
                "show": True,
                "back": {
                    "link": link({names["year"]: year, names["month"]: month}),
                    "title": capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT")),
                },
                "choices": [{"title": capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))}],
            }
        if year and month:
            y, m = int(year), int(month)
            days: range | list[int] = []
            if first is not None and last is not None:
                days = range(
                    first.day if (first.year, first.month) == (y, m) else 1,
                    (
                        last.day
                        if (last.year, last.month) == (y, m)
                        else calendar.monthrange(y, m)[1]
                    )
                    + 1,
                )
            return {
                "show": True,
                "back": {"link": link({names["year"]: year}), "title": str(year)},
                "choices": [
                    {
                        "link": link({names["year"]: year, names["month"]: month, names["day"]: d}),
                        "title": capfirst(
                            formats.date_format(datetime.date(y, m, d), "MONTH_DAY_FORMAT")
                        ),
                    }
                    for d in days
                ],
            }
        if year:
            y = int(year)
            months: range | list[int] = []
            if first is not None and last is not None:
                months = range(
                    first.month if first.year == y else 1,
                    (last.month if last.year == y else 12) + 1,
                )
            return {
                "show": True,
                "back": {"link": link({}), "title": _("All dates")},
                "choices": [
                    {
                        "link": link({names["year"]: year, names["month"]: m}),
                        "title": capfirst(
                            formats.date_format(datetime.date(y, m, 1), "YEAR_MONTH_FORMAT")
                        ),
                    }
                    for m in months
                ],
            }
    except ValueError:
        return None  # a malformed date in the URL: the list says so already
    years = range(first.year, last.year + 1) if first and last else range(0)
    return {
        "show": True,
        "back": None,
        "choices": [{"link": link({names["year"]: str(y)}), "title": str(y)} for y in years],
    }


class OrchestrixAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The base of the Orchestrix admin pages (see the module docs)."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    #: The template of the read-only detail page (the "change" URL).
    detail_template = "admin/orchestrix_django/detail.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        """The rows, read from Orchestrix's database (``ORCHESTRIX["DATABASE"]``)."""
        return super().get_queryset(request).using(database())

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Nobody adds rows here: they are written by the framework."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Nobody deletes rows here (the event log is append-only; the rest is state).

        This also takes the bulk "delete selected" action away from every list.
        """
        return False

    # -- lists ---------------------------------------------------------------------

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """With exact ``search_fields`` only ("=name"): the rows where one is exactly the term.

        Index lookups: the stock search compares ``UPPER(…)``, which no index answers.
        """
        fields = self.search_fields
        if not fields or not all(field.startswith("=") for field in fields):
            return super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(self.search_match(term)), False

    def search_match(self, term: str) -> Q:
        """The condition of :meth:`get_search_results`: any exact search field equals ``term``."""
        match = Q()
        for field in self.search_fields:
            match |= Q(**{field.removeprefix("="): term})
        return match

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        """The stock change list; filters holding NUL characters are invalid lookups.

        No stored value holds a NUL, and PostgreSQL raises on one in a query's
        text: the stock "invalid lookup" answer (a redirect to ``?e=1``)
        replaces a server error.
        """
        if any("\x00" in key or "\x00" in value for key, value in request.GET.items()):
            raise IncorrectLookupParameters("NUL characters in the query")
        return super().get_changelist_instance(request)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The stock list, with the cheap date hierarchy and :meth:`list_context`."""
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if isinstance(context, dict) and "cl" in context:
            context["orchestrix_dates"] = date_hierarchy_context(context["cl"])
            context.update(self.list_context(request, context["cl"]))
        return response

    def list_context(self, request: HttpRequest, changelist: ChangeList) -> dict[str, Any]:
        """What the list template shows besides the stock list (subclasses add to it)."""
        return {}

    # -- the read-only detail page -------------------------------------------------

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Model | None:
        """The row, or ``None`` when there is none (an id with a NUL character never exists)."""
        if "\x00" in object_id:
            return None
        return super().get_object(request, object_id, from_field)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """A read-only page about one row; anything but GET is refused."""
        if request.method not in ("GET", "HEAD"):
            raise PermissionDenied("these rows are read-only here")
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self.not_found(request, object_id)
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "original": obj,
            "object_id": object_id,
            "title": self.detail_title(obj),
            "subtitle": None,
            "has_view_permission": True,
            "has_change_permission": self.has_change_permission(request, obj),
            **self.detail_context(request, obj),
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.detail_template, context)

    def not_found(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Back to the list, saying the row is gone (as the stock change page does)."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        self.message_user(
            request,
            f"{capfirst(str(self.opts.verbose_name))} “{unquote(object_id)}” does not exist. "
            "Perhaps it was deleted?",
            messages.WARNING,
        )
        return HttpResponseRedirect(admin_url(self.model, "changelist"))

    def detail_title(self, obj: Model) -> str:
        """The heading of the detail page."""
        return f"{capfirst(str(self.opts.verbose_name))} {obj}"

    def detail_context(self, request: HttpRequest, obj: Model) -> dict[str, Any]:
        """What the detail template shows besides the object (subclasses add to it)."""
        return {}

    def check_change_permission(self, request: HttpRequest, obj: Model | None = None) -> None:
        """Raise PermissionDenied unless the user may operate on ``obj``."""
        if not self.has_change_permission(request, obj):
            raise PermissionDenied


class OperableAdmin(OrchestrixAdmin):
    """An :class:`OrchestrixAdmin` whose detail page has operation buttons.

    Adds the ``<id>/operate/`` URL. Its view takes POST only, needs the
    *change* permission on the row, runs :meth:`operate` and goes back to
    the detail page with the outcome as a message.
    """

    def get_urls(self) -> list[URLPattern]:
        """The stock URLs plus ``<id>/operate/`` (POST) for the detail page's buttons."""
        opts = self.opts
        operate = path(
            "<path:object_id>/operate/",
            self.admin_site.admin_view(self.operate_view),
            name=f"{opts.app_label}_{opts.model_name}_operate",
        )
        return [operate, *super().get_urls()]

    def operate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Check the method, the row and the permission, then run the posted ``operation``."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        row_id = unquote(object_id)
        obj = self.get_object(request, row_id)
        if obj is None:
            return self.not_found(request, object_id)
        self.check_change_permission(request, obj)
        outcome = self.operate(request, row_id, request.POST.get("operation", ""))
        self.message_user(request, outcome.text, outcome.level)
        return HttpResponseRedirect(admin_url(self.model, "change", quote(row_id)))

    #: The order in which an action runs on the selected rows (empty: the list's).
    action_order: tuple[str, ...] = ()

    def operate(self, request: HttpRequest, row_id: str, operation: str) -> Outcome:
        """Run ``operation`` on the row ``row_id`` (subclasses say which they offer)."""
        return unknown_operation(operation)

    def run_action(
        self, request: HttpRequest, queryset: QuerySet[Any], operation: Callable[[str], Outcome]
    ) -> None:
        """Run ``operation`` on each selected row, with a message for each outcome."""
        if self.action_order:
            queryset = queryset.order_by(*self.action_order)
        for row_id in queryset.values_list("pk", flat=True):
            outcome = operation(row_id)
            self.message_user(request, outcome.text, outcome.level)


def unknown_operation(operation: str) -> Outcome:
    """The outcome of a button nobody offers (a stale page, a hand-made POST)."""
    return Outcome(messages.ERROR, f"Unknown operation {operation!r}.")
