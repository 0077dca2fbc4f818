"""Settings of the example project, in two modes chosen by environment variables.

**Embedded mode (the default): SQLite and the in-process runner.** No server
to install: the database is the file ``example_project/db.sqlite3``, and
projections and sagas run inside the Django process (``manage.py
orchestrix_demo`` runs them while it serves, ``manage.py orchestrix_run``
runs them on their own).

**Celery mode: PostgreSQL + Redis + Celery workers.** Set

* ``ORCHESTRIX_EXAMPLE_DATABASE_URL=postgresql://USER:PASSWORD@HOST:PORT/NAME``
  (the database must exist: ``createdb orchestrix_example``);
* ``ORCHESTRIX_EXAMPLE_CELERY=1``: commits wake the projections through
  Celery tasks, sagas run as Celery tasks, the cache (where the wake-up
  markers live) is Redis;
* ``ORCHESTRIX_EXAMPLE_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``): the
  Celery broker and the cache;

and start a worker with its beat: ``celery -A example_project worker -B -l info``.

All the variables (each optional):

``ORCHESTRIX_EXAMPLE_DATABASE_URL``
    ``sqlite:///path/to/file.sqlite3`` (a relative path is relative to the
    repository), ``postgresql://user:password@host:port/name``, or
    ``mysql://user:password@host:port/name`` (MariaDB/MySQL); default: SQLite
    in ``example_project/db.sqlite3``.
``ORCHESTRIX_EXAMPLE_CELERY``
    ``1``: the Celery mode (default: the embedded mode).
``ORCHESTRIX_EXAMPLE_REDIS_URL``
    The Celery broker and cache of the Celery mode (default
    ``redis://127.0.0.1:6379/0``).
``ORCHESTRIX_EXAMPLE_TEST_DB_NAME``
    The database the tests create: default, a file in the temporary directory
    for SQLite, ``test_orchestrix_example`` on a server.
``ORCHESTRIX_EXAMPLE_DEBUG``
    ``0`` turns Django's debug mode off (default on: this is a development
    project, and runserver serves the admin's static files in debug mode only).
``ORCHESTRIX_EXAMPLE_SECRET_KEY``
    Default: a fixed key, fine for a demo on your own machine only.
``ORCHESTRIX_EXAMPLE_ALLOWED_HOSTS``
    Comma-separated (default ``127.0.0.1,localhost,[::1],testserver``).
``ORCHESTRIX_EXAMPLE_LOG_LEVEL``
    The level of the ``orchestrix`` and ``example_project`` loggers (default
    ``WARNING``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent
REPOSITORY = BASE_DIR.parent


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0 (true/false, yes/no), got {value!r}")


def database_from_url(url: str) -> dict[str, Any]:
    """Django's ``DATABASES["default"]`` for a URL (see the module docs for the forms)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        # sqlite:///relative/path or sqlite:////absolute/path
        raw = unquote(parts.path)[1:] if parts.path.startswith("/") else unquote(parts.path)
        path = Path(raw) if raw else BASE_DIR / "db.sqlite3"
        if not path.is_absolute():
            path = REPOSITORY / path
        return sqlite_database(path)
    engines = {
        "postgres": "django.db.backends.postgresql",
        "postgresql": "django.db.backends.postgresql",
        "mysql": "django.db.backends.mysql",
        "mariadb": "django.db.backends.mysql",
    }
    if scheme not in engines:
        raise ImproperlyConfigured(
            f"ORCHESTRIX_EXAMPLE_DATABASE_URL: unknown scheme {scheme!r} in {url!r} "
            "(use sqlite:///…, postgresql://… or mysql://…)"
        )
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured(
            f"ORCHESTRIX_EXAMPLE_DATABASE_URL: {url!r} names no database (…/NAME at the end)"
        )
    database: dict[str, Any] = {
        "ENGINE": engines[scheme],
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or ""),
        "TEST": {
            "NAME": os.environ.get("ORCHESTRIX_EXAMPLE_TEST_DB_NAME") or "test_orchestrix_example"
        },
    }
    if engines[scheme].endswith("mysql"):
        database["OPTIONS"] = {"charset": "utf8mb4"}
        database["TEST"].update(CHARSET="utf8mb4", COLLATION="utf8mb4_bin")
    return database


def sqlite_database(path: Path) -> dict[str, Any]:
    """An SQLite file database, set up for a web server and runners side by side."""
    test_name = os.environ.get("ORCHESTRIX_EXAMPLE_TEST_DB_NAME") or str(
        # A file, not memory: the saga run locks and the runner threads need one.
        Path(tempfile.gettempdir()) / f"orchestrix-example-test-{os.getpid()}.sqlite3"
    )
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            # A write transaction takes the write lock when it begins, not at its
            # first write: two writers (a request and the runner) then queue for
            # up to `timeout` seconds instead of one failing with "database is
            # locked" when it tries to upgrade a read lock.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            # Readers no longer wait for writers (write-ahead log).
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        "TEST": {"NAME": test_name},
    }


# ---------------------------------------------------------------- the modes

CELERY_MODE = _env_flag("ORCHESTRIX_EXAMPLE_CELERY", False)
DATABASE_URL = os.environ.get("ORCHESTRIX_EXAMPLE_DATABASE_URL", "")
REDIS_URL = os.environ.get("ORCHESTRIX_EXAMPLE_REDIS_URL", "redis://127.0.0.1:6379/0")

DATABASES = {
    "default": database_from_url(DATABASE_URL)
    if DATABASE_URL
    else sqlite_database(BASE_DIR / "db.sqlite3")
}

# ---------------------------------------------------------------- Django

SECRET_KEY = os.environ.get(
    "ORCHESTRIX_EXAMPLE_SECRET_KEY", "orchestrix-example-not-secret-do-not-deploy"
)
DEBUG = _env_flag("ORCHESTRIX_EXAMPLE_DEBUG", True)
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get(
        "ORCHESTRIX_EXAMPLE_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver"
    ).split(",")
    if host.strip()
]
USE_TZ = True  # Orchestrix stores timezone-aware UTC timestamps
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "orchestrix_django",
    "example_project.banking",
    "example_project.orders",
    "example_project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    # Sign in through the admin (session) or send the demo user's credentials
    # (curl -u admin:PASSWORD …).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}

# ---------------------------------------------------------------- Orchestrix

ORCHESTRIX: dict[str, Any] = {
    # Imported at start-up, so every stored event type decodes (MoneyDepositedV1 too).
    "EVENT_MODULES": ["example_project.banking.events", "example_project.orders.events"],
    "UPCASTERS": "example_project.upcasters.upcasters",
    # Their register(bus, store) subscribes the command handlers.
    "MODULES": [
        "example_project.banking.handlers.BankingModule",
        "example_project.orders.handlers.OrdersModule",
    ],
    "PROJECTIONS": [
        "example_project.banking.projections.accounts",
        "example_project.banking.projections.transfers",
        "example_project.orders.projections.inventory",
        "example_project.orders.projections.orders",
    ],
    "SAGAS": [
        "example_project.banking.sagas.transfer_saga",
        "example_project.orders.sagas.order_fulfillment",
    ],
    # "none": orchestrix_run (or orchestrix_demo while it serves) runs projections
    # and sagas; "celery": each commit wakes the projections' tasks, each saga
    # is a task.
    "WAKE_UP": "celery" if CELERY_MODE else "none",
    "POLL_INTERVAL": 1.0,
}

if CELERY_MODE:
    # The wake-up markers must be shared by the web processes and the workers.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "orchestrix-example",
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
    # What orchestrix_django.celery recommends: late acknowledgement, one message
    # at a time per worker process, JSON only, no results.
    CELERY_TASK_ACKS_LATE = True
    CELERY_TASK_REJECT_ON_WORKER_LOST = True
    CELERY_WORKER_PREFETCH_MULTIPLIER = 1
    CELERY_TASK_SERIALIZER = "json"
    CELERY_ACCEPT_CONTENT = ["json"]
    CELERY_TASK_IGNORE_RESULT = True
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 300}

_LOG_LEVEL = os.environ.get("ORCHESTRIX_EXAMPLE_LOG_LEVEL", "WARNING").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "orchestrix": {"handlers": ["console"], "level": _LOG_LEVEL, "propagate": False},
        "example_project": {"handlers": ["console"], "level": _LOG_LEVEL, "propagate": False},
    },
}
