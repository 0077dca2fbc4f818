"""How fast the admin's event and stream lists answer on a big log (PostgreSQL).

Seeds ``--events`` events (10 per stream, timestamps a minute apart, one
correlation id per stream) straight into a database of its own with
``generate_series``, then times admin pages with Django's test client
(rendering included), logged in as a superuser::

    python -m benchmarks.admin_pages --events 1000000

The goal: the stream list and the event list in under 200 ms each on 1M
events (the median of ``--repeat`` requests after two warm-ups); the exit
code is 1 when either misses it. Other pages (filters, searches, deep pages,
an event, a stream) are timed and reported too. The database
(``--pg-name``, default ``orchestrix_admin_bench``) is dropped and created
anew unless ``--reuse`` finds it seeded with as many events; the server is
``ORCHESTRIX_PG_HOST``/``_PORT``/``_USER`` (default 127.0.0.1:5432, postgres).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

#: Events per stream.
STREAM_LENGTH = 10
#: Rows per INSERT … SELECT (one transaction each).
CHUNK = 200_000
#: The goal of the two list pages, in milliseconds.
GOAL_MS = 200.0


def __getattr__(name: str) -> Any:
    """``urlpatterns``, built when Django asks for them (ROOT_URLCONF is this module)."""
    if name == "urlpatterns":
        from django.contrib import admin
        from django.urls import path

        return [path("admin/", admin.site.urls)]
    raise AttributeError(name)


def configure(database: str) -> None:
    """Set Django up on ``database`` with the admin and Orchestrix."""
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="orchestrix-admin-benchmark",
        DEBUG=False,
        USE_TZ=True,
        TIME_ZONE="UTC",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.admin",
            "orchestrix_django",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        ROOT_URLCONF="benchmarks.admin_pages",
        STATIC_URL="/static/",
        DATABASES={"default": _database(database)},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ORCHESTRIX={"EVENT_MODULES": []},
    )
    django.setup()


def _database(name: str) -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": os.environ.get("ORCHESTRIX_PG_USER", "postgres"),
        "HOST": os.environ.get("ORCHESTRIX_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("ORCHESTRIX_PG_PORT", "5432"),
    }


def _server(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the server's ``postgres`` database (autocommit)."""
    import psycopg

    settings = _database("postgres")
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        dbname="postgres",
        autocommit=True,
    ) as connection:
        cursor = connection.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _events_in(database: str) -> int | None:
    """How many events ``database`` holds (None when it or its table is missing)."""
    if not _server("SELECT 1 FROM pg_database WHERE datname = %s", (database,)):
        return None
    import psycopg

    settings = _database(database)
    try:
        with psycopg.connect(
            host=settings["HOST"], port=settings["PORT"], user=settings["USER"], dbname=database
        ) as connection:
            row = connection.execute("SELECT count(*) FROM orchestrix_event").fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else None


# ---------------------------------------------------------------- seeding


def seed(count: int) -> float:
    """Write ``count`` events and their stream rows; the seconds it took."""
    from django.db import connection, transaction

    started = time.perf_counter()
    length = STREAM_LENGTH
    for first in range(1, count + 1, CHUNK):
        last = min(first + CHUNK - 1, count)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO orchestrix_event (stream_id, version, event_id, event_type,
                    schema_version, data, metadata, timestamp, correlation_id, causation_id,
                    recorded_at)
                SELECT s.stream_id, s.version, 'evt-' || n,
                    CASE WHEN s.version = 1 THEN 'AccountOpened' ELSE 'MoneyDeposited' END, 1,
                    CASE WHEN s.version = 1
                        THEN jsonb_build_object('account_id', s.stream_id, 'owner', 'Ann',
                                                'initial_deposit', 10.0)
                        ELSE jsonb_build_object('account_id', s.stream_id,
                                                'amount', ((n %% 100) + 1)::text)
                    END,
                    jsonb_build_object('specversion', '1.0', 'source', 'orchestrix',
                                       'correlation_id', 'corr-' || s.k),
                    s.at, 'corr-' || s.k,
                    CASE WHEN s.version = 1 THEN NULL ELSE 'evt-' || (n - s.version + 1) END,
                    s.at
                FROM generate_series(%s::bigint, %s::bigint) AS n,
                LATERAL (SELECT (n - 1) / {length} AS k,
                                'acc-' || ((n - 1) / {length}) AS stream_id,
                                ((n - 1) %% {length}) + 1 AS version,
                                timestamptz '2024-01-01 00:00:00+00' + n * interval '1 minute'
                                    AS at) AS s
                ORDER BY n
                """,
                [first, last],
            )
        print(f"  {last:>10,} events", flush=True)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO orchestrix_stream (stream_id, aggregate_type, version, first_position,
                last_position, created_at, updated_at)
            SELECT stream_id, 'BankAccount', max(version), min(position), max(position),
                min(recorded_at), max(recorded_at)
            FROM orchestrix_event GROUP BY stream_id
            """
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE orchestrix_event")
        cursor.execute("VACUUM ANALYZE orchestrix_stream")
    return time.perf_counter() - started


# ---------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """The response times of one page, in milliseconds."""

    name: str
    url: str
    samples: list[float]
    queries: int

    @property
    def median(self) -> float:
        """The median response time."""
        return statistics.median(self.samples)

    @property
    def worst(self) -> float:
        """The slowest response."""
        return max(self.samples)


def time_page(client: Any, name: str, url: str, repeat: int) -> Timing:
    """GET ``url`` twice to warm up, then ``repeat`` times, timing each."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(2):
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"{name}: {url} answered {response.status_code}")
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    return Timing(name, url, samples, len(queries.captured_queries))


def pages(count: int) -> list[tuple[str, str, bool]]:
    """(name, URL, counts toward the goal) of every page timed."""
    middle_stream = f"acc-{count // STREAM_LENGTH // 2}"
    events = "/admin/orchestrix_django/eventrecord/"
    streams = "/admin/orchestrix_django/streamrecord/"
    return [
        ("event list", events, True),
        ("stream list", streams, True),
        ("event list, page 100", f"{events}?p=100", False),
        ("event list, by type", f"{events}?event_type=AccountOpened", False),
        ("event list, by stream", f"{events}?stream_id={middle_stream}", False),
        ("event list, search correlation id", f"{events}?q=corr-{count // 20}", False),
        ("event list, search event id", f"{events}?q=evt-{count // 3}", False),
        ("event list, one month", f"{events}?timestamp__year=2024&timestamp__month=6", False),
        ("event list, older than a position", f"{events}?position__lt={count // 2}", False),
        ("stream list, by aggregate type", f"{streams}?aggregate_type=BankAccount", False),
        ("stream list, search", f"{streams}?q={middle_stream}", False),
        ("stream page (timeline)", f"{streams}{middle_stream}/change/", False),
        ("event page", f"{events}{count // 2}/change/", False),
    ]


def main(argv: list[str] | None = None) -> int:
    """Seed (unless reused), time the pages, print a table; 1 when the goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--pg-name", default="orchestrix_admin_bench")
    parser.add_argument("--reuse", action="store_true", help="keep a database already seeded")
    parser.add_argument("--keep", action="store_true", help="do not drop the database after")
    options = parser.parse_args(argv)
    name = options.pg_name
    count = options.events

    reuse = options.reuse and _events_in(name) == count
    if not reuse:
        _server(f'DROP DATABASE IF EXISTS "{name}"')
        _server(f'CREATE DATABASE "{name}"')
    configure(name)
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    _register_events()
    if not reuse:
        call_command("migrate", verbosity=0)
        print(f"seeding {count:,} events ({STREAM_LENGTH} per stream) into {name}", flush=True)
        print(f"seeded in {seed(count):.1f} s", flush=True)
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "bench@example.com", "bench"
    )
    client = Client()
    client.force_login(user)

    missed = []
    print(f"\n{'page':<36} {'median ms':>10} {'worst ms':>10} {'queries':>8}")
    for title, url, goal in pages(count):
        timing = time_page(client, title, url, options.repeat)
        flag = ""
        if goal:
            flag = "  ok" if timing.median < GOAL_MS else f"  MISSED (goal {GOAL_MS:.0f} ms)"
            if timing.median >= GOAL_MS:
                missed.append(title)
        print(
            f"{title:<36} {timing.median:>10.1f} {timing.worst:>10.1f} {timing.queries:>8}{flag}",
            flush=True,
        )
    if not options.keep and not options.reuse:
        from django.db import connections

        connections.close_all()
        _server(f'DROP DATABASE IF EXISTS "{name}"')
    if missed:
        print(f"\ngoal missed: {', '.join(missed)}")
        return 1
    print(f"\nthe event and stream lists answer in under {GOAL_MS:.0f} ms on {count:,} events")
    return 0


def _register_events() -> None:
    """Event classes for the seeded types, so that the event page decodes them."""
    from dataclasses import dataclass as frozen_event

    from orchestrix.core.messaging.message import Event

    @frozen_event(frozen=True, kw_only=True)
    class AccountOpened(Event):
        account_id: str
        owner: str
        initial_deposit: float

    @frozen_event(frozen=True, kw_only=True)
    class MoneyDeposited(Event):
        account_id: str
        amount: Decimal

    _keep.extend([AccountOpened, MoneyDeposited])


_keep: list[Callable[..., Any]] = []

if __name__ == "__main__":
    sys.exit(main())
