"""Fixtures of the Django tests; the database server and Redis must be reachable
(never skipped)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings

from tests.run_resources import redis_url_chosen_here


@pytest.fixture(scope="session", autouse=True)
def _database_server_reachable(django_db_blocker: Any) -> None:
    """End the run at once, saying what to do, when the requested server is down."""
    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("sqlite3"):
        from django.db import connection

        with django_db_blocker.unblock():
            try:
                connection.ensure_connection()
            except Exception as error:
                pytest.exit(
                    f"cannot reach the {connection.vendor} server at {db['HOST']}:{db['PORT']} "
                    f"({error}); start it, or leave it out of ORCHESTRIX_TEST_DATABASES",
                    returncode=3,
                )
            finally:
                connection.close()


@pytest.fixture(scope="session", autouse=True)
def _redis_reachable() -> None:
    """End the run at once when Redis (the Celery broker and the cache) is down."""
    import redis

    url = settings.TEST_REDIS_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.exit(
            f"cannot reach Redis at {url} ({error}); start it (redis-server), or point "
            "ORCHESTRIX_TEST_REDIS_URL at a running one: the Django tests need it",
            returncode=3,
        )
    finally:
        client.close()


@pytest.fixture(scope="session", autouse=True)
def _redis_database_of_this_run(_redis_reachable: None) -> Iterator[None]:
    """Empty the Redis database this run chose (tests/run_resources.py) before and after it.

    A database given in ``ORCHESTRIX_TEST_REDIS_URL`` is left as it is.
    """
    if not redis_url_chosen_here():
        yield
        return
    client = redis.Redis.from_url(settings.TEST_REDIS_URL)
    client.flushdb()
    try:
        yield
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """The test Redis database (the Celery broker and the cache), empty before and after."""
    client = redis.Redis.from_url(settings.TEST_REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
