"""The benchmark database: its own database on the server, Django configured in code.

The suite never touches the databases the tests use: on PostgreSQL it drops
and creates ``orchestrix_bench`` (``--pg-name``), on SQLite it uses a new
temporary file. Every process of a run (the main one, the writer pool, the
memory probes) calls :func:`setup_django` with the same :class:`DbConfig`;
the processes of the Celery workload (its writer and its ``celery worker``)
pass a :class:`CeleryMode` too, and get the settings of a project whose
commits wake projections through Celery.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "CELERY_PROJECTIONS",
    "CeleryMode",
    "DbConfig",
    "create_database",
    "drop_database",
    "peer_available",
    "server_info",
    "setup_django",
]

#: Models of the benchmark's own events live here (EVENT_MODULES).
EVENT_MODULE = "benchmarks.benchapp.events"
#: The projections the catch-up and memory workloads run.
PROJECTIONS = [
    "benchmarks.benchapp.projections.noop",
    "benchmarks.benchapp.projections.upsert",
    "benchmarks.benchapp.projections.checked",
]
#: The only projection of the Celery workload's processes: each commit wakes it alone.
CELERY_PROJECTIONS = ["benchmarks.benchapp.projections.visible"]


@dataclass(frozen=True)
class DbConfig:
    """Where the benchmark database is; picklable, so child processes get it."""

    vendor: str  # "sqlite" or "postgresql"
    name: str  # the database name, or the SQLite file's path
    host: str = ""
    port: str = ""
    user: str = ""
    password: str = ""

    @classmethod
    def for_vendor(cls, vendor: str, pg_name: str = "orchestrix_bench") -> DbConfig:
        """The configuration for ``--db vendor`` (server from ``ORCHESTRIX_PG_*``)."""
        if vendor == "sqlite":
            path = os.path.join(tempfile.gettempdir(), f"orchestrix-bench-{os.getpid()}.sqlite3")
            return cls("sqlite", path)
        if vendor == "postgresql":
            return cls(
                "postgresql",
                pg_name,
                host=os.environ.get("ORCHESTRIX_PG_HOST", "127.0.0.1"),
                port=os.environ.get("ORCHESTRIX_PG_PORT", "5432"),
                user=os.environ.get("ORCHESTRIX_PG_USER", "postgres"),
                password=os.environ.get("ORCHESTRIX_PG_PASSWORD", ""),
            )
        raise ValueError(f"--db must be sqlite or postgresql, not {vendor!r}")

    @property
    def is_postgresql(self) -> bool:
        """Whether this is PostgreSQL (else SQLite)."""
        return self.vendor == "postgresql"

    @property
    def peer_sqlite_path(self) -> str:
        """The SQLite file of the ``eventsourcing`` peer: its table names
        (``stored_events``) are those of ``eventsourcing-django``'s models."""
        return self.name.removesuffix(".sqlite3") + "-eventsourcing.sqlite3"

    def as_dict(self) -> dict[str, Any]:
        """The configuration without the password, for the report."""
        shown = asdict(self)
        shown.pop("password")
        return shown

    def to_json(self) -> str:
        """Every field (the password too), for a child process's environment."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DbConfig:
        """The configuration :meth:`to_json` wrote."""
        return cls(**json.loads(text))

    def django_database(self) -> dict[str, Any]:
        """The ``DATABASES["default"]`` entry."""
        if self.is_postgresql:
            return {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": self.name,
                "USER": self.user,
                "PASSWORD": self.password,
                "HOST": self.host,
                "PORT": self.port,
            }
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": self.name,
            "OPTIONS": {"timeout": 60},
        }

    def psycopg_kwargs(self, dbname: str | None = None) -> dict[str, Any]:
        """Keyword arguments of ``psycopg.connect``."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": dbname or self.name,
        }
        if self.password:
            kwargs["password"] = self.password
        return kwargs


@dataclass(frozen=True)
class CeleryMode:
    """Django as a project running its projections on Celery: the Celery workload's mode.

    ``ORCHESTRIX["WAKE_UP"] = "celery"``, the pending-wake-up markers in a
    Redis cache at ``redis_url`` (shared by the writer and the worker, as the
    product requires), and only the ``bench-visible`` projection configured.
    Every key the run creates in Redis (cache, broker, measurements) starts
    with ``key_prefix``, so that two runs sharing the Redis database (a CI
    smoke run next to a run by hand) neither see nor delete each other's.
    """

    redis_url: str
    key_prefix: str

    @property
    def cache_prefix(self) -> str:
        """``KEY_PREFIX`` of the Django cache (Django adds ``:<version>:``)."""
        return self.key_prefix + "cache"

    @property
    def broker_prefix(self) -> str:
        """kombu's ``global_keyprefix``: the queues and their bookkeeping."""
        return self.key_prefix + "broker:"

    @property
    def visible_key(self) -> str:
        """The hash ``event id -> time it became visible`` the worker fills."""
        return self.key_prefix + "visible"

    @property
    def tasks_key(self) -> str:
        """The counter of the tasks the worker ran."""
        return self.key_prefix + "tasks"


def peer_available(module: str) -> bool:
    """Whether a peer package (``eventsourcing``, ``eventsourcing_django``) is installed."""
    return importlib.util.find_spec(module) is not None


def setup_django(config: DbConfig, *, celery: CeleryMode | None = None) -> None:
    """Configure and set up Django for the benchmark database (once per process).

    With ``celery``, in the Celery workload's mode (see :class:`CeleryMode`).
    """
    import django
    from django.conf import settings

    if settings.configured:
        return
    apps = [
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "orchestrix_django",
        "benchmarks.benchapp",
    ]
    if peer_available("eventsourcing_django"):
        apps.append("eventsourcing_django")
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        TIME_ZONE="UTC",
        SECRET_KEY="orchestrix-benchmarks-not-secret",
        INSTALLED_APPS=apps,
        DATABASES={"default": config.django_database()},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING_CONFIG=None,
        **(_celery_settings(celery) if celery else _plain_settings()),
    )
    django.setup()


def _plain_settings() -> dict[str, Any]:
    """No wake-ups; the projections of the catch-up and memory workloads."""
    return {
        "ORCHESTRIX": {"EVENT_MODULES": [EVENT_MODULE], "PROJECTIONS": PROJECTIONS},
        "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        # The system checks warn about the local-memory cache and such: not the point here.
        "SILENCED_SYSTEM_CHECKS": ["orchestrix.W009"],
    }


def _celery_settings(mode: CeleryMode) -> dict[str, Any]:
    """Wake-ups through Celery, markers in Redis, one projection (see :class:`CeleryMode`)."""
    return {
        "ORCHESTRIX": {
            "EVENT_MODULES": [EVENT_MODULE],
            "PROJECTIONS": CELERY_PROJECTIONS,
            "WAKE_UP": "celery",
            "WAKE_UP_CACHE": "default",
        },
        "CACHES": {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": mode.redis_url,
                "KEY_PREFIX": mode.cache_prefix,
            }
        },
    }


def create_database(config: DbConfig) -> None:
    """Create the benchmark database afresh (dropping a leftover one) and migrate it."""
    drop_database(config)
    if config.is_postgresql:
        import psycopg

        with psycopg.connect(**config.psycopg_kwargs("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{config.name}"')
    else:
        # WAL, as for any SQLite database with concurrent readers and writers
        # (and what eventsourcing-django switches every SQLite file to anyway,
        # so that all the contenders run on the same journal mode).
        with sqlite3.connect(config.name) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    setup_django(config)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def drop_database(config: DbConfig) -> None:
    """Remove the benchmark database (no error when there is none)."""
    if config.is_postgresql:
        import psycopg

        with psycopg.connect(**config.psycopg_kwargs("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{config.name}" WITH (FORCE)')
        return
    for name in (config.name, config.peer_sqlite_path):
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(name + suffix):
                os.remove(name + suffix)


def server_info(config: DbConfig) -> dict[str, Any]:
    """The server's version and the settings that matter for write and read speed."""
    if config.is_postgresql:
        import psycopg

        names = [
            "server_version",
            "shared_buffers",
            "synchronous_commit",
            "fsync",
            "full_page_writes",
            "wal_level",
            "wal_buffers",
            "max_wal_size",
            "checkpoint_timeout",
            "work_mem",
            "effective_cache_size",
            "max_connections",
            "default_transaction_isolation",
        ]
        info: dict[str, Any] = {}
        with psycopg.connect(**config.psycopg_kwargs(), autocommit=True) as conn:
            row = conn.execute("SELECT version()").fetchone()
            info["version"] = row[0] if row else "?"
            for name in names:
                found = conn.execute(f"SHOW {name}").fetchone()
                info[name] = found[0] if found else "?"
        return info
    with sqlite3.connect(config.name) as conn:
        return {
            "version": f"SQLite {sqlite3.sqlite_version}",
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0],
            "page_size": conn.execute("PRAGMA page_size").fetchone()[0],
            "cache_size": conn.execute("PRAGMA cache_size").fetchone()[0],
        }
