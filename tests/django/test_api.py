"""The REST API (``orchestrix_django.api``), included at ``/orchestrix/`` by the test project.

Every test runs on the database of the run (SQLite, PostgreSQL, MariaDB)
with real users, sessions and HTTP Basic credentials through Django's test
client.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.checks import run_checks
from django.test import Client, override_settings
from django.urls import reverse
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema

from orchestrix_django.models import DeadLetterRecord, EventRecord, SagaStateRecord
from orchestrix_django.projections import catch_up, get_projection, projection_status
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.ops_helpers import new_id, open_account
from tests.django.testapp import projections as testapp_projections
from tests.django.testapp.events import MoneyDeposited
from tests.django.testapp.models import AccountBalance

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "orchestrix-api-test"
BATCH = "application/cloudevents-batch+json"
SINGLE = "application/cloudevents+json"


@dataclass
class World:
    """A small history: accounts, a stopped projection's dead letter, a saga."""

    account: str
    event_id: str
    dead_letter_id: str
    saga_id: str


@pytest.fixture
def world() -> Iterator[World]:
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    account = open_account(deposits=(5, 13))
    open_account(deposits=(1,))
    catch_up(get_projection("test-fragile"))
    letter = DeadLetterRecord.objects.get()
    # The cause is fixed: a retry now succeeds.
    testapp_projections.FAILING_AMOUNTS.clear()
    now = datetime.now(UTC)
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
    yield World(account, event_id, letter.id, "saga-1")
    testapp_projections.FAILING_AMOUNTS.clear()


def make_user(name: str, *, staff: bool) -> User:
    """A user; staff ones are operators, with every permission on Orchestrix's models."""
    user = User.objects.create_user(name, password=PASSWORD, is_staff=staff)
    if staff:
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="orchestrix_django")
        )
    return user


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(make_user("operator", staff=True))
    return client


def basic(name: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{PASSWORD}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def url(name: str, **kwargs: Any) -> str:
    return reverse(f"orchestrix:{name}", kwargs=kwargs)


#: Every endpoint: (method, URL name, the arguments it takes from the world).
ENDPOINTS: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "root", {}),
    ("GET", "event-log", {}),
    ("GET", "event-detail", {"event_id": "event_id"}),
    ("GET", "stream-list", {}),
    ("GET", "stream-detail", {"stream_id": "account"}),
    ("GET", "stream-events", {"stream_id": "account"}),
    ("GET", "projection-list", {}),
    ("GET", "projection-detail", {"projection_id": "projection"}),
    ("POST", "projection-rebuild", {"projection_id": "projection"}),
    ("POST", "projection-pause", {"projection_id": "projection"}),
    ("POST", "projection-resume", {"projection_id": "projection"}),
    ("GET", "saga-list", {}),
    ("GET", "saga-detail", {"saga_id": "saga_id"}),
    ("GET", "dead-letter-list", {}),
    ("GET", "dead-letter-detail", {"dead_letter_id": "dead_letter_id"}),
    ("POST", "dead-letter-retry", {"dead_letter_id": "dead_letter_id"}),
    ("POST", "dead-letter-discard", {"dead_letter_id": "dead_letter_id"}),
    ("GET", "schema", {}),
]


def endpoint_url(world: World, name: str, arguments: dict[str, str]) -> str:
    values = {
        key: "test-balances" if attribute == "projection" else getattr(world, attribute)
        for key, attribute in arguments.items()
    }
    return url(name, **values)


def call(client: Client, method: str, path: str, **extra: Any) -> Any:
    return client.post(path, **extra) if method == "POST" else client.get(path, **extra)


# ---------------------------------------------------------------- access


def test_the_endpoint_list_is_complete() -> None:
    from orchestrix_django.api.urls import urlpatterns

    assert {pattern.name for pattern in urlpatterns} == {name for _, name, _ in ENDPOINTS}


# Who may call what: tests/django/test_api_permissions.py walks the OpenAPI schema.


def test_session_writes_need_the_csrf_token(world: World) -> None:
    make_user("operator", staff=True)
    client = Client(enforce_csrf_checks=True)
    client.login(username="operator", password=PASSWORD)
    rebuild = url("projection-rebuild", projection_id="test-balances")

    refused = client.post(rebuild)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert projection_status("test-balances").position == 0

    client.get(reverse("admin:index"))  # sets the CSRF cookie, as any admin page does
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    assert client.post(rebuild, HTTP_X_CSRFTOKEN=token).status_code == 200
    # Basic authentication carries no cookie a forged request could ride on: no token needed.
    scripted = Client(enforce_csrf_checks=True)
    assert scripted.post(rebuild, **basic("operator")).status_code == 200


def assert_leaks_nothing(response: Any) -> None:
    """The body holds no traceback, no source path and none of the settings."""
    body = response.content.decode("utf-8", "replace")
    for secret in ("Traceback", 'File "', str(ROOT), settings.SECRET_KEY, "DATABASES"):
        assert secret not in body, (response.status_code, body[:500])


def test_error_responses_leak_no_traceback_source_or_settings(
    world: World, staff: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.django.ops_helpers import insert_row

    insert_row(world.account, 4, data={"account_id": world.account, "amount": "a lot"})
    expected = {
        403: Client().get(url("event-log")),
        404: staff.get(url("stream-detail", stream_id="missing")),
        400: staff.get(url("event-log") + "?limit=ten"),
        405: staff.delete(url("stream-detail", stream_id=world.account)),
        500: staff.get(url("stream-events", stream_id=world.account)),
    }
    for status, response in expected.items():
        assert response.status_code == status
        assert response["Content-Type"] == "application/json"
        assert_leaks_nothing(response)
    assert staff.put(url("event-detail", event_id=world.event_id)).status_code == 405

    # A bug (an error nobody expected) gets Django's bare 500 page, not its text.
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"bug near {settings.SECRET_KEY} in {ROOT}")

    monkeypatch.setattr(DjangoEventStore, "read_all", broken)
    unexpected = Client(raise_request_exception=False)
    unexpected.force_login(User.objects.get(username="operator"))
    response = unexpected.get(url("event-log"))
    assert response.status_code == 500
    assert_leaks_nothing(response)
    assert "bug near" not in response.content.decode()


def test_ids_with_nul_characters_are_not_found(staff: Client) -> None:
    # Saves refuse NUL characters, and PostgreSQL raises on one in a query.
    for method, name, arguments in ENDPOINTS:
        if arguments:
            response = call(staff, method, url(name, **dict.fromkeys(arguments, "a\x00b")))
            assert response.status_code == 404, (name, response.content)
            assert "NUL" in response.json()["detail"]


def test_basic_credentials_with_nul_characters_are_refused_not_looked_up(world: World) -> None:
    # Found by Schemathesis on PostgreSQL: the user lookup raised on the NUL (a 500).
    anonymous = Client(raise_request_exception=False)
    for credentials in (b"ro\x00ot:secret", b"root:se\x00cret"):
        header = "Basic " + base64.b64encode(credentials).decode()
        for method, name, arguments in ENDPOINTS:
            response = call(
                anonymous,
                method,
                endpoint_url(world, name, arguments),
                HTTP_AUTHORIZATION=header,
            )
            assert response.status_code in (401, 403), (name, response.content)


def test_query_parameters_with_nul_characters_are_refused_by_name(
    world: World, staff: Client
) -> None:
    query = "?after=%00&limit=2&aggregate_type=a%00&x%00=1"
    for method, name, arguments in ENDPOINTS:
        if name == "schema":
            continue  # drf-spectacular's view, which reads no parameter
        response = call(staff, method, endpoint_url(world, name, arguments) + query)
        assert response.status_code == 400, (name, response.content)
        assert sorted(response.json()) == ["after", "aggregate_type", "x\x00"]
    assert projection_status("test-balances").position == 0  # the rebuild did not run
    assert DeadLetterRecord.objects.get().status == "parked"  # nor the retry


def test_permission_and_authentication_classes_come_from_the_settings(world: World) -> None:
    with override_settings(
        ORCHESTRIX={
            **settings.ORCHESTRIX,
            "API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
            "API_AUTHENTICATION_CLASSES": ["rest_framework.authentication.BasicAuthentication"],
        }
    ):
        anonymous = Client().get(url("event-log"))
        assert anonymous.status_code == 401
        assert anonymous["WWW-Authenticate"].startswith("Basic")
        make_user("reader", staff=False)
        assert Client().get(url("event-log"), **basic("reader")).status_code == 200
    with override_settings(
        ORCHESTRIX={
            **settings.ORCHESTRIX,
            "API_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
        }
    ):
        assert Client().get(url("stream-list")).status_code == 200
    assert Client().get(url("stream-list")).status_code == 403


# ---------------------------------------------------------------- events


def test_the_log_is_a_cloudevents_batch(world: World, staff: Client) -> None:
    response = staff.get(url("event-log"))
    assert response.status_code == 200
    assert response["Content-Type"] == BATCH
    events = json.loads(response.content)
    stored = list(EventRecord.objects.order_by("position"))
    assert [e["id"] for e in events] == [r.event_id for r in stored]
    first = events[0]
    assert first["specversion"] == "1.0"
    assert first["type"] == "AccountOpened"
    assert (first["streamid"], first["streamversion"], first["position"]) == (
        world.account,
        1,
        stored[0].position,
    )
    assert first["data"] == {"account_id": world.account, "owner": "Ada", "initial_deposit": 10.0}
    assert first["schemaversion"] == 1
    assert "Link" not in response  # the whole log fits in one page
    # Plain JSON for clients that ask for it; the same body.
    as_json = staff.get(url("event-log"), HTTP_ACCEPT="application/json")
    assert as_json["Content-Type"] == "application/json"
    assert json.loads(as_json.content) == events


def test_one_event_is_a_cloudevent(world: World, staff: Client) -> None:
    response = staff.get(url("event-detail", event_id=world.event_id))
    assert response["Content-Type"] == SINGLE
    event = json.loads(response.content)
    assert (event["id"], event["streamversion"]) == (world.event_id, 1)
    missing = staff.get(url("event-detail", event_id="nope"))
    assert missing.status_code == 404
    assert missing["Content-Type"] == "application/json"  # an error is no CloudEvent


def follow(client: Client, start: str) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
    """The pages of a batch list, following the Link headers."""
    next_url: str | None = start
    while next_url is not None:
        response = client.get(next_url)
        assert response.status_code == 200
        link = response.headers.get("Link")
        next_url = None
        if link is not None:
            target, rel = link.split(";")
            assert rel.strip() == 'rel="next"'
            next_url = target.strip().strip("<>")
        yield json.loads(response.content), next_url


def test_the_log_pages_by_position_and_stays_stable_while_events_are_appended(
    staff: Client,
) -> None:
    accounts = [open_account(deposits=(1, 2)) for _ in range(3)]
    pages = follow(staff, url("event-log") + "?limit=4")
    seen: list[dict[str, Any]] = []
    page, next_url = next(pages)
    seen += page
    assert len(page) == 4
    assert next_url is not None
    assert f"after={page[-1]['position']}" in next_url
    assert "limit=4" in next_url
    # Writers go on between two pages: to new streams and to streams half read.
    store = DjangoEventStore()
    store.save(accounts[0], [MoneyDeposited(account_id=accounts[0], amount=Decimal(9))], 3)
    open_account(deposits=(7,))
    for page, _ in pages:
        seen += page
    stored = list(EventRecord.objects.order_by("position").values_list("event_id", "position"))
    assert [(e["id"], e["position"]) for e in seen] == stored  # each once, in order
    assert len(stored) == 9 + 1 + 2


def test_page_sizes_default_and_are_capped(staff: Client) -> None:
    for _ in range(4):
        open_account(deposits=(1, 2))
    limits = {**settings.ORCHESTRIX, "API_PAGE_SIZE": 3, "API_MAX_PAGE_SIZE": 5}
    with override_settings(ORCHESTRIX=limits):
        assert len(json.loads(staff.get(url("event-log")).content)) == 3
        capped = staff.get(url("event-log") + "?limit=1000")
        assert len(json.loads(capped.content)) == 5
        assert "limit=1000" in capped["Link"]  # the next page is capped again
        streams = staff.get(url("stream-list") + "?limit=100").json()
        assert len(streams["results"]) == 4
        assert streams["next"] is None
    for bad in ("?limit=0", "?limit=ten", "?after=-1", "?after=x", f"?after={2**63}"):
        response = staff.get(url("event-log") + bad)
        assert response.status_code == 400, bad
        assert response["Content-Type"] == "application/json"


def test_a_streams_events_page_by_version(world: World, staff: Client) -> None:
    store = DjangoEventStore()
    more = [MoneyDeposited(account_id=world.account, amount=Decimal(n)) for n in (1, 2, 3)]
    store.save(world.account, more, expected_version=3)
    start = url("stream-events", stream_id=world.account) + "?limit=2"
    versions = [[e["streamversion"] for e in page] for page, _ in follow(staff, start)]
    assert versions == [[1, 2], [3, 4], [5, 6], []]  # a full page links to the next
    response = staff.get(url("stream-events", stream_id=world.account) + "?after=5")
    assert response["Content-Type"] == BATCH
    assert [e["type"] for e in json.loads(response.content)] == ["MoneyDeposited"]
    missing = staff.get(url("stream-events", stream_id="no-such-stream"))
    assert missing.status_code == 404
    assert missing["Content-Type"] == "application/json"


def test_stream_ids_with_slashes(staff: Client) -> None:
    stream = f"tenants/7/{new_id()}"
    open_account(stream, deposits=(1,))
    detail = staff.get(url("stream-detail", stream_id=stream)).json()
    assert (detail["stream_id"], detail["version"]) == (stream, 2)
    events = json.loads(staff.get(detail["events_url"]).content)
    assert [e["streamid"] for e in events] == [stream, stream]


def test_an_undecodable_event_is_a_server_error_that_names_it(staff: Client) -> None:
    from tests.django.ops_helpers import insert_row

    account = open_account()
    insert_row(account, 2, data={"account_id": account, "amount": "a lot"})
    response = staff.get(url("stream-events", stream_id=account))
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    detail = response.json()["detail"]
    assert f"stream '{account}', version 2" in detail
    assert "orchestrix_verify" in detail


# ---------------------------------------------------------------- streams, sagas, letters


def test_streams_by_aggregate_type_in_pages(world: World, staff: Client) -> None:
    DjangoEventStore().save("plain-1", [MoneyDeposited(account_id="plain-1", amount=Decimal(1))])
    page = staff.get(url("stream-list") + "?aggregate_type=BankAccount&limit=1").json()
    assert [s["aggregate_type"] for s in page["results"]] == ["BankAccount"]
    assert page["next"] is not None
    rest = staff.get(page["next"]).json()
    assert len(rest["results"]) == 1
    assert rest["results"][0]["stream_id"] > page["results"][0]["stream_id"]
    assert rest["next"] is not None  # a full page: the next one (empty) says it is the end
    assert staff.get(rest["next"]).json() == {"results": [], "next": None}
    plain = staff.get(url("stream-list") + "?aggregate_type=").json()["results"]
    assert [(s["stream_id"], s["version"]) for s in plain] == [("plain-1", 1)]
    assert staff.get(url("stream-detail", stream_id="nope")).status_code == 404


def test_sagas_with_their_steps(world: World, staff: Client) -> None:
    listed = staff.get(url("saga-list") + "?status=in_progress").json()
    [saga] = listed["results"]
    assert (saga["saga_id"], saga["saga_type"], saga["steps"][0]["name"]) == (
        "saga-1",
        "OrderSaga",
        "reserve",
    )
    assert saga["kwargs"] == {"order_id": "O-1"}
    assert staff.get(saga["url"]).json() == saga
    assert staff.get(url("saga-list") + "?status=completed").json()["results"] == []
    assert staff.get(url("saga-list") + "?saga_type=Other").json()["results"] == []
    bad = staff.get(url("saga-list") + "?status=done")
    assert bad.status_code == 400
    assert "in_progress" in bad.json()["status"]
    assert staff.get(url("saga-detail", saga_id="nope")).status_code == 404


def test_dead_letters_and_their_retry(world: World, staff: Client) -> None:
    listed = staff.get(url("dead-letter-list") + "?status=parked").json()
    [letter] = listed["results"]
    assert letter["source"] == "projection:test-fragile"
    assert letter["payload"]["type"] == "MoneyDeposited"
    assert "cannot handle a deposit of 13" in letter["reason"]
    assert staff.get(url("dead-letter-list") + "?source=bus:x").json()["results"] == []

    # The cause is back: the projection resumes from the event, stops at it again,
    # and parks it anew.
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    failed = staff.post(letter["retry_url"])
    assert failed.status_code == 409
    assert failed.json()["ok"] is False
    assert "stopped again" in failed.json()["detail"]
    [new] = staff.get(url("dead-letter-list") + "?status=parked").json()["results"]
    assert new["id"] != letter["id"]
    assert new["message_id"] == letter["message_id"]
    letter = new
    testapp_projections.FAILING_AMOUNTS.clear()

    retried = staff.post(letter["retry_url"])
    assert retried.status_code == 200
    body = retried.json()
    assert body["ok"] is True
    assert body["dead_letter"]["status"] == "retried"
    assert projection_status("test-fragile").healthy
    again = staff.post(letter["retry_url"])
    assert again.status_code == 409
    assert "already retried" in again.json()["detail"]
    assert staff.post(url("dead-letter-retry", dead_letter_id="nope")).status_code == 404


def test_discarding_a_projections_dead_letter_skips_its_event(world: World, staff: Client) -> None:
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))  # the cause stays
    letter = staff.get(url("dead-letter-detail", dead_letter_id=world.dead_letter_id)).json()
    discarded = staff.post(letter["discard_url"])
    assert discarded.status_code == 200, discarded.content
    assert discarded.json()["dead_letter"]["status"] == "discarded"
    status = projection_status("test-fragile")
    assert status.healthy and status.lag == 0  # moved past it, through the rest of the log
    again = staff.post(letter["discard_url"])
    assert again.status_code == 409
    assert "already discarded" in again.json()["detail"]
    assert staff.post(url("dead-letter-discard", dead_letter_id="nope")).status_code == 404


# ---------------------------------------------------------------- projections


def test_pause_and_resume_a_projection(world: World, staff: Client) -> None:
    paused = staff.post(url("projection-pause", projection_id="test-balances"))
    assert paused.status_code == 200
    assert paused.json()["projection"]["paused"] is True
    assert projection_status("test-balances").paused
    assert catch_up(get_projection("test-balances")).applied == 0  # the runners leave it
    resumed = staff.post(paused.json()["projection"]["resume_url"])
    assert resumed.status_code == 200
    assert resumed.json()["projection"]["paused"] is False
    assert catch_up(get_projection("test-balances")).applied > 0
    for name in ("projection-pause", "projection-resume"):
        assert staff.post(url(name, projection_id="nope")).status_code == 404


def test_projections_with_position_lag_and_health(world: World, staff: Client) -> None:
    results = staff.get(url("projection-list")).json()["results"]
    by_id = {p["projection_id"]: p for p in results}
    assert set(by_id) == {
        "test-balances",
        "test-fragile",
        "test-continuing",
        "test-flaky",
        "test-slow",
    }
    fragile = by_id["test-fragile"]
    head = DjangoEventStore().head_position()
    assert (fragile["head"], fragile["healthy"], fragile["paused"], fragile["parked"]) == (
        head,
        False,
        True,
        1,
    )
    assert fragile["lag"] == head - fragile["position"] > 0
    assert "cannot handle a deposit of 13" in fragile["last_error"]
    assert staff.get(fragile["url"]).json() == fragile
    assert staff.get(url("projection-detail", projection_id="nope")).status_code == 404


def test_rebuild_resets_and_catches_up_within_the_time_budget(world: World, staff: Client) -> None:
    catch_up(get_projection("test-balances"))
    AccountBalance.objects.all().update(balance=0)  # a read model gone wrong

    done = staff.post(url("projection-rebuild", projection_id="test-balances"))
    assert done.status_code == 200
    body = done.json()
    assert body["ok"] is True
    assert body["projection"]["lag"] == 0
    assert "rebuilt" in body["detail"]
    assert AccountBalance.objects.get(account_id=world.account).balance == Decimal(28)

    no_time = {**settings.ORCHESTRIX, "API_REBUILD_SECONDS": 0}
    with override_settings(ORCHESTRIX=no_time):
        later = staff.post(url("projection-rebuild", projection_id="test-balances"))
    assert later.status_code == 202
    assert later.json()["projection"]["position"] == 0
    assert "the runners catch up the rest" in later.json()["detail"]
    assert not AccountBalance.objects.exists()

    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    stopped = staff.post(url("projection-rebuild", projection_id="test-fragile"))
    assert stopped.status_code == 409
    assert stopped.json()["ok"] is False
    assert staff.post(url("projection-rebuild", projection_id="nope")).status_code == 404
    assert staff.get(url("projection-rebuild", projection_id="test-balances")).status_code == 405


# ---------------------------------------------------------------- the schema


def test_the_openapi_schema_validates_and_describes_this_api(world: World, staff: Client) -> None:
    GENERATOR_STATS.reset()
    response = staff.get(url("schema") + "?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    validate_schema(schema)
    assert not GENERATOR_STATS, "drf-spectacular warned while generating the schema"
    paths = schema["paths"]
    assert all(path.startswith("/orchestrix/") for path in paths)
    assert "/admin/" not in json.dumps(paths)
    assert "/orchestrix/schema/" not in paths
    log = paths["/orchestrix/events/"]["get"]
    assert set(log["responses"]["200"]["content"]) == {BATCH, "application/json"}
    # (and ``format``, DRF's override of the Accept header)
    assert {p["name"] for p in log["parameters"]} == {"after", "limit", "format"}
    assert "Link" in log["responses"]["200"]["headers"]
    assert set(paths["/orchestrix/events/{event_id}/"]["get"]["responses"]["200"]["content"]) == {
        SINGLE,
        "application/json",
    }
    assert "post" in paths["/orchestrix/projections/{projection_id}/rebuild/"]
    assert "post" in paths["/orchestrix/dead-letters/{dead_letter_id}/retry/"]
    assert {"basicAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])
    # YAML by default.
    as_yaml = staff.get(url("schema"))
    assert as_yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(as_yaml.content)["info"]["title"] == "Orchestrix API"


def test_the_schemas_bounds_are_the_views_bounds(world: World, staff: Client) -> None:
    """``limit`` and ``after`` as the schema declares them: the edges pass, one beyond is a 400."""
    schema = json.loads(staff.get(url("schema") + "?format=json").content)
    paths = {
        "/orchestrix/events/": url("event-log"),
        "/orchestrix/streams/{stream_id}/events/": url("stream-events", stream_id=world.account),
    }
    for template, path in paths.items():
        declared = {p["name"]: p["schema"] for p in schema["paths"][template]["get"]["parameters"]}
        assert declared["limit"] == {"type": "integer", "minimum": 1}
        assert declared["after"] == {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
        for query in ("limit=1", f"limit={10**30}", "after=0", f"after={2**63 - 1}"):
            assert staff.get(f"{path}?{query}").status_code == 200, (path, query)
        for query in ("limit=0", "limit=-1", "after=-1", f"after={2**63}"):
            response = staff.get(f"{path}?{query}")
            assert response.status_code == 400, (path, query)
            assert list(response.json()) == [query.split("=")[0]]
    # Text queries: anything but a NUL character.
    streams = {
        p["name"]: p["schema"] for p in schema["paths"]["/orchestrix/streams/"]["get"]["parameters"]
    }
    assert streams["after"]["pattern"] == "^[^\\x00]*$"


def test_the_root_links_everything(world: World, staff: Client) -> None:
    links = staff.get(url("root")).json()
    for name, target in links.items():
        assert target.startswith("http://testserver/orchestrix/"), name
        assert staff.get(target).status_code == 200, name


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("API_PAGE_SIZE", 0, "orchestrix.E006"),
        ("API_MAX_PAGE_SIZE", "many", "orchestrix.E006"),
        ("API_PAGE_SIZE", 2000, "orchestrix.E006"),  # above API_MAX_PAGE_SIZE
        ("API_REBUILD_SECONDS", -1, "orchestrix.E006"),
        ("API_PERMISSION_CLASSES", "rest_framework.permissions.IsAdminUser", "orchestrix.E006"),
        ("API_AUTHENTICATION_CLASSES", ["rest_framework.authentication.Nope"], "orchestrix.E004"),
    ],
)
def test_api_settings_are_checked(setting: str, value: object, check_id: str) -> None:
    with override_settings(ORCHESTRIX={**settings.ORCHESTRIX, setting: value}):
        messages = run_checks(tags=["orchestrix"])
    assert [m.id for m in messages] == [check_id]
    assert setting in messages[0].msg


WITHOUT_DRF = textwrap.dedent(
    """
    import importlib, sys

    # As if they were not installed: imports fail, find_spec() finds nothing.
    sys.modules["rest_framework"] = None
    sys.modules["drf_spectacular"] = None
    import django
    django.setup()
    from django.core.checks import run_checks
    for module in (
        "orchestrix_django.storage.events",
        "orchestrix_django.projections.runner",
        "orchestrix_django.admin",
        "orchestrix_django.operations",
        "orchestrix_django.storage.cloudevents",
        "orchestrix_django.api",
        "orchestrix_django.management.commands.orchestrix_status",
        "orchestrix_django.management.commands.orchestrix_export",
        "orchestrix_django.management.commands.orchestrix_import",
    ):
        importlib.import_module(module)
    problems = [m for m in run_checks(tags=["orchestrix"]) if m.is_serious()]
    assert not problems, problems
    try:
        importlib.import_module("orchestrix_django.api.urls")
    except ModuleNotFoundError as error:
        print("api needs", error.name.split(".")[0])
    """
)


def test_orchestrix_django_works_without_django_rest_framework() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_DRF],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in ("api needs rest_framework", "api needs drf_spectacular")
