"""Django settings for the test suite.

The database comes from ``ORCHESTRIX_TEST_DB`` (``sqlite`` by default,
``postgresql`` or ``mysql``); ``scripts/test.sh`` runs the Django tests once
per database listed in ``ORCHESTRIX_TEST_DATABASES``. Server addresses can be
changed with ``ORCHESTRIX_PG_HOST``/``_PORT``/``_USER`` and
``ORCHESTRIX_MYSQL_HOST``/``_PORT``/``_USER``/``_PASSWORD``. Redis, the Celery
broker and cache, must run too: ``ORCHESTRIX_TEST_REDIS_URL``, by default a
database of ``redis://127.0.0.1:6379`` that no other run on this machine holds
(tests/run_resources.py). The SQLite databases and their saga-lock files live in
the run's folder (``ORCHESTRIX_TEST_RUN_DIR``, by default a temporary folder
removed at the end); a relative ``ORCHESTRIX_TEST_DB_NAME`` names a file there.
"""

from __future__ import annotations

import os

from tests.run_resources import redis_url, run_dir

DB = os.environ.get("ORCHESTRIX_TEST_DB", "sqlite")

SECRET_KEY = "orchestrix-tests-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    # Serves the admin's CSS and scripts from the live server of the browser tests.
    "django.contrib.staticfiles",
    "orchestrix_django",
    "tests.django.testapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
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
]

ROOT_URLCONF = "tests.django.urls"
STATIC_URL = "/static/"

if DB == "sqlite":
    # A file, not memory: tests with several threads or processes need real
    # connections to one database.
    # In the run's folder, so are the saga-lock files next to them (``<database>.saga-locks``).
    _path = os.path.join(run_dir(), "orchestrix-test.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _path,
            "TEST": {
                "NAME": os.path.join(run_dir(), os.environ.get("ORCHESTRIX_TEST_DB_NAME", _path))
            },
            # Django's default (deferred) transactions: the store must cope with them.
            "OPTIONS": {"timeout": 30},
        }
    }
elif DB == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            # An existing database to connect to; the tests use TEST.NAME.
            "NAME": "postgres",
            "USER": os.environ.get("ORCHESTRIX_PG_USER", "postgres"),
            "HOST": os.environ.get("ORCHESTRIX_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("ORCHESTRIX_PG_PORT", "5432"),
            "TEST": {"NAME": os.environ.get("ORCHESTRIX_TEST_DB_NAME", "test_orchestrix")},
        }
    }
elif DB == "mysql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": "mysql",
            "USER": os.environ.get("ORCHESTRIX_MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("ORCHESTRIX_MYSQL_PASSWORD", ""),
            "HOST": os.environ.get("ORCHESTRIX_MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("ORCHESTRIX_MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {
                "NAME": os.environ.get("ORCHESTRIX_TEST_DB_NAME", "test_orchestrix"),
                "CHARSET": "utf8mb4",
                "COLLATION": "utf8mb4_bin",
            },
        }
    }
else:
    raise RuntimeError(f"ORCHESTRIX_TEST_DB must be sqlite, postgresql or mysql, not {DB!r}")

# A second database, for the export/import round trip between two databases
# (tests/django/test_export_import.py). Django creates it only for the tests
# that ask for it; its test name follows the default one's.
_other = dict(DATABASES["default"])
_other_test_name = DATABASES["default"]["TEST"]["NAME"]
_other["TEST"] = {
    **DATABASES["default"]["TEST"],
    "NAME": f"{_other_test_name}-other" if DB == "sqlite" else f"{_other_test_name}_other",
}
if DB == "sqlite":
    _other["NAME"] = f"{DATABASES['default']['NAME']}-other"
DATABASES["other"] = _other

# Worker processes started by the concurrency tests use the test database.
if os.environ.get("ORCHESTRIX_WORKER_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["ORCHESTRIX_WORKER_DB_NAME"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

ORCHESTRIX = {
    "EVENT_MODULES": ["tests.django.testapp.events", "tests.django.testapp.sagas"],
    "PROJECTIONS": [
        "tests.django.testapp.projections.balances",
        "tests.django.testapp.projections.fragile",
        "tests.django.testapp.projections.continuing",
        "tests.django.testapp.projections.flaky",
        "tests.django.testapp.projections.slow",
    ],
    # Processes started by the Celery tests set ORCHESTRIX_TEST_WAKE_UP=celery
    # (tests in this process override the setting); the default is the embedded mode.
    "WAKE_UP": os.environ.get("ORCHESTRIX_TEST_WAKE_UP", "none"),
    "CATCH_UP_INTERVAL": float(os.environ.get("ORCHESTRIX_TEST_CATCH_UP_INTERVAL", "30")),
    "SAGAS": [
        "tests.django.testapp.sagas.order_fulfillment",
        "tests.django.testapp.sagas.order_fulfillment_core",
        "tests.django.testapp.sagas.order_with_deadline",
        "tests.django.testapp.sagas.order_awaiting_confirmation",
    ],
    # The saga tests' workers set these short through the environment.
    "SAGA_SWEEP_INTERVAL": float(os.environ.get("ORCHESTRIX_TEST_SAGA_SWEEP_INTERVAL", "10")),
    "SAGA_RESUME_AFTER": float(os.environ.get("ORCHESTRIX_TEST_SAGA_RESUME_AFTER", "60")),
}

# Workers of the process manager tests also run the test app's process manager
# and its command handlers (tests in this process override the settings).
if os.environ.get("ORCHESTRIX_TEST_PROCESS_MANAGERS"):
    ORCHESTRIX["PROJECTIONS"] = [
        *ORCHESTRIX["PROJECTIONS"],
        "tests.django.testapp.sagas.order_process",
    ]
    ORCHESTRIX["MODULES"] = ["tests.django.testapp.sagas.OrderCommands"]

# Redis is a required service of the Django tests: the Celery broker
# (tests/celery_app.py) and the cache the wake-up markers live in. A database
# of this run's own (tests/run_resources.py), which the Celery tests flush.
TEST_REDIS_URL = redis_url()
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": TEST_REDIS_URL,
        "KEY_PREFIX": "orchestrix-tests",
    }
}
