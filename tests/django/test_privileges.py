"""The store works for a database user that may only read and insert events.

docs/guarantees.md advises, on databases without the append-only trigger,
granting the application nothing but ``SELECT`` and ``INSERT`` on
``orchestrix_event``. This proves the advice: saves (new, retried and
conflicting), reads, snapshots and a projection's catch-up work for such a
user, and an ``UPDATE`` or ``DELETE`` of an event is refused by the
database. PostgreSQL and MariaDB (SQLite has no users).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.db.utils import load_backend

from orchestrix.core.common.exceptions import ConcurrencyError
from orchestrix.core.eventsourcing.aggregate import AggregateRepository
from orchestrix_django.models import EventRecord
from orchestrix_django.storage.append_only import allow_event_mutation
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.projection_state import DjangoProjectionStateStore
from tests.django.testapp.events import AccountOpened, BankAccount, MoneyDeposited

pytestmark = pytest.mark.django_db(transaction=True)

ALIAS = "orchestrix_restricted"
EVENT_TABLE = EventRecord._meta.db_table
#: Whatever the server's authentication rules, the new user signs in with this.
PASSWORD = "orchestrix-restricted-test"


def _grant_postgresql(user: str) -> list[str]:
    return [
        f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{PASSWORD}'",
        f'GRANT USAGE ON SCHEMA public TO "{user}"',
        f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{user}"',
        f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{user}"',
        f'REVOKE UPDATE, DELETE, TRUNCATE ON {EVENT_TABLE} FROM "{user}"',
    ]


def _grant_mysql(user: str) -> list[str]:
    # A table-level REVOKE cannot take back a database-wide grant: grant per table.
    database = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
    grants = [f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'"]
    for table in tables:
        rights = "SELECT, INSERT" if table == EVENT_TABLE else "ALL"
        grants.append(f"GRANT {rights} ON `{database}`.`{table}` TO '{user}'@'%'")
    return grants


def _drop(user: str) -> list[str]:
    if connection.vendor == "postgresql":
        return [f'DROP OWNED BY "{user}"', f'DROP ROLE "{user}"']
    return [f"DROP USER '{user}'@'%'"]


@pytest.fixture
def restricted() -> Iterator[str]:
    """The alias of a connection as a user without UPDATE and DELETE on events."""
    if connection.vendor not in ("postgresql", "mysql"):
        pytest.skip("SQLite has no database users")
    user = f"orx_ro_{uuid.uuid4().hex[:10]}"
    grants = _grant_postgresql(user) if connection.vendor == "postgresql" else _grant_mysql(user)
    with connection.cursor() as cursor:
        for statement in grants:
            cursor.execute(statement)
    settings_dict = {**connection.settings_dict, "USER": user, "PASSWORD": PASSWORD}
    connections[ALIAS] = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, ALIAS)
    try:
        yield ALIAS
    finally:
        connections[ALIAS].close()
        del connections[ALIAS]
        with connection.cursor() as cursor:
            for statement in _drop(user):
                cursor.execute(statement)


def test_the_store_needs_no_update_or_delete_on_events(restricted: str) -> None:
    store = DjangoEventStore(using=restricted)
    stream_id = f"acc-{uuid.uuid4().hex[:8]}"
    opened = AccountOpened(account_id=stream_id, owner="Ann", initial_deposit=10.0)
    deposits = [MoneyDeposited(account_id=stream_id, amount=Decimal(n)) for n in (1, 2)]

    store.save(stream_id, [opened], expected_version=0, aggregate_type="BankAccount")
    store.save(stream_id, deposits, expected_version=1)
    store.save(stream_id, deposits, expected_version=1)  # a retry: stored once
    with pytest.raises(ConcurrencyError):
        store.save(stream_id, [MoneyDeposited(account_id=stream_id, amount=Decimal(9))], 1)

    repository: AggregateRepository[BankAccount] = AggregateRepository(
        event_store=store, snapshot_every=4
    )
    with transaction.atomic(using=restricted):
        account = repository.load(BankAccount, stream_id)
        account.deposit(Decimal(3))
        repository.save(account)  # version 4: a snapshot too
    assert store.load_snapshot(stream_id).version == 4  # type: ignore[union-attr]

    assert [e.id for e in store.load(stream_id)][:3] == [opened.id, *(e.id for e in deposits)]
    assert [r.version for r in store.read_all() if r.stream_id == stream_id] == [1, 2, 3, 4]
    assert repository.load(BankAccount, stream_id).balance == 16.0

    projections = DjangoProjectionStateStore(using=restricted)
    assert projections.load_state("test-balances") is None  # the other tables are open

    # The database itself refuses to change history for this user, even when
    # the ORM guard is lifted.
    table = connections[restricted].ops.quote_name(EVENT_TABLE)
    for statement in (f"UPDATE {table} SET event_type = 'Forged'", f"DELETE FROM {table}"):
        with (
            pytest.raises(DatabaseError, match="denied"),
            allow_event_mutation(restricted),
            connections[restricted].cursor() as cursor,
        ):
            cursor.execute(statement)
    assert EventRecord.objects.filter(stream_id=stream_id).count() == 4
