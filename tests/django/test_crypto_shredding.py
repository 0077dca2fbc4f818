"""Personal data encrypted per data subject, and forgotten by deleting its key.

See orchestrix_django.storage.personal_data. The event is the test app's
``PersonRegistered``: ``email`` and ``name`` (str, no default), ``phone``
(optional) and ``nickname`` (with a default) are personal; ``customer_id`` is
its subject, ``plan`` and ``credit`` stay readable.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections
from django.test import override_settings

from orchestrix.core.common.exceptions import EventDecodeError
from orchestrix.core.messaging.message import Event, EventRegistry, default_registry
from orchestrix_django.models import EventRecord, SubjectKey
from orchestrix_django.projections import catch_up, get_projection, reset_projection
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.personal_data import ENCRYPTED_TAG
from orchestrix_django.storage.personal_fields import ERASED, personal_fields
from orchestrix_django.storage.subject_keys import SubjectErasedError, forget_subject
from tests.django.ops_helpers import command, failing
from tests.django.testapp.events import PersonRegistered
from tests.django.testapp.models import AppliedEvent

pytestmark = pytest.mark.django_db(transaction=True)

MASTER_KEY = base64.b64encode(b"m" * 32).decode()

#: The plaintext of the personal fields; none of it may be stored.
SECRETS = ("ada@example.com", "Ada Lovelace", "+44 20 7946 0000", "Countess")


@pytest.fixture
def encrypted() -> Iterator[None]:
    """The test settings with ENCRYPT_PERSONAL_DATA on (and a master key)."""
    with override_settings(
        ORCHESTRIX={
            **_base(),
            "ENCRYPT_PERSONAL_DATA": True,
            "ENCRYPTION_MASTER_KEY": MASTER_KEY,
        }
    ):
        yield


def _base() -> dict[str, Any]:
    """The test settings without the encryption (also inside the ``encrypted`` fixture)."""
    from django.conf import settings

    return {
        key: value
        for key, value in settings.ORCHESTRIX.items()
        if key not in ("ENCRYPT_PERSONAL_DATA", "ENCRYPTION_MASTER_KEY")
    }


def registered(customer_id: str | None = None, **values: Any) -> PersonRegistered:
    fields: dict[str, Any] = {
        "customer_id": customer_id or f"customer-{uuid.uuid4()}",
        "email": SECRETS[0],
        "name": SECRETS[1],
        "phone": SECRETS[2],
        "nickname": SECRETS[3],
        "plan": "gold",
        "credit": Decimal("12.50"),
    }
    fields.update(values)
    return PersonRegistered(**fields)


def raw_row(event_id: str) -> str:
    """The stored data of an event, as the database hands it over in plain SQL."""
    table = connection.ops.quote_name(EventRecord._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT data, metadata FROM {table} WHERE event_id = %s",
            [event_id],
        )
        data, metadata = cursor.fetchone()
    return f"{data} {metadata}"


def save(event: Event, stream: str | None = None) -> str:
    stream = stream or f"customer-stream-{uuid.uuid4()}"
    DjangoEventStore().save(stream, [event])
    return stream


def test_encrypted_at_rest_and_read_back_as_saved(encrypted: None) -> None:
    event = registered()
    stream = save(event)
    stored = raw_row(event.id)
    for secret in SECRETS:
        assert secret not in stored
    data = EventRecord.objects.get(event_id=event.id).data
    assert data["customer_id"] == event.customer_id  # the subject and the rest stay readable
    assert data["plan"] == "gold" and data["credit"] == "12.50"
    assert data["email"][ENCRYPTED_TAG] == "v1" and data["email"]["key"] == event.customer_id
    assert DjangoEventStore().load(stream) == [event]
    assert DjangoEventStore().read_all(0, 10000)[-1].event == event


def test_forget_subject_leaves_the_row_and_reads_placeholders(encrypted: None) -> None:
    event = registered()
    stream = save(event)
    other = registered()
    save(other, stream)  # another subject in the same stream is not affected
    before = raw_row(event.id)
    assert forget_subject(event.customer_id) is True
    assert forget_subject(event.customer_id) is False  # forgotten already
    assert raw_row(event.id) == before
    first, second = DjangoEventStore().load(stream)
    assert (first.email, first.name, first.phone, first.nickname) == (
        ERASED,
        ERASED,
        None,
        "anonymous",  # the field's default
    )
    assert (first.customer_id, first.plan, first.credit, first.id) == (
        event.customer_id,
        "gold",
        Decimal("12.50"),
        event.id,
    )
    assert second == other
    assert SubjectKey.objects.get(pk=event.customer_id).key is None


def test_new_personal_data_of_a_forgotten_subject_is_refused(encrypted: None) -> None:
    event = registered()
    save(event)
    forget_subject(event.customer_id)
    with pytest.raises(SubjectErasedError):
        save(registered(event.customer_id))


def test_a_projection_replays_after_an_erasure(encrypted: None) -> None:
    events = [registered(), registered()]
    for event in events:
        save(event)
    forget_subject(events[0].customer_id)
    slow = get_projection("test-slow")
    reset_projection(slow)
    result = catch_up(slow)
    assert result.stopped is None and result.position == result.head
    applied = set(AppliedEvent.objects.filter(projection="slow").values_list("event_id", flat=True))
    assert {e.id for e in events} <= applied


def test_forget_subject_command(encrypted: None) -> None:
    event = registered()
    save(event)
    out, _ = command("orchestrix_forget_subject", event.customer_id, yes=True)
    assert "Forgot data subject" in out
    out, _ = command("orchestrix_forget_subject", event.customer_id, yes=True)
    assert "forgotten already" in out
    assert "no data subject" in failing("orchestrix_forget_subject", "nobody-at-all", yes=True)
    unconfirmed = registered()
    save(unconfirmed)
    assert "--yes" in failing("orchestrix_forget_subject", unconfirmed.customer_id)
    assert SubjectKey.objects.get(pk=unconfirmed.customer_id).key is not None


def test_first_keys_of_a_subject_made_by_two_writers_at_once(encrypted: None) -> None:
    """Both saves use the one key that won: both events read back."""
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"] == ":memory:":
        pytest.skip("threads need a database file")  # pragma: no cover
    customer = f"customer-{uuid.uuid4()}"
    events = [registered(customer), registered(customer)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(event: PersonRegistered) -> None:
        try:
            barrier.wait()
            save(event)
        except BaseException as error:  # reported by the test thread
            errors.append(error)
        finally:
            connections.close_all()

    # The keys' table is read before the insert, so both writers see no key.
    threads = [threading.Thread(target=write, args=(e,)) for e in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert SubjectKey.objects.filter(pk=customer).count() == 1
    decoded = {r.event.id: r.event for r in DjangoEventStore().read_all(0, 10000)}
    assert [decoded[e.id] for e in events] == events


def test_first_key_race_lost_uses_the_winners_key(encrypted: None) -> None:
    """Deterministically: the key appears between the look-up and the insert."""
    from orchestrix_django.storage import personal_data

    customer = f"customer-{uuid.uuid4()}"
    first = registered(customer)
    save(first)
    # A writer that looked before the first save committed found no key: its
    # insert loses, and it gets the winner's key.
    cipher = personal_data.SubjectKeys("default")._create(customer)
    stored = EventRecord.objects.get(event_id=first.id).data["email"]
    plain = cipher.decrypt(
        base64.b64decode(stored["nonce"]),
        base64.b64decode(stored["ciphertext"]),
        personal_data._aad(first.id, "email", customer),
    )
    assert json.loads(plain) == SECRETS[0]


def test_not_configured_stores_the_same_bytes() -> None:
    assert orchestrix_settings.ENCRYPT_PERSONAL_DATA is False
    event = registered()
    save(event)
    stored = EventRecord.objects.get(event_id=event.id).data
    assert stored == DjangoEventStore().codec.encode(event).data
    assert stored["email"] == SECRETS[0]
    assert not SubjectKey.objects.filter(pk=event.customer_id).exists()


def test_events_stored_before_encryption_was_on_still_read(encrypted: None) -> None:
    event = registered()
    with override_settings(ORCHESTRIX=_base()):
        stream = save(event)
    assert EventRecord.objects.get(event_id=event.id).data["email"] == SECRETS[0]
    assert DjangoEventStore().load(stream) == [event]


def test_a_moved_ciphertext_does_not_decrypt(encrypted: None) -> None:
    first, second = registered(), registered()
    save(first)
    save(second)
    moved = dict(EventRecord.objects.get(event_id=second.id).data)
    moved["email"] = EventRecord.objects.get(event_id=first.id).data["email"]
    # Rows are append-only on PostgreSQL: decode a copy the way the admin does.
    store = DjangoEventStore()
    record = EventRecord.objects.get(event_id=second.id)
    encoded = store.codec.encode(second)
    with pytest.raises(EventDecodeError, match="does not decrypt"):
        store.codec.decode_parts(
            encoded.event_id,
            encoded.event_type,
            encoded.schema_version,
            encoded.timestamp,
            moved,
            record.metadata,
        )


def test_a_wrong_master_key_is_an_error_not_an_erasure(encrypted: None) -> None:
    event = registered()
    stream = save(event)
    wrong = base64.b64encode(os.urandom(32)).decode()
    with (
        override_settings(
            ORCHESTRIX={**_base(), "ENCRYPT_PERSONAL_DATA": True, "ENCRYPTION_MASTER_KEY": wrong}
        ),
        pytest.raises(ImproperlyConfigured, match="does not unwrap"),
    ):
        DjangoEventStore().load(stream)
    with (
        override_settings(ORCHESTRIX={**_base(), "ENCRYPT_PERSONAL_DATA": True}),
        pytest.raises(ImproperlyConfigured, match="not set"),
    ):
        DjangoEventStore().load(stream)


def test_export_holds_no_plaintext_and_the_admin_and_api_read_it(
    encrypted: None, tmp_path: Path
) -> None:
    event = registered()
    save(event)
    path = tmp_path / "events.jsonl"
    command("orchestrix_export", "--output", str(path))
    exported = path.read_text(encoding="utf-8")
    assert event.id in exported and ENCRYPTED_TAG in exported
    for secret in SECRETS:
        assert secret not in exported
    from orchestrix_django.admin.events import decode_event_record

    record = EventRecord.objects.get(event_id=event.id)
    assert decode_event_record(record).error is None
    forget_subject(event.customer_id)
    assert decode_event_record(record).error is None


def test_checks_report_declarations_that_cannot_be_erased() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Unerasable(Event):
        personal_data: ClassVar = ("birthday",)
        data_subject: ClassVar = "person_id"
        person_id: str
        birthday: int

    default_registry.unregister(Unerasable)  # defining it registered it
    with pytest.raises(TypeError, match="without a default"):
        personal_fields(Unerasable)
    registry = EventRegistry()
    registry.add(Unerasable)
    with override_settings(
        ORCHESTRIX={**_base(), "EVENT_REGISTRY": registry, "ENCRYPTION_MASTER_KEY": "short"}
    ):
        ids = [m.id for m in run_checks(tags=["orchestrix"]) if m.id.endswith("12")]
    assert ids.count("orchestrix.E012") == 2
    with override_settings(ORCHESTRIX={**_base(), "ENCRYPT_PERSONAL_DATA": True}):
        ids = [m.id for m in run_checks(tags=["orchestrix"]) if m.id.endswith("12")]
    assert ids == ["orchestrix.W012"]


def test_the_admin_and_the_api_show_decrypted_data_then_placeholders(encrypted: None) -> None:
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    event = registered()
    save(event)
    record = EventRecord.objects.get(event_id=event.id)
    client = Client()
    client.force_login(User.objects.create_superuser("dpo", password="x-x-x-x-1"))
    admin_page = reverse("admin:orchestrix_django_eventrecord_change", args=[record.position])
    api_page = f"/orchestrix/events/{event.id}/"

    page = client.get(admin_page)
    assert page.status_code == 200
    assert SECRETS[0] in page.content.decode() and "ciphertext" not in page.content.decode()
    response = client.get(api_page)
    assert response.status_code == 200
    assert response.json()["data"]["email"] == SECRETS[0]

    forget_subject(event.customer_id)
    page = client.get(admin_page)
    assert page.status_code == 200
    content = page.content.decode()
    assert "&lt;erased&gt;" in content and SECRETS[0] not in content
    data = client.get(api_page).json()["data"]
    assert (data["email"], data["phone"], data["nickname"]) == (ERASED, None, "anonymous")


def test_reads_look_each_subjects_key_up_once(encrypted: None) -> None:
    from django.test.utils import CaptureQueriesContext

    people = [registered() for _ in range(3)]
    stream = f"customer-stream-{uuid.uuid4()}"
    DjangoEventStore().save(stream, [*people, registered(people[0].customer_id)])
    table = SubjectKey._meta.db_table
    with CaptureQueriesContext(connection) as log:
        assert len(DjangoEventStore().read_all(0, 10000)) >= 4  # three subjects: one query
    assert sum(table in query["sql"] for query in log.captured_queries) == 1
    with CaptureQueriesContext(connection) as log:
        loaded = DjangoEventStore().load(stream)  # a stream: one query per subject
    assert loaded[:3] == people
    assert sum(table in query["sql"] for query in log.captured_queries) == 3
    with CaptureQueriesContext(connection) as log:
        DjangoEventStore().save(stream, [registered(p.customer_id) for p in people])
    assert sum(table in query["sql"] for query in log.captured_queries) == 1


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_an_import_keeps_the_ciphertexts_and_reads_erased_without_the_keys(
    encrypted: None, tmp_path: Path
) -> None:
    event = registered()
    save(event)
    path = tmp_path / "events.jsonl"
    command("orchestrix_export", "--output", str(path))
    command("orchestrix_import", str(path), "--database", "other")
    exported = EventRecord.objects.get(event_id=event.id).data
    assert EventRecord.objects.using("other").get(event_id=event.id).data == exported
    assert not SubjectKey.objects.using("other").exists()  # keys are not exported
    imported = [
        r.event for r in DjangoEventStore("other").read_all(0, 10000) if r.event.id == event.id
    ]
    assert [(e.email, e.phone, e.plan) for e in imported] == [(ERASED, None, "gold")]


def test_an_import_of_plaintext_personal_data_encrypts_it(encrypted: None) -> None:
    event = registered()
    with override_settings(ORCHESTRIX=_base()):
        plain = DjangoEventStore().codec.encode(event)
    stream = f"customer-stream-{uuid.uuid4()}"
    DjangoEventStore().save_encoded(stream, [plain])
    for secret in SECRETS:
        assert secret not in raw_row(event.id)
    assert DjangoEventStore().load(stream) == [event]
