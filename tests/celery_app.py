"""The Celery app of the test suite, configured as a project's ``proj/celery.py`` would be.

Broker: the Redis database of the test run (``ORCHESTRIX_TEST_REDIS_URL``, see
tests/run_resources.py; the Django cache of tests/settings.py uses the same one).
Late acknowledgement, one message prefetched per worker, JSON only, no
results. ``ORCHESTRIX_TEST_VISIBILITY_TIMEOUT`` (seconds, default 10) is how
long the message of a killed worker waits before Redis hands it out again;
short, so that the tests that kill workers don't wait an hour.

Start a worker on the test database as the tests do::

    DJANGO_SETTINGS_MODULE=tests.settings ORCHESTRIX_WORKER_DB_NAME=<test db> \\
        celery -A tests.celery_app worker -P solo -c 1 --without-heartbeat

The test app (tests/django/testapp/__init__.py) imports this module, as a
project's package imports its Celery app, so that every process that sets
Django up sends its wake-ups here.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from orchestrix_django.celery import beat_schedule, saga_beat_schedule
from tests.run_resources import redis_url

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

REDIS_URL = redis_url()
VISIBILITY_TIMEOUT = float(os.environ.get("ORCHESTRIX_TEST_VISIBILITY_TIMEOUT", "10"))

app = Celery("orchestrix_tests", include=["orchestrix_django.tasks"])
app.conf.update(
    broker_url=REDIS_URL,
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT,
        # Look for the messages of dead workers every second.
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    worker_hijack_root_logger=True,
    broker_connection_timeout=2,
    # Celery 6's default; a cancelled catch-up rolls back and is redelivered.
    worker_cancel_long_running_tasks_on_connection_loss=True,
)


@app.on_after_finalize.connect  # type: ignore[untyped-decorator]
def _add_orchestrix_schedule(sender: Celery, **kwargs: Any) -> None:
    """The periodic catch-up and saga sweep (``CATCH_UP_INTERVAL``, ``SAGA_SWEEP_INTERVAL``)."""
    sender.conf.beat_schedule.update(beat_schedule())
    sender.conf.beat_schedule.update(saga_beat_schedule())
