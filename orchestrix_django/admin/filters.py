"""List filters that never scan a big table to list their choices.

The stock field filter lists a column's values with ``SELECT DISTINCT`` over
the whole table. These take their choices from an enum
(:func:`choices_filter`), from a loose index scan (:func:`distinct_filter`),
or show only the value in use (:func:`value_filter`: a stream or a
correlation id, of which there are millions, reached through links).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from orchestrix_django.admin.pagination import distinct_values

__all__ = ["choices_filter", "distinct_filter", "value_filter"]


class _ExactFilter(admin.SimpleListFilter):
    """Filters ``field`` by the exact value of the URL parameter of the same name."""

    field: str = ""

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        """Rows whose ``field`` is the chosen value (all rows without a choice)."""
        value = self.value()
        if value is None or value == "":
            return queryset
        return queryset.filter(**{self.field: value})

    def _with_current(self, choices: Iterable[tuple[Any, str]]) -> list[tuple[Any, str]]:
        """``choices``, plus the value in use when it is not among them."""
        listed = list(choices)
        value = self.value()
        if value and all(str(key) != value for key, _ in listed):
            listed.append((value, value))
        return listed


def choices_filter(
    field: str, title: str, choices: Callable[[], Iterable[tuple[str, str]]]
) -> type[admin.SimpleListFilter]:
    """A filter on ``field`` whose choices are a fixed list (an enum's values)."""

    class ChoicesFilter(_ExactFilter):
        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
            return self._with_current(choices())

    ChoicesFilter.title = title
    ChoicesFilter.parameter_name = field
    ChoicesFilter.field = field
    ChoicesFilter.__name__ = ChoicesFilter.__qualname__ = f"{field.title()}ChoicesFilter"
    return ChoicesFilter


def distinct_filter(field: str, title: str, *, limit: int = 200) -> type[admin.SimpleListFilter]:
    """A filter on the indexed ``field`` whose choices are its stored values.

    They are read with :func:`~orchestrix_django.admin.pagination.distinct_values`
    (a loose index scan), at most ``limit`` of them.
    """

    class DistinctFilter(_ExactFilter):
        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
            model = model_admin.model
            using = model_admin.get_queryset(request).db
            values = distinct_values(model, field, using, limit=limit)
            return self._with_current((v, v or "(blank)") for v in values)

    DistinctFilter.title = title
    DistinctFilter.parameter_name = field
    DistinctFilter.field = field
    DistinctFilter.__name__ = DistinctFilter.__qualname__ = f"{field.title()}DistinctFilter"
    return DistinctFilter


def value_filter(field: str, title: str) -> type[admin.SimpleListFilter]:
    """A filter on ``field`` that shows only the value in use (set by a link or the URL)."""

    class ValueFilter(_ExactFilter):
        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
            return self._with_current(())

    ValueFilter.title = title
    ValueFilter.parameter_name = field
    ValueFilter.field = field
    ValueFilter.__name__ = ValueFilter.__qualname__ = f"{field.title()}ValueFilter"
    return ValueFilter
