"""Stored events are append-only through every path, on every database.

Each way of rewriting history that Django or SQL offers is tried on stored
events, and each is refused: by the ORM (``EventMutationError``, before any
SQL) or by the database's triggers (``IntegrityError``), and the rows are
unchanged afterwards. ``allow_event_mutation`` lifts both guards, for its own
transaction only. The project's test suites keep working: ``flush`` between
transactional tests erases the log of a test database, and nowhere else
without being told.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core import serializers
from django.core.checks import run_checks
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import QuerySet
from django.test import TransactionTestCase

from orchestrix_django.models import EventMutationPermit, EventRecord
from orchestrix_django.storage.append_only import (
    DELETE_TRIGGER,
    UPDATE_TRIGGER,
    EventMutationError,
    allow_event_mutation,
    guard_problems,
    install_guard,
)
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.testapp.events import MoneyDeposited
from tests.django.testapp.models import ArchivedEvent, EventRecordProxy

ROOT = Path(__file__).resolve().parents[2]
TABLE = EventRecord._meta.db_table


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def store_events(count: int = 3) -> str:
    stream_id = new_id("history")
    events = [MoneyDeposited(account_id=stream_id, amount=Decimal(n)) for n in range(count)]
    DjangoEventStore().save(stream_id, events, expected_version=0)
    return stream_id


def rows_of(stream_id: str) -> list[tuple[Any, ...]]:
    return list(
        EventRecord.objects.filter(stream_id=stream_id)
        .order_by("position")
        .values_list("position", "version", "event_id", "event_type", "data", "metadata")
    )


def sql(statement: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


@dataclass(frozen=True)
class Target:
    """What an attempt may attack: a stored event, and one stored through a child model."""

    row: EventRecord
    archived: ArchivedEvent


def raw_update(target: Target) -> None:
    sql(f"UPDATE {TABLE} SET event_type = 'Forged' WHERE position = %s", [target.row.pk])


def forged(target: Target) -> EventRecord:
    """The stored row, changed in memory."""
    row = EventRecord.objects.get(pk=target.row.pk)
    row.event_type = "Forged"
    return row


def upsert(queryset: QuerySet[EventRecord], target: Target) -> object:
    row = target.row
    copy = EventRecord(
        stream_id=row.stream_id,
        version=row.version,
        event_id=row.event_id,
        event_type="Forged",
        data={"forged": True},
        timestamp=datetime.now(UTC),
    )
    # MariaDB/MySQL upsert on any unique key and take no conflict target.
    target_fields = (
        ["event_id"] if connection.features.supports_update_conflicts_with_target else None
    )
    return queryset.bulk_create(
        [copy], update_conflicts=True, unique_fields=target_fields, update_fields=["event_type"]
    )


def deserialized_over(target: Target) -> None:
    """``loaddata``'s way of saving: a fixture naming a stored row's key."""
    for obj in serializers.deserialize("json", serializers.serialize("json", [forged(target)])):
        obj.save()


def new_instance_with_a_stored_key(target: Target) -> None:
    row = target.row
    EventRecord(
        pk=row.pk,
        stream_id=row.stream_id,
        version=row.version,
        event_id=row.event_id,
        event_type="Forged",
        data={},
        timestamp=row.timestamp,
    ).save()


def permit_of_another_transaction(target: Target) -> None:
    """A permit row that is not this transaction's (PostgreSQL) or session's (MariaDB)."""
    EventMutationPermit.objects.create(holder="4242")
    if connection.vendor == "mysql":
        sql("SET @orchestrix_event_permit = 'another'")
    try:
        raw_update(target)
    finally:
        if connection.vendor == "mysql":
            sql("SET @orchestrix_event_permit = NULL")


def session_variable_without_permit(target: Target) -> None:
    sql("SET @orchestrix_event_permit = ''")
    try:
        raw_update(target)
    finally:
        sql("SET @orchestrix_event_permit = NULL")


def then_update(*statements: str) -> Callable[[Target], None]:
    """Run ``statements`` (session settings, DDL), then a raw UPDATE."""

    def attempt(target: Target) -> None:
        for statement in statements:
            sql(statement)
        raw_update(target)

    return attempt


def permissive_function(target: Target) -> None:
    sql(
        "CREATE OR REPLACE FUNCTION orchestrix_refuse_event_mutation() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN COALESCE(NEW, OLD); END; $$"
    )
    raw_update(target)


@dataclass(frozen=True)
class Path:
    """A way to change stored events, the guard expected to refuse it, and where it exists."""

    name: str
    attempt: Callable[[Target], object]
    guard: str  # "orm": EventMutationError before any SQL; "database": a trigger refuses
    vendors: tuple[str, ...] = ("sqlite", "postgresql", "mysql")


def _qs() -> QuerySet[EventRecord]:
    """A queryset built from the model class: none of the model's managers applies."""
    return QuerySet(model=EventRecord)


PATHS = [
    # Managers: objects, _base_manager, a proxy's.
    Path(
        "objects.update",
        lambda t: EventRecord.objects.filter(pk=t.row.pk).update(event_type="F"),
        "orm",
    ),
    Path("objects.delete", lambda t: EventRecord.objects.filter(pk=t.row.pk).delete(), "orm"),
    Path(
        "objects._raw_delete",
        lambda t: EventRecord.objects.filter(pk=t.row.pk)._raw_delete(connection.alias),
        "orm",
    ),
    Path(
        "objects.bulk_update",
        lambda t: EventRecord.objects.bulk_update([forged(t)], ["event_type"]),
        "orm",
    ),
    Path(
        "objects.bulk_create(update_conflicts)",
        lambda t: upsert(EventRecord.objects.all(), t),
        "orm",
    ),
    Path(
        "objects.update_or_create",
        lambda t: EventRecord.objects.update_or_create(
            event_id=t.row.event_id, defaults={"event_type": "F"}
        ),
        "orm",
    ),
    Path(
        "_base_manager.update",
        lambda t: EventRecord._base_manager.filter(pk=t.row.pk).update(event_type="F"),
        "orm",
    ),
    Path(
        "_base_manager.delete",
        lambda t: EventRecord._base_manager.filter(pk=t.row.pk).delete(),
        "orm",
    ),
    Path(
        "proxy.objects.update",
        lambda t: EventRecordProxy.objects.filter(pk=t.row.pk).update(event_type="F"),
        "orm",
    ),
    Path(
        "proxy instance.delete", lambda t: EventRecordProxy.objects.get(pk=t.row.pk).delete(), "orm"
    ),
    # Instances: saving over a stored row, deleting one, loaddata.
    Path("instance.save", lambda t: forged(t).save(), "orm"),
    Path(
        "instance.save(update_fields)",
        lambda t: forged(t).save(update_fields=["event_type"]),
        "orm",
    ),
    Path("new instance with a stored key .save", new_instance_with_a_stored_key, "orm"),
    Path("instance.delete", lambda t: EventRecord.objects.get(pk=t.row.pk).delete(), "orm"),
    Path("loaddata over a stored row", deserialized_over, "orm"),
    # The collector: any queryset's delete(), a child model's delete (multi-table cascade).
    Path("QuerySet(EventRecord).delete", lambda t: _qs().filter(pk=t.row.pk).delete(), "orm"),
    Path("child model instance.delete", lambda t: t.archived.delete(), "orm"),
    Path(
        "child model queryset.delete",
        lambda t: ArchivedEvent.objects.filter(pk=t.archived.pk).delete(),
        "orm",
    ),
    # Below the ORM's reach: a plain QuerySet's SQL, and raw SQL.
    Path(
        "QuerySet(EventRecord).update",
        lambda t: _qs().filter(pk=t.row.pk).update(event_type="F"),
        "database",
    ),
    Path(
        "QuerySet(EventRecord)._raw_delete",
        lambda t: _qs().filter(pk=t.row.pk)._raw_delete(connection.alias),
        "database",
    ),
    Path(
        "QuerySet(EventRecord).bulk_update",
        lambda t: _qs().bulk_update([forged(t)], ["event_type"]),
        "database",
    ),
    Path(
        "QuerySet(EventRecord).bulk_create(update_conflicts)",
        lambda t: upsert(_qs(), t),
        "database",
    ),
    Path("raw UPDATE", raw_update, "database"),
    Path(
        "raw DELETE",
        lambda t: sql(f"DELETE FROM {TABLE} WHERE position = %s", [t.row.pk]),
        "database",
    ),
    Path(
        "a permit of another transaction",
        permit_of_another_transaction,
        "database",
        ("postgresql", "mysql"),
    ),
    Path(
        "a session variable without a permit",
        session_variable_without_permit,
        "database",
        ("mysql",),
    ),
    # PostgreSQL's ways around triggers.
    Path("TRUNCATE", lambda t: sql(f"TRUNCATE {TABLE} CASCADE"), "database", ("postgresql",)),
    Path(
        "SET orchestrix.allow_event_mutation = on",
        then_update("SET orchestrix.allow_event_mutation = 'on'"),
        "database",
        ("postgresql",),
    ),
    Path(
        "session_replication_role = replica",
        then_update("SET session_replication_role = replica"),
        "database",
        ("postgresql",),
    ),
    Path(
        "ALTER TABLE ... DISABLE TRIGGER",
        then_update(f"ALTER TABLE {TABLE} DISABLE TRIGGER {UPDATE_TRIGGER}"),
        "database",
        ("postgresql",),
    ),
    Path(
        "ALTER TABLE ... DISABLE TRIGGER ALL",
        then_update(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER"),
        "database",
        ("postgresql",),
    ),
    Path(
        "DROP TRIGGER",
        then_update(f"DROP TRIGGER {UPDATE_TRIGGER} ON {TABLE}"),
        "database",
        ("postgresql",),
    ),
    Path("a permissive trigger function", permissive_function, "database", ("postgresql",)),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_no_path_rewrites_stored_events(path: Path) -> None:
    if connection.vendor not in path.vendors:
        pytest.skip(f"{path.name} exists on {', '.join(path.vendors)} only")
    stream_id = store_events()
    archived = ArchivedEvent.objects.create(
        stream_id=new_id("archived"),
        version=1,
        event_id=str(uuid.uuid4()),
        event_type="MoneyDeposited",
        data={},
        timestamp=datetime.now(UTC),
    )
    target = Target(EventRecord.objects.filter(stream_id=stream_id).first(), archived)  # type: ignore[arg-type]
    before = rows_of(stream_id) + rows_of(archived.stream_id)

    refusal = EventMutationError if path.guard == "orm" else IntegrityError
    with pytest.raises(refusal, match="append-only"), transaction.atomic():
        path.attempt(target)

    assert rows_of(stream_id) + rows_of(archived.stream_id) == before
    assert guard_problems(connection.alias) == []


# -- the escape hatch: one transaction ----------------------------------------------------


def refused_by_the_database(target: Target) -> bool:
    try:
        with transaction.atomic():
            raw_update(target)
    except IntegrityError as error:
        assert "append-only" in str(error)
        return True
    return False


@pytest.mark.django_db(transaction=True)
def test_allow_event_mutation_lifts_the_guards_for_its_own_transaction_only() -> None:
    stream_id = store_events()
    row = EventRecord.objects.filter(stream_id=stream_id).first()
    assert row is not None
    target = Target(row, None)  # type: ignore[arg-type]

    with allow_event_mutation():
        EventRecord.objects.filter(pk=row.pk).update(data={"erased": True})  # the ORM
        raw_update(target)  # and the database
    assert EventRecord.objects.get(pk=row.pk).event_type == "Forged"
    assert not EventMutationPermit.objects.exists()
    assert refused_by_the_database(target)

    # Within one outer transaction: lifted in the block, refused right after it.
    with transaction.atomic():
        with allow_event_mutation():
            raw_update(target)
        assert refused_by_the_database(target)
        with pytest.raises(EventMutationError):
            EventRecord.objects.filter(pk=row.pk).update(data={})

    # A block inside another: the outer one is still allowed after it.
    with allow_event_mutation():
        with allow_event_mutation():
            raw_update(target)
        raw_update(target)
        EventRecord.objects.filter(pk=row.pk).update(event_type="Forged")
    assert not EventMutationPermit.objects.exists()

    # A block that raises changes nothing and leaves no permit behind.
    def broken_script() -> None:
        with allow_event_mutation():
            EventRecord.objects.filter(pk=row.pk).update(data={"half": "done"})
            raise RuntimeError("the operator's script broke")

    with pytest.raises(RuntimeError):
        broken_script()
    assert EventRecord.objects.get(pk=row.pk).data == {"erased": True}
    assert not EventMutationPermit.objects.exists()
    assert refused_by_the_database(target)


@pytest.mark.django_db(transaction=True)
def test_an_open_block_lifts_nothing_for_other_connections() -> None:
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has one writer at a time: no other connection can write meanwhile")
    first, second = EventRecord.objects.filter(stream_id=store_events(2)).order_by("version")
    opened, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def operator() -> None:
        try:
            with allow_event_mutation():
                raw_update(Target(first, None))  # type: ignore[arg-type]
                opened.set()
                release.wait(30)
        except BaseException as error:  # reported by the test below
            errors.append(error)
            opened.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=operator)
    thread.start()
    try:
        assert opened.wait(30)
        if connection.vendor == "mysql":
            # Even a reader of uncommitted rows does not borrow the operator's permit.
            with transaction.atomic():
                sql("SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED")
        assert refused_by_the_database(Target(second, None))  # type: ignore[arg-type]
    finally:
        release.set()
        thread.join(30)
    assert not errors
    assert EventRecord.objects.get(pk=first.pk).event_type == "Forged"
    assert EventRecord.objects.get(pk=second.pk).event_type == "MoneyDeposited"


# -- flush: test suites keep working, nothing else erases the log without a word ----------


class TransactionTestCasesStartWithAnEmptyLog(TransactionTestCase):
    """Django flushes every table after each TransactionTestCase test (in name order here)."""

    def test_1_stores_events(self) -> None:
        store_events()
        assert EventRecord.objects.count() >= 3

    def test_2_finds_the_log_empty(self) -> None:
        assert not EventRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_transactional_db_stores_events() -> None:
    store_events()
    assert EventRecord.objects.count() >= 3


@pytest.mark.django_db(transaction=True)
def test_the_next_transactional_db_test_finds_the_log_empty() -> None:
    assert not EventRecord.objects.exists()


def manage(*arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """``python -m django ...`` on this test database, as a process outside any test run."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ORCHESTRIX_WORKER_DB_NAME": str(connection.settings_dict["NAME"]),
        **environment,
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


@pytest.mark.django_db(transaction=True)
def test_flush_outside_a_test_run_erases_events_only_when_told() -> None:
    store_events()
    stored = EventRecord.objects.count()

    refused = manage("flush", "--no-input")
    assert refused.returncode == 1, refused.stderr
    assert f"holds {stored} stored event(s)" in refused.stderr
    assert "flush --erase-events" in refused.stderr
    assert EventRecord.objects.count() == stored

    erased = manage("flush", "--no-input", "--erase-events")
    assert erased.returncode == 0, erased.stderr
    assert not EventRecord.objects.exists()
    assert not EventMutationPermit.objects.exists()

    # With no events to lose, flush needs no option (on PostgreSQL it still truncates).
    again = manage("flush", "--no-input")
    assert again.returncode == 0, again.stderr
    assert guard_problems(connection.alias) == []


# -- the guard is watched: check, command, verify ------------------------------------------


def guard_warnings() -> list[str]:
    return [
        message.msg
        for message in run_checks(databases=[connection.alias])
        if message.id == "orchestrix.W022"
    ]


@pytest.mark.django_db(transaction=True)
def test_a_missing_or_disabled_trigger_is_reported_and_put_back() -> None:
    postgresql = connection.vendor == "postgresql"
    store_events()
    assert guard_warnings() == []
    try:
        # On PostgreSQL the event trigger refuses this without a permit.
        with allow_event_mutation() if postgresql else transaction.atomic():
            sql(f"DROP TRIGGER {DELETE_TRIGGER}" + (f" ON {TABLE}" if postgresql else ""))
            if postgresql:
                sql(f"ALTER TABLE {TABLE} DISABLE TRIGGER {UPDATE_TRIGGER}")
        expected = [f"the trigger {DELETE_TRIGGER} is missing"]
        if postgresql:
            expected.insert(0, f"the trigger {UPDATE_TRIGGER} is disabled")
        assert sorted(guard_problems(connection.alias)) == sorted(expected)
        [warning] = guard_warnings()
        assert all(problem in warning for problem in expected)

        report = manage("orchestrix_append_only")
        assert report.returncode == 1
        assert f"the trigger {DELETE_TRIGGER} is missing" in report.stderr
        assert "orchestrix_append_only --install" in report.stderr
        verify = manage("orchestrix_verify")
        assert verify.returncode == 1
        assert f"the trigger {DELETE_TRIGGER} is missing" in verify.stderr
        status = manage("orchestrix_status", "--check")
        assert status.returncode == 1
        assert f"the trigger {DELETE_TRIGGER} is missing" in status.stdout
        assert "append-only guard is incomplete" in status.stderr

        installed = manage("orchestrix_append_only", "--install")
        assert installed.returncode == 0, installed.stderr
        assert "is in place" in installed.stdout
        assert guard_problems(connection.alias) == []
        assert guard_warnings() == []
        assert "Append-only guard: in place" in manage("orchestrix_status").stdout

        if postgresql:
            # What --sql prints for a DBA works as it is, event trigger and all.
            with allow_event_mutation():
                sql(f"DROP TRIGGER {DELETE_TRIGGER} ON {TABLE}")
            printed = manage("orchestrix_append_only", "--sql")
            assert printed.returncode == 0, printed.stderr
            sql(printed.stdout)
            assert guard_problems(connection.alias) == []
            assert not EventMutationPermit.objects.exists()
    finally:
        install_guard(connection.alias)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        sql(f"DELETE FROM {TABLE}")


MARIADB_PASSWORD = "orchestrix-no-trigger-test"


@pytest.mark.django_db(transaction=True)
def test_migrate_succeeds_for_a_mariadb_user_who_may_not_create_triggers() -> None:
    """As on managed servers (binary logging on, no SUPER): migrate works, W022 says what to do."""
    if connection.vendor != "mysql":
        pytest.skip("MariaDB/MySQL only")
    suffix = uuid.uuid4().hex[:10]
    database, user = f"orx_notrigger_{suffix}", f"orx_nt_{suffix}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{MARIADB_PASSWORD}'")
        cursor.execute(f"GRANT ALL ON `{database}`.* TO '{user}'@'%'")
        cursor.execute(f"REVOKE TRIGGER ON `{database}`.* FROM '{user}'@'%'")
    as_user = {
        "ORCHESTRIX_WORKER_DB_NAME": database,
        "ORCHESTRIX_MYSQL_USER": user,
        "ORCHESTRIX_MYSQL_PASSWORD": MARIADB_PASSWORD,
    }
    try:
        migrated = manage("migrate", "--no-input", **as_user)
        assert migrated.returncode == 0, migrated.stderr
        checked = manage("check", "--database", "default", **as_user)
        assert checked.returncode == 0, checked.stderr
        assert "orchestrix.W022" in checked.stderr
        assert f"the trigger {UPDATE_TRIGGER} is missing" in checked.stderr
        refused = manage("orchestrix_append_only", "--install", **as_user)
        assert refused.returncode == 1
        assert "may not create triggers" in refused.stderr

        # An administrator installs them; from then on the database refuses too.
        administrator = {"ORCHESTRIX_WORKER_DB_NAME": database}
        installed = manage("orchestrix_append_only", "--install", **administrator)
        assert installed.returncode == 0, installed.stderr
        checked = manage("check", "--database", "default", **as_user)
        assert "orchestrix.W022" not in checked.stderr
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE `{database}`")
            cursor.execute(f"DROP USER '{user}'@'%'")
