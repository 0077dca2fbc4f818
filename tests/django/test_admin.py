"""The admin pages through Django's test client: permissions, read-only events,
search, filters, counting, and what each page shows and does.

The same pages in a real browser: ``test_admin_browser.py``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.contrib.admin.utils import quote
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse

from orchestrix.core.messaging.dead_letter import DeadLetterStatus
from orchestrix_django import bus as bus_module
from orchestrix_django.admin.pagination import EstimatedCountPaginator, distinct_values
from orchestrix_django.bus import get_bus
from orchestrix_django.models import (
    DeadLetterRecord,
    EventRecord,
    ProjectionStateRecord,
    SagaStateRecord,
    StreamRecord,
)
from orchestrix_django.projections import catch_up, get_projection, projection_status
from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.admin_helpers import (
    History,
    NoteAddedV1,
    make_user,
    save_history,
    save_saga,
)
from tests.django.testapp import projections as testapp_projections
from tests.django.testapp.events import MoneyDeposited
from tests.django.testapp.models import AccountBalance

pytestmark = pytest.mark.django_db(transaction=True)

APP = "orchestrix_django"
MODELS = [
    "eventrecord",
    "streamrecord",
    "projectionstaterecord",
    "sagastaterecord",
    "deadletterrecord",
]


@pytest.fixture(autouse=True)
def _clean_projections() -> Iterator[None]:
    testapp_projections.FAILING_AMOUNTS.clear()
    yield
    testapp_projections.FAILING_AMOUNTS.clear()


@pytest.fixture
def history() -> History:
    return save_history()


@pytest.fixture
def admin_client_() -> Client:
    """A client logged in as a superuser."""
    client = Client()
    client.force_login(make_user("root", superuser=True))
    return client


def url(model: str, view: str, *args: Any) -> str:
    return reverse(f"admin:{APP}_{model}_{view}", args=args)


def text(response: Any) -> str:
    return str(response.content.decode())


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def park_deposit(amount: int = 13) -> tuple[History, str]:
    """A deposit the fragile projection fails on: it stops, the event is parked."""
    testapp_projections.FAILING_AMOUNTS.add(Decimal(amount))
    history = save_history(deposits=[1, amount, 2])
    result = catch_up(get_projection("test-fragile"))
    assert result.stopped == "handler failed"
    [letter] = DjangoDeadLetterQueue().list(source="projection:test-fragile")
    return history, letter.id


# ---------------------------------------------------------------- permissions


def test_every_page_renders_for_a_superuser(admin_client_: Client, history: History) -> None:
    save_saga()
    _, letter_id = park_deposit()
    for model in MODELS:
        response = admin_client_.get(url(model, "changelist"))
        assert response.status_code == 200, model
    position = history.position_of(history.opened)
    details = [
        url("eventrecord", "change", position),
        url("streamrecord", "change", quote(history.stream_id)),
        url("projectionstaterecord", "change", "test-fragile"),
        url("sagastaterecord", "change", "order-7"),
        url("deadletterrecord", "change", letter_id),
    ]
    for address in details:
        assert admin_client_.get(address).status_code == 200, address
    index = text(admin_client_.get(reverse("admin:index")))
    for name in ("Events", "Streams", "Projections", "Sagas", "Dead letters"):
        assert name in index


def test_a_missing_row_leads_back_to_its_list(admin_client_: Client) -> None:
    response = admin_client_.get(url("eventrecord", "change", 999999), follow=True)
    assert response.redirect_chain[-1][0] == url("eventrecord", "changelist")
    assert messages_of(response) == ["Event “999999” does not exist. Perhaps it was deleted?"]
    response = admin_client_.post(
        url("deadletterrecord", "operate", "nope"), {"operation": "retry"}
    )
    assert response.status_code == 302


def test_a_staff_user_without_the_apps_permissions_sees_nothing(history: History) -> None:
    client = Client()
    client.force_login(make_user("clerk", permissions=["auth.view_user"]))
    position = history.position_of(history.opened)
    for model in MODELS:
        assert client.get(url(model, "changelist")).status_code == 403, model
    assert client.get(url("eventrecord", "change", position)).status_code == 403
    assert client.get(url("streamrecord", "change", quote(history.stream_id))).status_code == 403
    assert client.get(reverse("admin:app_list", args=[APP])).status_code == 404
    assert "Orchestrix" not in text(client.get(reverse("admin:index")))
    response = client.post(
        url("projectionstaterecord", "operate", "test-balances"), {"operation": "pause"}
    )
    assert response.status_code in (403, 302)
    assert not ProjectionStateRecord.objects.filter(projection_id="test-balances", paused=True)


def test_anonymous_and_non_staff_users_are_sent_to_the_login(history: History) -> None:
    anonymous = Client()
    response = anonymous.get(url("eventrecord", "changelist"))
    assert response.status_code == 302 and "/login/" in response["Location"]
    member = Client()
    member.force_login(
        make_user("member", staff=False, permissions=["orchestrix_django.view_eventrecord"])
    )
    response = member.get(url("eventrecord", "changelist"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_view_permission_shows_the_pages_but_allows_no_operation() -> None:
    client = Client()
    client.force_login(
        make_user(
            "viewer",
            permissions=[f"{APP}.view_projectionstaterecord", f"{APP}.view_deadletterrecord"],
        )
    )
    _, letter_id = park_deposit()
    page = client.get(url("projectionstaterecord", "change", "test-fragile"))
    assert page.status_code == 200
    assert 'id="rebuild-button"' not in text(page) and "retry-button" not in text(page)
    assert "rebuild_projections" not in text(client.get(url("projectionstaterecord", "changelist")))
    response = client.post(
        url("projectionstaterecord", "operate", "test-fragile"), {"operation": "resume"}
    )
    assert response.status_code == 403
    response = client.post(url("deadletterrecord", "operate", letter_id), {"operation": "discard"})
    assert response.status_code == 403
    assert DjangoDeadLetterQueue().get(letter_id).status == DeadLetterStatus.PARKED  # type: ignore[union-attr]
    assert projection_status("test-fragile").paused


# ---------------------------------------------------------------- read-only


def test_no_one_alters_an_event_superusers_included(
    admin_client_: Client, history: History
) -> None:
    position = history.position_of(history.opened)
    before = list(EventRecord.objects.order_by("position").values())
    change = url("eventrecord", "change", position)
    assert admin_client_.get(url("eventrecord", "add")).status_code == 403
    assert admin_client_.post(url("eventrecord", "add"), {"stream_id": "x"}).status_code == 403
    assert admin_client_.post(change, {"stream_id": "hacked", "data": "{}"}).status_code == 403
    assert admin_client_.get(url("eventrecord", "delete", position)).status_code == 403
    assert (
        admin_client_.post(url("eventrecord", "delete", position), {"post": "yes"}).status_code
        == 403
    )
    listing = admin_client_.get(url("eventrecord", "changelist"))
    assert "delete_selected" not in text(listing) and 'name="action"' not in text(listing)
    bulk = admin_client_.post(
        url("eventrecord", "changelist"),
        {"action": "delete_selected", "_selected_action": [position], "index": 0, "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    page = text(admin_client_.get(change))
    assert "Save" not in page and "Delete" not in page
    assert list(EventRecord.objects.order_by("position").values()) == before


def test_streams_and_sagas_are_read_only_too(admin_client_: Client, history: History) -> None:
    save_saga()
    stream = url("streamrecord", "change", quote(history.stream_id))
    assert admin_client_.post(stream, {"version": "99"}).status_code == 403
    assert (
        admin_client_.post(url("streamrecord", "delete", quote(history.stream_id))).status_code
        == 403
    )
    assert admin_client_.get(url("streamrecord", "add")).status_code == 403
    saga = url("sagastaterecord", "change", "order-7")
    assert admin_client_.post(saga, {"status": "completed"}).status_code == 403
    assert admin_client_.post(url("sagastaterecord", "delete", "order-7")).status_code == 403
    assert admin_client_.get(url("deadletterrecord", "add")).status_code == 403
    assert StreamRecord.objects.get(pk=history.stream_id).version == 3
    assert SagaStateRecord.objects.get(pk="order-7").status == "failed"


# ---------------------------------------------------------------- search and filters


def listed_positions(response: Any) -> set[int]:
    return {r.position for r in response.context["cl"].result_list}


def test_search_finds_exact_stream_event_and_correlation_ids(
    admin_client_: Client, history: History
) -> None:
    changelist = url("eventrecord", "changelist")
    stream = set(
        EventRecord.objects.filter(stream_id=history.stream_id).values_list("position", flat=True)
    )
    assert len(stream) == 3
    assert listed_positions(admin_client_.get(changelist, {"q": history.stream_id})) == stream
    assert (
        listed_positions(admin_client_.get(changelist, {"q": f"  {history.correlation_id} "}))
        == stream
    )
    opened = history.position_of(history.opened)
    assert listed_positions(admin_client_.get(changelist, {"q": history.opened.id})) == {opened}
    assert listed_positions(admin_client_.get(changelist, {"q": str(opened)})) == {opened}
    # Exact matches only: a prefix or another case finds nothing (and scans nothing).
    assert listed_positions(admin_client_.get(changelist, {"q": history.stream_id[:-2]})) == set()
    assert (
        listed_positions(admin_client_.get(changelist, {"q": history.stream_id.upper()})) == set()
    )
    streams = admin_client_.get(url("streamrecord", "changelist"), {"q": history.other_stream_id})
    assert [r.stream_id for r in streams.context["cl"].result_list] == [history.other_stream_id]


def test_search_queries_compare_columns_exactly(admin_client_: Client, history: History) -> None:
    with CaptureQueriesContext(connection) as queries:
        admin_client_.get(url("eventrecord", "changelist"), {"q": history.stream_id})
    sql = "\n".join(q["sql"] for q in queries.captured_queries if "orchestrix_event" in q["sql"])
    assert "LIKE" not in sql.upper() and "UPPER(" not in sql.upper()


def test_filters_by_type_stream_correlation_and_date(
    admin_client_: Client, history: History
) -> None:
    changelist = url("eventrecord", "changelist")
    stream = set(
        EventRecord.objects.filter(stream_id=history.stream_id).values_list("position", flat=True)
    )
    response = admin_client_.get(changelist, {"stream_id": history.stream_id})
    assert listed_positions(response) == stream
    assert history.stream_id in text(response)  # the active filter is shown
    response = admin_client_.get(changelist, {"correlation_id": history.correlation_id})
    assert listed_positions(response) == stream
    deposits = set(
        EventRecord.objects.filter(event_type="MoneyDeposited").values_list("position", flat=True)
    )
    page = admin_client_.get(changelist)
    assert "MoneyDeposited" in text(page) and "AccountOpened" in text(page)  # the type filter
    assert (
        listed_positions(admin_client_.get(changelist, {"event_type": "MoneyDeposited"}))
        == deposits
    )
    opened = history.position_of(history.opened)
    response = admin_client_.get(changelist, {"causation_id": history.opened.id})
    assert listed_positions(response) == stream - {opened}
    today = EventRecord.objects.get(position=opened).timestamp
    response = admin_client_.get(
        changelist,
        {
            "timestamp__year": today.year,
            "timestamp__month": today.month,
            "timestamp__day": today.day,
        },
    )
    assert opened in listed_positions(response)
    # The date hierarchy starts at the day all events share, with a link back.
    assert 'class="toplinks"' in text(page) and 'class="date-back"' in text(page)


def test_nul_characters_in_ids_and_filters_are_not_server_errors(
    admin_client_: Client, history: History
) -> None:
    # No stored value holds a NUL, and PostgreSQL raises on one in a query.
    for model in MODELS:
        response = admin_client_.get(url(model, "change", quote("a\x00b")), follow=True)
        assert response.redirect_chain[-1][0] == url(model, "changelist"), model
        assert "does not exist" in messages_of(response)[0]
        response = admin_client_.get(url(model, "changelist"), {"q": "a\x00"}, follow=True)
        assert response.redirect_chain[-1][0] == url(model, "changelist") + "?e=1", model
    for model, field in [("eventrecord", "stream_id"), ("streamrecord", "stream_id")]:
        response = admin_client_.get(url(model, "changelist"), {field: "\x00"})
        assert response.status_code == 302, model
    response = admin_client_.post(
        url("projectionstaterecord", "operate", quote("a\x00b")), {"operation": "rebuild"}
    )
    assert response.status_code == 302


def test_lookups_outside_the_indexed_columns_are_refused(
    admin_client_: Client, history: History
) -> None:
    response = admin_client_.get(url("eventrecord", "changelist"), {"data__icontains": "Ann"})
    assert response.status_code == 400
    response = admin_client_.get(url("eventrecord", "changelist"), {"position__lt": "3"})
    assert response.status_code == 200


def test_the_date_hierarchy_reads_two_index_entries_not_every_row(
    admin_client_: Client, history: History
) -> None:
    with CaptureQueriesContext(connection) as queries:
        admin_client_.get(url("eventrecord", "changelist"))
    sql = [q["sql"].upper() for q in queries.captured_queries]
    assert any("MIN(" in s and "MAX(" in s for s in sql)
    assert not any("TRUNC" in s or "DATETIME_CAST" in s or "DATE_FORMAT" in s for s in sql), sql
    # Under another filter the bounds are still the table's: two index probes.
    with CaptureQueriesContext(connection) as queries:
        admin_client_.get(url("eventrecord", "changelist"), {"position__lt": "3"})
    [bounds] = [q["sql"] for q in queries.captured_queries if "MIN(" in q["sql"].upper()]
    assert "position" not in bounds.split("FROM", 1)[1]


def test_within_a_date_range_events_are_ordered_by_timestamp(
    admin_client_: Client, history: History
) -> None:
    timestamps = dict(EventRecord.objects.values_list("position", "timestamp"))
    day = max(timestamps.values())
    # An event stored later but dated earlier (imported history).
    late = EventRecord.objects.create(
        stream_id="imported-1",
        version=1,
        event_id=str(uuid.uuid4()),
        event_type="AccountOpened",
        data={},
        metadata={},
        timestamp=min(timestamps.values()) - timedelta(microseconds=1),
    )
    params = {"timestamp__year": day.year, "timestamp__month": day.month, "timestamp__day": day.day}
    response = admin_client_.get(url("eventrecord", "changelist"), params)
    listed = [r.position for r in response.context["cl"].result_list]
    assert listed[-1] == late.position and listed[:-1] == sorted(listed[:-1], reverse=True)
    unfiltered = admin_client_.get(url("eventrecord", "changelist"))
    assert unfiltered.context["cl"].result_list[0].position == late.position


def test_distinct_values_reads_each_value_once(history: History) -> None:
    using = EventRecord.objects.db
    assert distinct_values(EventRecord, "event_type", using) == ["AccountOpened", "MoneyDeposited"]
    assert distinct_values(EventRecord, "event_type", using, limit=1) == ["AccountOpened"]
    assert distinct_values(StreamRecord, "aggregate_type", using) == ["BankAccount"]


# ---------------------------------------------------------------- counting


def count_queries(queries: CaptureQueriesContext) -> list[str]:
    """The COUNT queries over the event table that are not bounded by a LIMIT."""
    found = []
    for query in queries.captured_queries:
        sql = query["sql"].upper()
        if "COUNT(" in sql and "ORCHESTRIX_EVENT" in sql and "LIMIT" not in sql:
            found.append(query["sql"])
    return found


def test_the_event_list_never_counts_the_whole_table(
    admin_client_: Client, history: History
) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = admin_client_.get(url("eventrecord", "changelist"))
    assert response.status_code == 200
    assert count_queries(queries) == []
    assert response.context["cl"].result_count == EventRecord.objects.count()
    with CaptureQueriesContext(connection) as queries:
        admin_client_.get(url("eventrecord", "changelist"), {"event_type": "MoneyDeposited"})
        admin_client_.get(url("streamrecord", "changelist"))
    assert count_queries(queries) == []


def test_big_tables_get_an_estimated_count(
    admin_client_: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(4):
        save_history(deposits=[1, 2, 3])  # 20 events
    monkeypatch.setattr(EstimatedCountPaginator, "exact_count_limit", 5)
    monkeypatch.setattr("orchestrix_django.admin.events.EventAdmin.list_per_page", 2)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE orchestrix_event")
    elif connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE TABLE orchestrix_event")
            cursor.fetchall()
    with CaptureQueriesContext(connection) as queries:
        response = admin_client_.get(url("eventrecord", "changelist"))
    cl = response.context["cl"]
    assert cl.paginator.count_is_estimated
    assert 'id="estimated-count"' in text(response)
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    if connection.vendor in ("postgresql", "mysql"):
        # The table's size comes from the statistics: no COUNT over the log at all.
        assert not [c for c in counts if "orchestrix_event" in c], counts
        assert cl.result_count > 5
    else:
        assert cl.result_count == 6  # counted up to the cap, plus one
    # Pages past an estimate are still there; one past the end is empty, not an error.
    response = admin_client_.get(url("eventrecord", "changelist"), {"p": "5"})
    assert response.status_code == 200 and len(response.context["cl"].result_list) == 2
    response = admin_client_.get(url("eventrecord", "changelist"), {"p": "50"})
    assert response.status_code == 200 and len(response.context["cl"].result_list) == 0
    response = admin_client_.get(url("eventrecord", "changelist"), {"event_type": "MoneyDeposited"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 6  # a filtered list: capped, 5 + 1


def test_keyset_link_to_older_events(
    admin_client_: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        save_history(deposits=[1])
    monkeypatch.setattr("orchestrix_django.admin.events.EventAdmin.list_per_page", 2)
    response = admin_client_.get(url("eventrecord", "changelist"))
    positions = sorted(listed_positions(response))
    match = re.search(r'id="older-link" href="([^"]+)"', text(response))
    assert match
    older = admin_client_.get(
        url("eventrecord", "changelist") + match.group(1).replace("&amp;", "&")
    )
    assert listed_positions(older) and max(listed_positions(older)) < positions[0]


# ---------------------------------------------------------------- events and streams


def test_the_event_page_shows_json_and_the_causal_links(
    admin_client_: Client, history: History
) -> None:
    deposit = history.deposits[0]
    position = history.position_of(deposit)
    page = text(admin_client_.get(url("eventrecord", "change", position)))
    assert "  &quot;amount&quot;: &quot;5&quot;" in page  # the stored data, pretty-printed
    assert f"&quot;correlation_id&quot;: &quot;{history.correlation_id}&quot;" in page
    assert f'href="{url("eventrecord", "change", history.position_of(history.opened))}"' in page
    assert 'id="causation-link"' in page
    assert f"?correlation_id={history.correlation_id}" in page and "3 events share it" in page
    assert "tests.django.testapp.events.MoneyDeposited" in page
    assert 'id="decode-error"' not in page and "event-upcast-data" not in page
    opened = text(
        admin_client_.get(url("eventrecord", "change", history.position_of(history.opened)))
    )
    assert opened.count('class="caused-link"') == 2  # the deposits it caused


def test_the_event_page_shows_the_upcast_form_when_it_differs(admin_client_: Client) -> None:
    path = "tests.django.admin_helpers"
    orchestrix = {
        **settings.ORCHESTRIX,
        "EVENT_REGISTRY": f"{path}.note_registry",
        "UPCASTERS": f"{path}.note_upcasters",
    }
    with override_settings(ORCHESTRIX=orchestrix):
        DjangoEventStore().save("note-1", [NoteAddedV1(text="hello")])
        position = EventRecord.objects.get(stream_id="note-1").position
        page = text(admin_client_.get(url("eventrecord", "change", position)))
    assert "Data as stored (schema version 1)" in page
    assert "upcast to schema version 2" in page
    upcast = page.split('id="event-upcast-data">', 1)[1].split("</pre>", 1)[0]
    assert "&quot;author&quot;: &quot;upcaster&quot;" in upcast
    assert "tests.django.admin_helpers.NoteAdded" in page


def test_an_undecodable_event_is_shown_with_the_reason(
    admin_client_: Client, history: History
) -> None:
    record = EventRecord.objects.create(
        stream_id="broken-1",
        version=1,
        event_id=str(uuid.uuid4()),
        event_type="NoLongerExists",
        data={"x": 1},
        metadata={},
        timestamp=EventRecord.objects.first().timestamp,  # type: ignore[union-attr]
    )
    response = admin_client_.get(url("eventrecord", "change", record.position))
    assert response.status_code == 200
    assert 'id="decode-error"' in text(response) and "NoLongerExists" in text(response)
    assert "&quot;x&quot;: 1" in text(response)
    bad = EventRecord.objects.create(
        stream_id="broken-2",
        version=1,
        event_id=str(uuid.uuid4()),
        event_type="MoneyDeposited",
        data={"account_id": "a", "amount": "not a number"},
        metadata={},
        timestamp=record.timestamp,
    )
    response = admin_client_.get(url("eventrecord", "change", bad.position))
    assert response.status_code == 200 and "EventDecodeError" in text(response)


def test_the_stream_page_is_a_timeline_of_its_events(
    admin_client_: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = save_history(deposits=[1, 2, 3, 4])
    page = text(admin_client_.get(url("streamrecord", "change", quote(history.stream_id))))
    assert page.count('class="timeline-event"') == 5
    types = re.findall(r'class="timeline-event" href="[^"]+">(\w+)<', page)
    assert types == ["AccountOpened"] + ["MoneyDeposited"] * 4
    versions = re.findall(r'<span class="orx-version">v(\d+)</span>', page)
    assert versions == ["1", "2", "3", "4", "5"]
    for event in [history.opened, *history.deposits]:
        assert f'href="{url("eventrecord", "change", history.position_of(event))}"' in page
    monkeypatch.setattr("orchestrix_django.admin.events.TIMELINE_PAGE", 2)
    first = text(admin_client_.get(url("streamrecord", "change", quote(history.stream_id))))
    assert re.findall(r'<span class="orx-version">v(\d+)</span>', first) == ["1", "2"]
    second = text(
        admin_client_.get(url("streamrecord", "change", quote(history.stream_id)), {"after": "2"})
    )
    assert re.findall(r'<span class="orx-version">v(\d+)</span>', second) == ["3", "4"]
    assert "earlier events" in second and 'id="later-link"' in second


def test_the_stream_list_shows_the_summary(admin_client_: Client, history: History) -> None:
    response = admin_client_.get(
        url("streamrecord", "changelist"), {"aggregate_type": "BankAccount"}
    )
    rows = {r.stream_id: r for r in response.context["cl"].result_list}
    assert set(rows) == {history.stream_id, history.other_stream_id}
    assert rows[history.stream_id].version == 3
    page = text(response)
    for column in ("Events", "Version", "First change", "Last change", "Aggregate type"):
        assert column in page
    weird = "tenant/7_acc 1"
    DjangoEventStore().save(weird, [MoneyDeposited(account_id=weird, amount=Decimal(1))])
    assert admin_client_.get(url("streamrecord", "change", quote(weird))).status_code == 200


# ---------------------------------------------------------------- projections


def test_the_projection_list_shows_position_head_lag_and_health(admin_client_: Client) -> None:
    save_history(deposits=[1])
    catch_up(get_projection("test-balances"))
    save_history(deposits=[1, 2])  # 4 events the projection has not seen
    park_deposit()
    response = admin_client_.get(url("projectionstaterecord", "changelist"))
    rows = {r.projection_id: r for r in response.context["cl"].result_list}
    head = DjangoEventStore().head_position()
    balances = rows["test-balances"]
    assert balances.head_position == head and balances.parked_count == 0
    fragile = rows["test-fragile"]
    assert fragile.parked_count == 1 and not fragile.is_healthy and fragile.paused
    page = text(response)
    assert "cannot handle a deposit of 13" in page
    assert "test-continuing" in page  # configured, not started yet


def test_rebuild_resets_and_catches_up(admin_client_: Client) -> None:
    history = save_history(deposits=[5])
    catch_up(get_projection("test-balances"))
    AccountBalance.objects.filter(account_id=history.stream_id).update(balance=Decimal("999"))
    response = admin_client_.post(
        url("projectionstaterecord", "changelist"),
        {"action": "rebuild_projections", "_selected_action": ["test-balances"], "index": 0},
        follow=True,
    )
    [message] = messages_of(response)
    assert "Projection test-balances rebuilt" in message and "at the head of the log" in message
    assert AccountBalance.objects.get(account_id=history.stream_id).balance == Decimal("15")
    assert projection_status("test-balances").lag == 0


def test_a_rebuild_longer_than_the_budget_is_left_to_the_runners(
    admin_client_: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        save_history(deposits=[1, 2, 3, 4, 5])  # 21 events; fragile reads 4 per batch
    catch_up(get_projection("test-fragile"))
    monkeypatch.setattr("orchestrix_django.admin.projections.ProjectionAdmin.rebuild_seconds", 0.0)
    response = admin_client_.post(
        url("projectionstaterecord", "operate", "test-fragile"),
        {"operation": "rebuild"},
        follow=True,
    )
    [message] = messages_of(response)
    assert (
        "was reset and 0 events applied" in message and "the runners catch up the rest" in message
    )
    status = projection_status("test-fragile")
    assert status.position == 0 and status.lag == status.head


def test_pause_and_resume_from_the_projection_page(admin_client_: Client) -> None:
    save_history(deposits=[1])
    catch_up(get_projection("test-balances"))
    operate = url("projectionstaterecord", "operate", "test-balances")
    response = admin_client_.post(operate, {"operation": "pause"}, follow=True)
    assert messages_of(response) == ["Projection test-balances paused."]
    assert projection_status("test-balances").paused and 'id="resume-button"' in text(response)
    response = admin_client_.post(operate, {"operation": "resume"}, follow=True)
    assert not projection_status("test-balances").paused and 'id="pause-button"' in text(response)
    assert admin_client_.get(operate).status_code == 405
    response = admin_client_.post(
        url("projectionstaterecord", "changelist"),
        {"action": "pause_projections", "_selected_action": ["test-balances"], "index": 0},
    )
    assert response.status_code == 302 and projection_status("test-balances").paused


def test_retry_and_skip_a_parked_event_from_the_projection_page(admin_client_: Client) -> None:
    history, letter_id = park_deposit()
    page = text(admin_client_.get(url("projectionstaterecord", "change", "test-fragile")))
    assert letter_id[:10] in page and "cannot handle a deposit of 13" in page
    operate = url("projectionstaterecord", "operate", "test-fragile")
    # Still failing: retried, parked anew, stopped again.
    response = admin_client_.post(
        operate, {"operation": "retry", "dead_letter": letter_id}, follow=True
    )
    [message] = messages_of(response)
    assert "stopped again" in message
    [again] = DjangoDeadLetterQueue().list(source="projection:test-fragile")
    # Skipped: the projection moves past it and applies the rest.
    response = admin_client_.post(
        operate, {"operation": "skip", "dead_letter": again.id}, follow=True
    )
    [message] = messages_of(response)
    assert "discarded" in message and "moved past it" in message
    status = projection_status("test-fragile")
    assert status.lag == 0 and not status.paused and status.parked == 0
    # A letter of another projection is refused.
    catch_up(get_projection("test-balances"))
    _, other = park_deposit(17)
    response = admin_client_.post(
        url("projectionstaterecord", "operate", "test-balances"),
        {"operation": "skip", "dead_letter": other},
        follow=True,
    )
    assert "is not one of projection test-balances's" in messages_of(response)[0]
    assert history.stream_id


# ---------------------------------------------------------------- dead letters


def test_retry_a_projection_dead_letter_after_the_fix(admin_client_: Client) -> None:
    _, letter_id = park_deposit()
    testapp_projections.FAILING_AMOUNTS.clear()  # the fix is deployed
    response = admin_client_.post(
        url("deadletterrecord", "operate", letter_id), {"operation": "retry"}, follow=True
    )
    [message] = messages_of(response)
    assert "retried: projection test-fragile resumed" in message
    assert DjangoDeadLetterQueue().get(letter_id).status == DeadLetterStatus.RETRIED  # type: ignore[union-attr]
    assert projection_status("test-fragile").lag == 0
    assert 'id="retry-button"' not in text(response)  # resolved: no more buttons


def test_the_dead_letter_page_shows_reason_payload_and_traceback(admin_client_: Client) -> None:
    history, letter_id = park_deposit()
    page = text(admin_client_.get(url("deadletterrecord", "change", letter_id)))
    assert "cannot handle a deposit of 13" in page and 'id="letter-traceback"' in page
    assert "Traceback" in page and "RuntimeError" in page
    assert "&quot;amount&quot;: &quot;13&quot;" in page  # the payload (CloudEvents JSON)
    assert 'id="letter-event-link"' in page and 'id="retry-button"' in page
    listing = admin_client_.get(url("deadletterrecord", "changelist"), {"q": history.stream_id})
    assert [r.id for r in listing.context["cl"].result_list] == [letter_id]


def test_retry_and_discard_bus_dead_letters(
    admin_client_: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bus_module, "_bus", None)
    failures = {"left": 1}
    seen: list[str] = []

    def send_receipt(event: MoneyDeposited) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("mail server down")
        seen.append(event.id)

    get_bus().subscribe(MoneyDeposited, send_receipt)
    history = save_history(deposits=[3, 4])
    letters = DeadLetterRecord.objects.filter(source__startswith="bus:").order_by("created_at")
    assert len(letters) == 1
    letter = letters[0]
    response = admin_client_.post(
        url("deadletterrecord", "changelist"),
        {"action": "retry_letters", "_selected_action": [letter.id], "index": 0},
        follow=True,
    )
    assert messages_of(response) == [f"Dead letter {letter.id} retried: the handler succeeded."]
    assert seen == [history.deposits[1].id, history.deposits[0].id]
    assert DeadLetterRecord.objects.get(pk=letter.id).status == "retried"
    # A letter whose handler is gone cannot be retried, only discarded.
    get_bus().unsubscribe(MoneyDeposited, send_receipt)
    failures["left"] = 1
    get_bus().subscribe(MoneyDeposited, send_receipt)
    save_history(deposits=[9])
    new = DeadLetterRecord.objects.filter(status="parked", source__startswith="bus:").get()
    get_bus().unsubscribe(MoneyDeposited, send_receipt)
    response = admin_client_.post(
        url("deadletterrecord", "operate", new.id), {"operation": "retry"}, follow=True
    )
    assert "not retried" in messages_of(response)[0]
    response = admin_client_.post(
        url("deadletterrecord", "operate", new.id), {"operation": "discard"}, follow=True
    )
    assert messages_of(response) == [f"Dead letter {new.id} discarded."]
    assert DeadLetterRecord.objects.get(pk=new.id).status == "discarded"


def test_letters_from_elsewhere_can_only_be_discarded(admin_client_: Client) -> None:
    letter = DjangoDeadLetterQueue().park(
        None, ValueError("bad input"), source="importer", message_type="Row"
    )
    page = text(admin_client_.get(url("deadletterrecord", "change", letter.id)))
    assert 'id="retry-button" value="Retry" disabled' in page
    response = admin_client_.post(
        url("deadletterrecord", "operate", letter.id), {"operation": "retry"}, follow=True
    )
    assert "cannot retry" in messages_of(response)[0]
    response = admin_client_.post(
        url("deadletterrecord", "changelist"),
        {"action": "discard_letters", "_selected_action": [letter.id], "index": 0},
        follow=True,
    )
    assert messages_of(response) == [f"Dead letter {letter.id} discarded."]
    response = admin_client_.post(
        url("deadletterrecord", "operate", letter.id), {"operation": "retry"}, follow=True
    )
    assert "already discarded" in messages_of(response)[0]


# ---------------------------------------------------------------- sagas


def test_the_saga_page_shows_the_step_history(admin_client_: Client) -> None:
    save_saga()
    page = text(admin_client_.get(url("sagastaterecord", "change", "order-7")))
    steps = page.split('id="saga-steps"', 1)[1]
    assert steps.index("reserve") < steps.index("charge")
    assert "compensated" in steps and "PaymentDeclined: card expired" in steps
    assert "R-1" in steps and "(current)" in steps
    assert "step charge failed" in page and "?correlation_id=corr-saga-7" in page
    assert "&quot;order_id&quot;: &quot;O-7&quot;" in page


def test_sagas_filter_by_status_and_type(admin_client_: Client) -> None:
    save_saga("order-7")
    save_saga("order-8")
    SagaStateRecord.objects.filter(pk="order-8").update(status="in_progress", saga_type="Refund")
    changelist = url("sagastaterecord", "changelist")
    page = admin_client_.get(changelist)
    assert "in progress" in text(page) and "Refund" in text(page)
    assert saga_ids(admin_client_.get(changelist, {"status": "failed"})) == ["order-7"]
    assert saga_ids(admin_client_.get(changelist, {"saga_type": "Refund"})) == ["order-8"]
    both = saga_ids(admin_client_.get(changelist, {"q": "corr-saga-7"}))
    assert sorted(both) == ["order-7", "order-8"]
    assert saga_ids(admin_client_.get(changelist, {"q": "order-8"})) == ["order-8"]


def saga_ids(response: Any) -> list[str]:
    return [r.saga_id for r in response.context["cl"].result_list]
