"""Schemathesis against the API's own OpenAPI schema: 0 server errors, 0 schema violations.

Every operation of the schema drf-spectacular generates gets generated
requests, valid ones and invalid ones, sent in-process to the project's
WSGI application over the test database (a small history in it), as a
superuser (HTTP Basic) and as an anonymous client, and every response goes
through all of Schemathesis's checks: no 5xx, status codes, content types,
headers and bodies as the schema declares them, invalid input refused and
valid input accepted. The examples are bounded (a few per operation and
mode) to keep the run short.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client, override_settings
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.auths import apply_basic_auth
from schemathesis.checks import CHECKS, load_all_checks

from orchestrix_django.projections import catch_up, get_projection
from tests.django.ops_helpers import open_account
from tests.django.testapp import projections as testapp_projections

pytestmark = pytest.mark.django_db(transaction=True)

#: Generated requests per operation, per generation mode and user.
EXAMPLES = 12
PASSWORD = "orchestrix-schemathesis"
#: Fast hashing: each request authenticates again with HTTP Basic.
FAST_HASHING = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def all_checks() -> list[Any]:
    """Every check Schemathesis has."""
    load_all_checks()
    return list(CHECKS.get_all())


def api_schema() -> dict[str, Any]:
    client = Client()
    client.force_login(User.objects.get(username="root"))
    response = client.get(reverse("orchestrix:schema") + "?format=json")
    assert response.status_code == 200
    schema: dict[str, Any] = json.loads(response.content)
    return schema


def history() -> None:
    """Events, a stream, projections with a dead letter: real bodies to validate."""
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    try:
        open_account(deposits=(5, 13))
        open_account(deposits=(1,))
        catch_up(get_projection("test-fragile"))
    finally:
        testapp_projections.FAILING_AMOUNTS.clear()


def run_operation(
    operation: Any,
    mode: GenerationMode,
    credentials: tuple[str, str] | None,
    statuses: Counter[int],
) -> None:
    checks = all_checks()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def one(case: Any) -> None:
        if credentials is not None:
            # As Schemathesis's own auth: its checks then also try the request without it.
            apply_basic_auth(case, *credentials)
        statuses[case.call_and_validate(checks=checks).status_code] += 1

    one()


@contextmanager
def connections_kept() -> Iterator[None]:
    """Keep the test's database connection across requests, as Django's test client does.

    A WSGI handler closes connections at the end of each request (with the
    default ``CONN_MAX_AGE`` of 0): a new connection per request is slow on a
    database server, and tells nothing about the API.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def walk(credentials: tuple[str, str] | None) -> Counter[int]:
    """Run every operation of the schema: the responses' status codes, counted."""
    schema = schemathesis.openapi.from_dict(api_schema())
    app = WSGIHandler()
    schema.app = app  # in-process, as schemathesis.openapi.from_wsgi() does
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 17
    statuses: Counter[int] = Counter()
    with connections_kept():
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                run_operation(operation, mode, credentials, statuses)
    print(f"responses by status: {dict(sorted(statuses.items()))}")
    return statuses


@override_settings(PASSWORD_HASHERS=FAST_HASHING)
def test_schemathesis_as_a_superuser_finds_no_server_error_and_no_schema_violation() -> None:
    User.objects.create_superuser("root", password=PASSWORD)
    history()
    statuses = walk(("root", PASSWORD))
    assert sum(n for code, n in statuses.items() if 200 <= code < 300) >= 17
    assert not [code for code in statuses if code >= 500]


@override_settings(PASSWORD_HASHERS=FAST_HASHING)
def test_schemathesis_as_anonymous_finds_no_server_error_and_no_schema_violation() -> None:
    User.objects.create_superuser("root", password=PASSWORD)
    history()
    statuses = walk(None)
    # Refused; 404 only for a generated path that matches no URL at all.
    assert set(statuses) <= {401, 403, 404}
    assert statuses[403] + statuses[401] > 10 * statuses[404]
