"""The Celery app of the benchmarks' workload 6, set up as a project's ``proj/celery.py``.

Configured like the test suite's (tests/celery_app.py): Redis broker, late
acknowledgement, one message prefetched, JSON only, no results; the tasks of
``orchestrix_django.tasks``. The broker is the Redis of
``ORCHESTRIX_BENCH_REDIS_URL`` (database 11 of the local server by default),
which also holds the wake-up markers (the Django cache) and what the
workload measures, all under the run's key prefix
(``ORCHESTRIX_BENCH_KEY_PREFIX``, see :class:`benchmarks.db.CeleryMode`).

Imported by a process whose environment names the benchmark database
(``ORCHESTRIX_BENCH_DB``, a :meth:`DbConfig.to_json`), it sets Django up for
that database in the Celery mode (``WAKE_UP = "celery"``, the markers in
Redis, the ``bench-visible`` projection alone) and installs Celery's Django
fix-up, as ``DJANGO_SETTINGS_MODULE`` does in a project (so the worker, like
a project's, closes its database connection around each task). The
workload starts its worker so::

    ORCHESTRIX_BENCH_DB='{"vendor": "postgresql", ...}' \\
        python -m celery -A benchmarks.celery_app worker -P solo -c 1 ...

and its writer process imports this module with the same environment (its
commits then send their wake-ups to this app's broker).

In the worker, after each task, the visibility times the ``bench-visible``
projection noted (:data:`benchmarks.benchapp.projections.VISIBLE`) go to a
Redis hash and a task counter is incremented: the workload reads both.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

from benchmarks.db import CeleryMode, DbConfig, setup_django

__all__ = [
    "DEFAULT_REDIS_URL",
    "ENV_DB",
    "ENV_KEY_PREFIX",
    "ENV_REDIS_URL",
    "app",
    "environment",
    "make_app",
    "mode_from_env",
]

#: Database 11 of the local Redis: the benchmarks' own (the tests use 15).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
ENV_REDIS_URL = "ORCHESTRIX_BENCH_REDIS_URL"
ENV_KEY_PREFIX = "ORCHESTRIX_BENCH_KEY_PREFIX"
ENV_DB = "ORCHESTRIX_BENCH_DB"


def mode_from_env() -> CeleryMode:
    """The Redis URL and key prefix of this process's environment (or the defaults)."""
    return CeleryMode(
        redis_url=os.environ.get(ENV_REDIS_URL, DEFAULT_REDIS_URL),
        key_prefix=os.environ.get(ENV_KEY_PREFIX, "orchestrix-bench:"),
    )


def environment(config: DbConfig, mode: CeleryMode) -> dict[str, str]:
    """The variables that make a process importing this module join the run."""
    return {
        ENV_DB: config.to_json(),
        ENV_REDIS_URL: mode.redis_url,
        ENV_KEY_PREFIX: mode.key_prefix,
    }


def make_app(mode: CeleryMode, *, set_as_current: bool = True) -> Celery:
    """A Celery app on ``mode``'s broker, configured as the product recommends.

    The main process of the benchmarks makes one with ``set_as_current=False``
    to send tasks without becoming a Celery project itself.
    """
    celery = Celery(
        "orchestrix_bench", include=["orchestrix_django.tasks"], set_as_current=set_as_current
    )
    _configure(celery, mode)
    return celery


def _configure(celery: Celery, mode: CeleryMode) -> None:
    celery.conf.update(
        broker_url=mode.redis_url,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        broker_transport_options={
            # Every key of the run under its prefix (see CeleryMode).
            "global_keyprefix": mode.broker_prefix,
            "visibility_timeout": 60,
        },
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # No broadcast channel: nothing here controls the worker remotely.
        worker_enable_remote_control=False,
        worker_hijack_root_logger=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )


app = make_app(mode_from_env())


def _publish_visible(mode: CeleryMode) -> Any:
    """The ``task_postrun`` receiver that hands the noted visibility times to Redis."""
    import redis

    from benchmarks.benchapp.projections import VISIBLE

    client = redis.Redis.from_url(mode.redis_url)

    def publish(**kwargs: Any) -> None:
        # After the task: the times were taken when each batch committed, so
        # publishing them later changes nothing measured.
        noted = dict(VISIBLE)
        VISIBLE.clear()
        with client.pipeline(transaction=False) as pipe:
            if noted:
                pipe.hset(mode.visible_key, mapping=noted)  # type: ignore[arg-type]
            pipe.incr(mode.tasks_key)
            pipe.execute()

    return publish


def _join_run() -> None:
    """Django in the Celery mode, and the process's Celery wiring (see the module docs)."""
    from celery.fixups.django import DjangoFixup

    mode = mode_from_env()
    # The environment is read again (and wins): the module may have been
    # imported before it was set.
    _configure(app, mode)
    setup_django(DbConfig.from_json(os.environ[ENV_DB]), celery=mode)
    # What DJANGO_SETTINGS_MODULE would have installed: the settings are
    # configured in code here, so Celery cannot find them by itself.
    DjangoFixup(app).install()
    app.set_default()
    signals.task_postrun.connect(_publish_visible(mode), weak=False)


if ENV_DB in os.environ:
    _join_run()
