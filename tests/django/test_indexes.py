"""The event store's queries are served by indexes, on every database.

The SQL is the SQL the store really runs (recorded with an execute wrapper)
or, for lookups the store leaves to the admin and the API, the queryset they
use; each is given to the database's EXPLAIN with a few thousand events stored.
PostgreSQL is told not to scan sequentially, so its plan shows whether an
index can serve the query at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import QuerySet

from orchestrix_django.models import EventRecord
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.testapp.events import MoneyDeposited

pytestmark = pytest.mark.django_db

STREAMS = 60
EVENTS_PER_STREAM = 50
Query = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Seeded:
    store: DjangoEventStore
    stream_id: str
    correlation_id: str
    event_id: str
    head: int


@pytest.fixture
def seeded() -> Seeded:
    """3000 events in 60 streams, each stream with its own correlation id."""
    store = DjangoEventStore()
    for n in range(STREAMS):
        stream_id = f"account-{n:04d}"
        events = [
            MoneyDeposited(account_id=stream_id, amount=Decimal(v), correlation_id=f"order-{n}")
            for v in range(EVENTS_PER_STREAM)
        ]
        store.save(stream_id, events, expected_version=0)
    middle = STREAMS // 2
    return Seeded(
        store=store,
        stream_id=f"account-{middle:04d}",
        correlation_id=f"order-{middle}",
        event_id=EventRecord.objects.filter(stream_id=f"account-{middle:04d}", version=5)
        .values_list("event_id", flat=True)
        .get(),
        head=store.head_position(),
    )


def event_table_queries(call: Callable[[], object]) -> list[Query]:
    """The SELECTs on the event table that ``call`` runs, with their parameters."""
    table = connection.ops.quote_name(EventRecord._meta.db_table)
    recorded: list[Query] = []

    def record(execute: Callable[..., Any], sql: str, params: Any, many: bool, ctx: Any) -> Any:
        if sql.lstrip().upper().startswith("SELECT") and table in sql:
            recorded.append((sql, tuple(params or ())))
        return execute(sql, params, many, ctx)

    with connection.execute_wrapper(record):
        call()
    assert recorded, "the call ran no query on the event table"
    return recorded


def queryset_sql(queryset: QuerySet[Any]) -> Query:
    sql, params = queryset.query.sql_with_params()
    return sql, tuple(params)


# -- EXPLAIN per database ------------------------------------------------------------------


def explain_postgresql(sql: str, params: tuple[Any, ...]) -> str:
    with transaction.atomic(), connection.cursor() as cursor:
        # Only for this transaction: a sequential scan becomes the last resort, so
        # the plan is a scan only when no index can serve the query.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # "Index Cond": the index narrows the rows read, not just orders a full scan.
    assert "Index Cond" in plan, plan
    assert "Seq Scan on orchestrix_event" not in plan, plan
    return plan


def explain_sqlite(sql: str, params: tuple[Any, ...]) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        details = [str(row[-1]) for row in cursor.fetchall()]
    plan = "\n".join(details)
    on_events = [d for d in details if "orchestrix_event" in d]
    assert on_events, plan
    for detail in on_events:
        # "SCAN orchestrix_event" reads the whole table; "SEARCH ... USING ..." seeks
        # (a bare "SEARCH orchestrix_event" is MAX(position) read off the rowid b-tree).
        assert detail.startswith("SEARCH"), plan
        assert detail == "SEARCH orchestrix_event" or any(
            marker in detail
            for marker in ("USING INDEX", "USING INTEGER PRIMARY KEY", "USING COVERING INDEX")
        ), plan
    return plan


def explain_mysql(sql: str, params: tuple[Any, ...]) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        columns = [c[0].lower() for c in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    plan = "\n".join(str(row) for row in rows)
    assert rows, plan
    for row in rows:
        if "optimized away" in str(row.get("extra") or ""):
            # MIN/MAX answered from the index while planning: no table access at all.
            continue
        assert row["table"] == "orchestrix_event", plan
        assert row["key"] is not None, plan
        # "index" is a scan of a whole index, "ALL" of the whole table.
        assert row["type"] not in ("ALL", "index"), plan
    return plan


def assert_uses_an_index(query: Query) -> str:
    """EXPLAIN ``query`` on the test database and check that an index serves it."""
    explain = {
        "postgresql": explain_postgresql,
        "sqlite": explain_sqlite,
        "mysql": explain_mysql,
    }[connection.vendor]
    return explain(*query)


# -- the queries ---------------------------------------------------------------------------


def test_reading_a_stream_uses_an_index(seeded: Seeded) -> None:
    """``load`` / ``iter_stream``: by stream id and version, in version order."""
    for query in event_table_queries(lambda: seeded.store.load(seeded.stream_id, 3)):
        assert_uses_an_index(query)


def test_the_stream_version_check_uses_an_index(seeded: Seeded) -> None:
    """The optimistic-locking check every save makes."""
    for query in event_table_queries(lambda: seeded.store.stream_version(seeded.stream_id)):
        assert_uses_an_index(query)


def test_reading_the_log_after_a_position_uses_an_index(seeded: Seeded) -> None:
    """``read_all``: what every projection polls."""
    after = seeded.head - 100
    queries = event_table_queries(lambda: seeded.store.read_all(after_position=after, limit=50))
    for query in queries:
        assert_uses_an_index(query)
    for query in event_table_queries(seeded.store.head_position):
        assert_uses_an_index(query)


def test_the_event_id_lookup_of_a_save_uses_an_index(seeded: Seeded) -> None:
    """The idempotency check of every save (are these event ids stored already?)."""
    stored = seeded.store.load(seeded.stream_id)
    # A retried save: all its events are stored, so the check is all it runs.
    queries = event_table_queries(
        lambda: seeded.store.save(seeded.stream_id, stored, expected_version=0)
    )
    assert any("event_id" in sql and " IN " in sql.upper() for sql, _ in queries)
    for query in queries:
        assert_uses_an_index(query)
    assert_uses_an_index(queryset_sql(EventRecord.objects.filter(event_id=seeded.event_id)))


def test_a_correlation_id_lookup_uses_an_index(seeded: Seeded) -> None:
    """What the admin's correlation chain and search run."""
    chain = EventRecord.objects.filter(correlation_id=seeded.correlation_id).order_by("position")
    assert chain.count() == EVENTS_PER_STREAM
    assert_uses_an_index(queryset_sql(chain))
    caused = EventRecord.objects.filter(causation_id=seeded.event_id)
    assert_uses_an_index(queryset_sql(caused))


def test_a_full_table_scan_would_be_caught(seeded: Seeded) -> None:
    """The checks above can fail: a filter on an unindexed column is reported, also
    when its rows are wanted in position order (a full scan of the primary key)."""
    for unindexed in (
        EventRecord.objects.filter(schema_version=7),
        EventRecord.objects.filter(schema_version=7).order_by(),
    ):
        with pytest.raises(AssertionError):
            assert_uses_an_index(queryset_sql(unindexed))
