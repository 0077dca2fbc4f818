"""Counting and listing that stay fast on tables of millions of rows.

The stock admin counts every page's rows with ``SELECT COUNT(*)`` (twice: the
filtered list and the whole table) and builds filters and the date hierarchy
from ``SELECT DISTINCT`` over the whole table. On an event log of millions of
rows each of those is a full scan per page load. Here instead:

* :class:`EstimatedCountPaginator` counts exactly only up to a cap
  (``COUNT(*)`` over a ``LIMIT``-ed subquery, which stops early) and takes an
  unfiltered table's size from the database's statistics (PostgreSQL's
  ``pg_class``, MySQL's ``information_schema``), never from a scan;
* :func:`distinct_values` lists an indexed column's values with a loose index
  scan (a recursive query that jumps from one value to the next on
  PostgreSQL; MySQL does the same for a plain ``DISTINCT``).
"""

from __future__ import annotations

import math
from typing import Any

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db import connections
from django.db.models import Model, QuerySet
from django.utils.functional import cached_property

__all__ = [
    "EXACT_COUNT_LIMIT",
    "EstimatedCountPaginator",
    "capped_count",
    "distinct_values",
    "estimated_table_rows",
]

#: Up to this many rows are counted exactly; beyond, counts are estimates.
EXACT_COUNT_LIMIT = 10_000


def estimated_table_rows(model: type[Model], using: str) -> int | None:
    """The number of rows of ``model``'s table by the database's statistics, or None.

    PostgreSQL: ``reltuples`` scaled to the table's current size, as the
    query planner does (so rows added since the last ``ANALYZE`` count too);
    None when the table was never analysed. MySQL/MariaDB: ``TABLE_ROWS``
    (an estimate for InnoDB). SQLite keeps no such statistic: None.
    """
    connection = connections[using]
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT CASE WHEN c.reltuples < 0 OR c.relpages = 0 THEN NULL"
                " ELSE c.reltuples / c.relpages"
                " * (pg_relation_size(c.oid) / current_setting('block_size')::integer)"
                " END FROM pg_class c WHERE c.oid = to_regclass(%s)",
                [connection.ops.quote_name(table)],
            )
        elif connection.vendor == "mysql":
            cursor.execute(
                "SELECT TABLE_ROWS FROM information_schema.TABLES"
                " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                [table],
            )
        else:
            return None
        row = cursor.fetchone()
    if row is None or row[0] is None:
        return None
    return max(int(row[0]), 0)


def capped_count(queryset: QuerySet[Any], cap: int) -> int:
    """``min(queryset.count(), cap + 1)``, without counting past ``cap + 1`` rows."""
    return int(queryset.order_by()[: cap + 1].count())


def _is_unfiltered(queryset: QuerySet[Any]) -> bool:
    query = queryset.query
    return not query.where and not query.is_sliced and not query.distinct


class EstimatedCountPaginator(Paginator):  # type: ignore[type-arg]
    """A paginator whose count never scans a big table.

    ``count`` is exact up to :data:`EXACT_COUNT_LIMIT` rows. Beyond that it
    is the table's estimated size (an unfiltered list) or the cap itself
    (a filtered one), and :attr:`count_is_estimated` is true: the admin
    then says the count is approximate. Every page number can be asked for,
    also one past the estimate (a page past the real end is just empty), so
    an estimate that is too low never hides rows.
    """

    #: Up to this many rows are counted exactly.
    exact_count_limit = EXACT_COUNT_LIMIT

    @cached_property
    def count(self) -> int:
        """The number of rows: exact up to the cap, an estimate beyond."""
        items = self.object_list
        if not isinstance(items, QuerySet):
            return len(list(items))
        # Never below a page: the admin lists a queryset unsliced when its
        # count says it fits on one page.
        cap = max(self.exact_count_limit, self.per_page)
        if _is_unfiltered(items):
            estimate = estimated_table_rows(items.model, items.db)
            if estimate is not None and estimate > cap:
                self.count_is_estimated = True
                return estimate
        counted = capped_count(items, cap)
        if counted > cap:
            self.count_is_estimated = True
        return counted

    #: Whether :attr:`count` is an estimate (set when it is computed).
    count_is_estimated = False

    def validate_number(self, number: Any) -> int:
        """A page number >= 1; pages past the (maybe estimated) count are allowed."""
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            page = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger("That page number is not an integer") from None
        if page < 1:
            raise EmptyPage("That page number is less than 1")
        return page

    def page(self, number: Any) -> Page[Any]:
        """The page ``number``: ``per_page`` rows from its offset (no count needed)."""
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        return Page(self.object_list[bottom : bottom + self.per_page], number, self)

    @cached_property
    def num_pages(self) -> int:
        """Pages at :attr:`count` rows (at least 1)."""
        if self.count == 0:
            return 1
        return max(1, math.ceil(self.count / self.per_page))


def distinct_values(
    model: type[Model], field_name: str, using: str, *, limit: int = 200
) -> list[Any]:
    """Up to ``limit`` distinct non-null values of ``field_name``, sorted.

    The column should be the first of an index: PostgreSQL then walks the
    index from one value to the next (a recursive query, one index probe per
    value, however many rows share a value); MySQL/MariaDB does that for a
    ``DISTINCT`` by itself (a loose index scan). SQLite reads the index.
    """
    connection = connections[using]
    field = model._meta.get_field(field_name)
    if connection.vendor == "postgresql":
        quote = connection.ops.quote_name
        table = quote(model._meta.db_table)
        column = quote(str(getattr(field, "column", field_name)))
        sql = (
            f"WITH RECURSIVE found(value) AS ("
            f" (SELECT {column} FROM {table} WHERE {column} IS NOT NULL"
            f"  ORDER BY {column} LIMIT 1)"
            f" UNION ALL"
            f" SELECT (SELECT {column} FROM {table} WHERE {column} > found.value"
            f"  ORDER BY {column} LIMIT 1) FROM found WHERE found.value IS NOT NULL"
            f") SELECT value FROM found WHERE value IS NOT NULL LIMIT %s"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [limit])
            return [row[0] for row in cursor.fetchall()]
    return list(
        model._default_manager.using(using)
        .filter(**{f"{field_name}__isnull": False})
        .order_by(field_name)
        .values_list(field_name, flat=True)
        .distinct()[:limit]
    )
