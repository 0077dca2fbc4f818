"""The API grants what the admin grants: every operation of its OpenAPI schema, for six users.

The operations are read from the schema drf-spectacular generates, so a new
endpoint cannot escape: one the table below has no expectation for fails
the test. Path parameters are filled with real objects (events, a stream, a
projection, a saga, dead letters), so an allowed request reaches the view
and answers 2xx, or 404 for an object that does not exist; a refused one
answers 401/403 and changes nothing. Runs on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db.models import Model
from django.test import Client
from django.urls import reverse

from orchestrix_django.api.permissions import Access
from orchestrix_django.models import (
    DeadLetterRecord,
    EventRecord,
    ProjectionStateRecord,
    SagaStateRecord,
    StreamRecord,
)
from orchestrix_django.projections import catch_up, get_projection, projection_status
from tests.django.ops_helpers import open_account
from tests.django.testapp import projections as testapp_projections

pytestmark = pytest.mark.django_db(transaction=True)

#: What each operation of the schema needs, as the admin has it: (model, access)
#: pairs, all required; empty for any active staff user (as the admin's index).
NEEDS: dict[str, tuple[tuple[type[Model], Access], ...]] = {
    "root": (),
    "events_list": ((EventRecord, Access.VIEW),),
    "events_retrieve": ((EventRecord, Access.VIEW),),
    "streams_list": ((StreamRecord, Access.VIEW),),
    "streams_retrieve": ((StreamRecord, Access.VIEW),),
    # The stream's page (its timeline) and each event's page.
    "streams_events_list": ((StreamRecord, Access.VIEW), (EventRecord, Access.VIEW)),
    "projections_list": ((ProjectionStateRecord, Access.VIEW),),
    "projections_retrieve": ((ProjectionStateRecord, Access.VIEW),),
    # The projection page's Rebuild, Pause and Resume buttons.
    "projections_rebuild": ((ProjectionStateRecord, Access.CHANGE),),
    "projections_pause": ((ProjectionStateRecord, Access.CHANGE),),
    "projections_resume": ((ProjectionStateRecord, Access.CHANGE),),
    "sagas_list": ((SagaStateRecord, Access.VIEW),),
    "sagas_retrieve": ((SagaStateRecord, Access.VIEW),),
    "dead_letters_list": ((DeadLetterRecord, Access.VIEW),),
    "dead_letters_retrieve": ((DeadLetterRecord, Access.VIEW),),
    # The dead letter page's Retry and Discard buttons.
    "dead_letters_retry": ((DeadLetterRecord, Access.CHANGE),),
    "dead_letters_discard": ((DeadLetterRecord, Access.CHANGE),),
}

MODELS = (EventRecord, StreamRecord, ProjectionStateRecord, SagaStateRecord, DeadLetterRecord)


@dataclass
class World:
    """Real objects for every path parameter."""

    values: dict[str, str]
    #: Per operation, parameters that need an object of their own.
    overrides: dict[str, dict[str, str]]

    def path(self, template: str, operation_id: str, *, missing: bool = False) -> str:
        values = {**self.values, **self.overrides.get(operation_id, {})}
        for name, value in values.items():
            template = template.replace("{" + name + "}", f"no-such-{name}" if missing else value)
        assert "{" not in template, f"no value for a parameter of {template}"
        return template


@pytest.fixture
def world() -> Iterator[World]:
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    account = open_account(deposits=(5, 13))
    catch_up(get_projection("test-fragile"))
    letter = DeadLetterRecord.objects.get()
    testapp_projections.FAILING_AMOUNTS.clear()  # the cause is fixed: a retry succeeds
    now = datetime.now(UTC)
    bus_letter = DeadLetterRecord.objects.create(
        id="bus-letter-1",
        source="bus:notify",
        status="parked",
        message_type="MoneyDeposited",
        reason="mail server down",
        error_type="ConnectionError",
        created_at=now,
    )
    SagaStateRecord.objects.create(
        saga_id="saga-1",
        saga_type="OrderSaga",
        status="in_progress",
        steps=[{"name": "reserve", "status": "completed"}],
        kwargs={"order_id": "O-1"},
        deadline=now + timedelta(minutes=5),
        created_at=now,
        updated_at=now,
    )
    event_id = EventRecord.objects.filter(stream_id=account).order_by("version")[0].event_id
    yield World(
        values={
            "event_id": event_id,
            "stream_id": account,
            "projection_id": "test-balances",
            "saga_id": "saga-1",
            "dead_letter_id": letter.id,
        },
        overrides={"dead_letters_discard": {"dead_letter_id": bus_letter.id}},
    )
    testapp_projections.FAILING_AMOUNTS.clear()


def permissions(access: Access) -> list[Permission]:
    codenames = [f"{access.value}_{model._meta.model_name}" for model in MODELS]
    found = list(Permission.objects.filter(content_type__app_label="orchestrix_django"))
    chosen = [p for p in found if p.codename in codenames]
    assert len(chosen) == len(MODELS)
    return chosen


def make_user(name: str, *, staff: bool = True, superuser: bool = False, **extra: Any) -> User:
    # No password: the clients sign in by session (hashing one per request is slow).
    return User.objects.create_user(name, is_staff=staff, is_superuser=superuser, **extra)


def signed_in(user: User | None) -> Client:
    """A client with ``user``'s session (anonymous for None)."""
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def operations(schema: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Every (method, path template, operationId) of the schema."""
    return [
        (method.upper(), path, operation["operationId"])
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def the_schema() -> dict[str, Any]:
    superuser = Client()
    superuser.force_login(make_user("schema-reader", superuser=True))
    response = superuser.get(reverse("orchestrix:schema") + "?format=json")
    assert response.status_code == 200
    schema: dict[str, Any] = json.loads(response.content)
    return schema


def call(client: Client, method: str, path: str) -> Any:
    return client.post(path) if method == "POST" else client.get(path)


#: The six users (see :func:`client_for`).
USERS = ["anonymous", "not staff", "staff", "staff with view", "staff with change", "superuser"]


def allowed(user: str, needs: tuple[tuple[type[Model], Access], ...]) -> bool:
    """What the admin lets ``user`` do (the expectation, written from the admin's rules)."""
    if user in ("anonymous", "not staff"):
        return False
    if user == "superuser":
        return True
    held = {"staff": set(), "staff with view": {Access.VIEW}, "staff with change": {Access.CHANGE}}
    # In the admin, the change permission lets a user read as well.
    grants = held[user] | ({Access.VIEW} if Access.CHANGE in held[user] else set())
    return all(access in grants for _, access in needs)


def client_for(user: str) -> Client:
    if user == "anonymous":
        return signed_in(None)
    made = make_user(
        user.replace(" ", "-"), staff=user != "not staff", superuser=user == "superuser"
    )
    if user == "staff with view":
        made.user_permissions.set(permissions(Access.VIEW))
    elif user == "staff with change":
        made.user_permissions.set(permissions(Access.CHANGE))
    return signed_in(made)


@pytest.mark.parametrize("user", USERS)
def test_every_operation_of_the_schema_grants_what_the_admin_grants(
    world: World, user: str
) -> None:
    schema = the_schema()
    found = operations(schema)
    unknown = sorted({operation_id for _, _, operation_id in found} - set(NEEDS))
    assert not unknown, f"operations with no expectation here (add them to NEEDS): {unknown}"
    client = client_for(user)
    before = (
        projection_status("test-balances").position,
        sorted(DeadLetterRecord.objects.values_list("id", "status")),
    )
    for method, template, operation_id in found:
        expected = allowed(user, NEEDS[operation_id])
        response = call(client, method, world.path(template, operation_id))
        if expected:
            assert 200 <= response.status_code < 300, (user, operation_id, response.content)
        else:
            assert response.status_code in (401, 403), (user, operation_id, response.status_code)
        if "{" in template:
            # A missing object: 404 to whoever may see it, and nothing more to the others.
            missing = call(client, method, world.path(template, operation_id, missing=True))
            assert missing.status_code in ((404,) if expected else (401, 403)), operation_id
    after = (
        projection_status("test-balances").position,
        sorted(DeadLetterRecord.objects.values_list("id", "status")),
    )
    if allowed(user, ((ProjectionStateRecord, Access.CHANGE),)):
        assert after[0] > 0  # rebuilt
        assert {status for _, status in after[1]} == {"retried", "discarded"}
    else:
        assert after == before, "a user the admin refuses changed something"


def test_every_url_of_the_api_is_in_the_schema() -> None:
    """The walk above sees every endpoint: each URL but the schema's own is in the schema."""
    from orchestrix_django.api.urls import urlpatterns

    schema = the_schema()
    routes = {
        f"/orchestrix/{pattern.pattern}" for pattern in urlpatterns if pattern.name != "schema"
    }
    converted = {
        route.replace("<path:", "{").replace("<str:", "{").replace(">", "}") for route in routes
    }
    assert converted == set(schema["paths"])


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model._meta.model_name)
def test_the_view_permission_of_one_model_reads_exactly_its_endpoints(
    world: World, model: type[Model]
) -> None:
    made = make_user("reader")
    codename = f"view_{model._meta.model_name}"
    made.user_permissions.set(
        Permission.objects.filter(content_type__app_label="orchestrix_django", codename=codename)
    )
    client = signed_in(made)
    for method, template, operation_id in operations(the_schema()):
        needs = NEEDS[operation_id]
        expected = all(m is model and access is Access.VIEW for m, access in needs)
        response = call(client, method, world.path(template, operation_id))
        if expected:
            assert 200 <= response.status_code < 300, (operation_id, response.content)
        else:
            assert response.status_code == 403, (operation_id, response.status_code)


def test_inactive_staff_and_superusers_who_are_not_staff_are_refused(world: World) -> None:
    # The admin refuses both: it needs an active staff user.
    gone = make_user("gone", superuser=True, is_active=False)
    not_staff = make_user("root-but-not-staff", staff=False, superuser=True)
    for user in (gone, not_staff):
        response = signed_in(user).get(reverse("orchestrix:event-log"))
        assert response.status_code == 403, user.username
