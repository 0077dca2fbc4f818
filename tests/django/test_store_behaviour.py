"""What users rely on from the Django event store beyond the core contract.

Aggregates through the repository (with stream summaries and snapshots), a
bounded number of SQL statements per save, all-or-nothing saves and the
``events_committed`` signal, upcasting and decode errors on every read path,
append-only rows, UTC timestamps and metadata columns, and paged or streamed
reads of the log.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import AutoField
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from orchestrix.core.common.exceptions import (
    AggregateNotFoundError,
    ConcurrencyError,
    EventDecodeError,
    UnknownEventTypeError,
    UpcastError,
)
from orchestrix.core.common.observability import ObservabilityHooks
from orchestrix.core.eventsourcing.aggregate import AggregateRepository, AggregateRoot
from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.eventsourcing.versioning import EventUpcaster, UpcasterRegistry
from orchestrix.core.messaging.message import Event
from orchestrix_django.models import EventRecord, SnapshotRecord, StreamRecord
from orchestrix_django.signals import events_committed
from orchestrix_django.storage.async_events import DjangoAsyncEventStore
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.testapp.events import AccountOpened, BankAccount, MoneyDeposited

pytestmark = pytest.mark.django_db

THIS_MODULE = "tests.django.test_store_behaviour"


# -- events with two schema versions, and their upcasters --------------------------------


@dataclass(frozen=True, kw_only=True)
class ParcelWeighedV1(Event):
    """How ``BehaviourParcelWeighed`` was first stored: whole grams."""

    type: str = "BehaviourParcelWeighed"
    schema_version: ClassVar[int] = 1
    parcel_id: str
    grams: int


@dataclass(frozen=True, kw_only=True)
class ParcelWeighed(Event):
    """The current shape: kilograms as a Decimal."""

    type: str = "BehaviourParcelWeighed"
    schema_version: ClassVar[int] = 2
    parcel_id: str
    kilograms: Decimal


class GramsToKilograms(EventUpcaster[ParcelWeighedV1, ParcelWeighed]):
    async def upcast(self, event: Event) -> ParcelWeighed:
        assert isinstance(event, ParcelWeighedV1)
        return ParcelWeighed(
            id=event.id,
            timestamp=event.timestamp,
            correlation_id=event.correlation_id,
            parcel_id=event.parcel_id,
            kilograms=Decimal(event.grams) / 1000,
        )


@dataclass(frozen=True, kw_only=True)
class ParcelLabelledV1(Event):
    """An event whose upcaster has to await I/O."""

    type: str = "BehaviourParcelLabelled"
    schema_version: ClassVar[int] = 1
    parcel_id: str


@dataclass(frozen=True, kw_only=True)
class ParcelLabelled(Event):
    type: str = "BehaviourParcelLabelled"
    schema_version: ClassVar[int] = 2
    parcel_id: str
    label: str


class LookUpLabel(EventUpcaster[ParcelLabelledV1, ParcelLabelled]):
    async def upcast(self, event: Event) -> ParcelLabelled:
        assert isinstance(event, ParcelLabelledV1)
        await asyncio.sleep(0)  # stands for a lookup in another service
        return ParcelLabelled(
            id=event.id,
            timestamp=event.timestamp,
            parcel_id=event.parcel_id,
            label=f"label-of-{event.parcel_id}",
        )


#: What ``ORCHESTRIX["UPCASTERS"]`` points at in these tests.
UPCASTERS = UpcasterRegistry()
UPCASTERS.register("BehaviourParcelWeighed", GramsToKilograms(1, 2))
UPCASTERS.register("BehaviourParcelLabelled", LookUpLabel(1, 2))


@dataclass
class Parcel(AggregateRoot):
    """Applies only the current shape: a v1 event reaching it would fail."""

    kilograms: Decimal = Decimal(0)
    label: str = ""

    def _when_behaviour_parcel_weighed(self, event: ParcelWeighed) -> None:
        self.kilograms = event.kilograms

    def _when_behaviour_parcel_labelled(self, event: ParcelLabelled) -> None:
        self.label = event.label


# -- helpers -------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def deposits(account_id: str, count: int) -> list[Event]:
    return [MoneyDeposited(account_id=account_id, amount=Decimal(f"{n}.25")) for n in range(count)]


def orchestrix(**overrides: Any) -> override_settings:
    """The test project's ``ORCHESTRIX`` with ``overrides``."""
    return override_settings(ORCHESTRIX={**settings.ORCHESTRIX, **overrides})


def with_upcasters() -> override_settings:
    return orchestrix(UPCASTERS=f"{THIS_MODULE}.UPCASTERS")


def insert_row(stream_id: str, event_type: str, data: Any, *, schema_version: int = 1) -> int:
    """Store a row as another program (or an older release) might have: no codec."""
    record = EventRecord.objects.create(
        stream_id=stream_id,
        version=1,
        event_id=str(uuid.uuid4()),
        event_type=event_type,
        schema_version=schema_version,
        data=data,
        metadata={},
        timestamp=datetime.now(UTC),
    )
    return int(record.position)


def stored_rows(stream_id: str) -> list[EventRecord]:
    return list(EventRecord.objects.filter(stream_id=stream_id).order_by("version"))


@dataclass
class Observed:
    """Observability callbacks, recorded."""

    hooks: ObservabilityHooks = field(default_factory=ObservabilityHooks)
    loaded: list[int] = field(default_factory=list)
    snapshots_loaded: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hooks.on_event_loaded(lambda _id, count: self.loaded.append(count))
        self.hooks.on_snapshot_loaded(lambda _id, version: self.snapshots_loaded.append(version))
        self.hooks.on_aggregate_error(lambda _id, error: self.errors.append(error))


@pytest.fixture
def committed() -> Iterator[list[dict[str, Any]]]:
    """Every ``events_committed`` signal sent during the test."""
    received: list[dict[str, Any]] = []

    def receiver(sender: type, **kwargs: Any) -> None:
        received.append({"sender": sender, **kwargs})

    events_committed.connect(receiver)
    yield received
    events_committed.disconnect(receiver)


def is_event_write(sql: str) -> bool:
    """Whether ``sql`` changes rows of the event table."""
    table = connection.ops.quote_name(EventRecord._meta.db_table)
    return sql.lstrip().upper().startswith(("UPDATE", "DELETE")) and table in sql


# -- (a) the reference's bank account through the repository --------------------------


def test_bank_account_round_trip_and_stream_summary() -> None:
    store = DjangoEventStore()
    repo: AggregateRepository[BankAccount] = AggregateRepository(event_store=store)
    account_id = new_id("acc")
    account = BankAccount(aggregate_id=account_id)
    account.open("Ada", 100.0)
    account.deposit(Decimal("10.50"))
    repo.save(account)

    loaded = repo.load(BankAccount, account_id)
    assert (loaded.owner, loaded.balance, loaded.version) == ("Ada", 110.5, 2)
    assert loaded.uncommitted_events == []
    amounts = [e.amount for e in store.load(account_id) if isinstance(e, MoneyDeposited)]
    assert amounts == [Decimal("10.50")]
    assert type(amounts[0]) is Decimal

    rows = stored_rows(account_id)
    stream = StreamRecord.objects.get(pk=account_id)
    assert stream.aggregate_type == "BankAccount"
    assert stream.version == 2
    assert stream.first_position == rows[0].position
    assert stream.last_position == rows[1].position

    loaded.deposit(Decimal("5"))
    repo.save(loaded)
    rows = stored_rows(account_id)
    stream.refresh_from_db()
    assert stream.version == 3
    assert stream.first_position == rows[0].position
    assert stream.last_position == rows[2].position
    assert stream.updated_at >= stream.created_at
    assert account_id in store.stream_ids()
    assert repo.load(BankAccount, account_id).balance == 115.5

    # The first copy is stale now: optimistic locking refuses it.
    account.deposit(Decimal("1"))
    with pytest.raises(ConcurrencyError) as caught:
        repo.save(account)
    assert (caught.value.expected_version, caught.value.actual_version) == (2, 3)

    with pytest.raises(AggregateNotFoundError, match="BankAccount"):
        repo.load(BankAccount, new_id("missing"))


def test_stream_summary_without_an_aggregate_type() -> None:
    """A plain ``store.save`` leaves the type empty and never erases a known one."""
    store = DjangoEventStore()
    stream_id = new_id("acc")
    store.save(stream_id, deposits(stream_id, 2))
    assert StreamRecord.objects.get(pk=stream_id).aggregate_type == ""
    store.save(stream_id, deposits(stream_id, 1), aggregate_type="BankAccount")
    store.save(stream_id, deposits(stream_id, 1))
    stream = StreamRecord.objects.get(pk=stream_id)
    assert (stream.aggregate_type, stream.version) == ("BankAccount", 4)


# -- (b) snapshots --------------------------------------------------------------------


def make_account(repo: AggregateRepository[BankAccount], deposits_made: int) -> str:
    account_id = new_id("snap")
    account = BankAccount(aggregate_id=account_id)
    account.open("Grace", 10.0)
    for _ in range(deposits_made):
        account.deposit(Decimal("1.5"))
    repo.save(account)
    return account_id


def test_snapshot_is_written_and_load_reads_only_later_events() -> None:
    observed = Observed()
    store = DjangoEventStore(observability=observed.hooks)
    repo: AggregateRepository[BankAccount] = AggregateRepository(
        event_store=store, snapshot_every=3, observability=observed.hooks
    )
    account_id = make_account(repo, 2)  # version 3: a snapshot is due

    snapshot = SnapshotRecord.objects.get(pk=account_id)
    assert (snapshot.aggregate_type, snapshot.version) == ("BankAccount", 3)
    assert snapshot.state["balance"] == 13.0
    assert snapshot.timestamp.utcoffset() == timedelta(0)

    account = repo.load(BankAccount, account_id)
    account.deposit(Decimal("2"))
    account.deposit(Decimal("2"))
    repo.save(account)  # version 5: no new snapshot (next one at 6)
    assert SnapshotRecord.objects.get(pk=account_id).version == 3

    observed.loaded.clear()
    observed.snapshots_loaded.clear()
    with CaptureQueriesContext(connection) as queries:
        loaded = repo.load(BankAccount, account_id)
    assert (loaded.balance, loaded.version) == (17.0, 5)
    assert observed.snapshots_loaded == [3]
    assert observed.loaded == [2]  # only the events after the snapshot were read
    assert len(queries) == 2  # the snapshot, then the events after it


def test_async_repository_uses_the_snapshot_too() -> None:
    observed = Observed()
    store = DjangoAsyncEventStore(observability=observed.hooks)
    repo: AggregateRepository[BankAccount] = AggregateRepository(
        event_store=store, snapshot_every=2, observability=observed.hooks
    )

    async def scenario() -> BankAccount:
        account = BankAccount(aggregate_id=account_id)
        account.open("Ada", 1.0)
        account.deposit(Decimal("1"))
        await repo.save_async(account)  # version 2: snapshot
        account.deposit(Decimal("1"))
        await repo.save_async(account)  # version 3: none
        observed.loaded.clear()
        return await repo.load_async(BankAccount, account_id)

    account_id = new_id("snap")
    loaded = async_to_sync(scenario)()
    assert (loaded.balance, loaded.version) == (3.0, 3)
    assert SnapshotRecord.objects.get(pk=account_id).version == 2
    assert observed.snapshots_loaded == [2]
    assert observed.loaded == [1]


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda s: {"state": {**s, "__snapshot_version__": 99}}, id="old-version"),
        pytest.param(lambda s: {"state": {**s, "balance": "lots"}}, id="wrong-field-type"),
        pytest.param(
            lambda s: {"state": {k: v for k, v in s.items() if k != "owner"}}, id="missing-field"
        ),
        pytest.param(lambda s: {"aggregate_type": "Invoice"}, id="another-aggregate-type"),
    ],
)
def test_an_unusable_snapshot_falls_back_to_replay(
    spoil: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    observed = Observed()
    store = DjangoEventStore(observability=observed.hooks)
    repo: AggregateRepository[BankAccount] = AggregateRepository(
        event_store=store, snapshot_every=3, observability=observed.hooks
    )
    account_id = make_account(repo, 3)  # version 4, snapshot at 3
    state = SnapshotRecord.objects.get(pk=account_id).state
    SnapshotRecord.objects.filter(pk=account_id).update(**spoil(state))

    observed.loaded.clear()
    loaded = repo.load(BankAccount, account_id)
    assert (loaded.owner, loaded.balance, loaded.version) == ("Grace", 14.5, 4)
    assert observed.loaded == [4]  # the whole stream was replayed
    assert len(observed.errors) == 1
    assert "replaying" in observed.errors[0]


# -- (c) SQL statements per save ---------------------------------------------------------


def max_rows_per_insert(batch_size: int) -> int:
    """Rows per INSERT statement: the setting, capped by the backend's parameter limit."""
    fields = [f for f in EventRecord._meta.concrete_fields if not isinstance(f, AutoField)]
    sample = [EventRecord()] * 1000
    backend_cap = connection.ops.bulk_batch_size(fields, sample)
    return min(batch_size, backend_cap) if backend_cap else batch_size


def queries_of(call: Callable[[], object]) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        call()
    return [q["sql"] for q in captured.captured_queries]


def is_event_insert(sql: str) -> bool:
    """An INSERT into the events table (the ORM's, or PostgreSQL's append function)."""
    table = EventRecord._meta.db_table
    return (
        re.search(rf'INSERT INTO "?`?{table}"?`? ', sql, re.IGNORECASE) is not None
        or "orchestrix_append(" in sql
    )


@pytest.mark.parametrize("batch_size", [500, 120])
def test_a_large_save_costs_a_bounded_number_of_statements(batch_size: int) -> None:
    store = DjangoEventStore()

    def save(count: int) -> list[str]:
        stream_id = new_id("bulk")
        events = deposits(stream_id, count)
        return queries_of(lambda: store.save(stream_id, events, expected_version=0))

    with orchestrix(INSERT_BATCH_SIZE=batch_size):
        small, large = save(10), save(1000)
    # INSERT_BATCH_SIZE rows per statement on PostgreSQL and MariaDB; Django 5.2 caps
    # SQLite at 999 parameters per statement (90 rows of 11 columns).
    rows_per_insert = max_rows_per_insert(batch_size)
    inserts = [sql for sql in large if is_event_insert(sql)]
    assert len(inserts) == math.ceil(1000 / rows_per_insert)
    assert len(large) <= 25  # never a round trip per event
    assert len(large) - len(small) == len(inserts) - 1
    # Everything else (checks, lock, stream row) does not depend on the count.
    assert len([s for s in large if not is_event_insert(s)]) == len(
        [s for s in small if not is_event_insert(s)]
    )


def test_loading_a_long_stream_costs_a_bounded_number_of_statements() -> None:
    store = DjangoEventStore()
    short, long = new_id("short"), new_id("long")
    store.save(short, deposits(short, 10))
    store.save(long, deposits(long, 1000))
    assert len(queries_of(lambda: store.load(long))) == len(queries_of(lambda: store.load(short)))


# -- (d) all or nothing, and the events_committed signal --------------------------------


class FailingEventInsert:
    """An execute wrapper making the ``n``-th INSERT into the event table fail, as a
    full disk or a dropped connection would; the ones before it really run."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        if is_event_insert(sql):
            self.seen += 1
            if self.seen == self.n:
                raise DatabaseError(f"simulated failure of INSERT number {self.n}")
        return execute(sql, params, many, context)


def assert_nothing_stored(stream_id: str) -> None:
    assert not EventRecord.objects.filter(stream_id=stream_id).exists()
    assert not StreamRecord.objects.filter(pk=stream_id).exists()
    assert DjangoEventStore().stream_version(stream_id) == 0


@pytest.mark.django_db(transaction=True)
def test_a_save_failing_in_its_second_insert_stores_nothing(
    committed: list[dict[str, Any]],
) -> None:
    """Batch 1 (events 1-2) is inserted, event 3's batch fails: all of it is undone."""
    store = DjangoEventStore(insert_batch_size=2)
    stream_id = new_id("atomic")
    failing = FailingEventInsert(2)
    with (
        connection.execute_wrapper(failing),
        pytest.raises(DatabaseError, match="simulated"),
    ):
        store.save(stream_id, deposits(stream_id, 5), expected_version=0)
    assert failing.seen == 2  # events 1-2 had been inserted when events 3-4 failed
    assert_nothing_stored(stream_id)
    assert committed == []
    # Nothing is left locked or half-done: the same save now goes through.
    store.save(stream_id, deposits(stream_id, 5), expected_version=0)
    assert store.stream_version(stream_id) == 5


def test_an_event_the_codec_refuses_stores_nothing_and_touches_no_table() -> None:
    store = DjangoEventStore()
    stream_id = new_id("atomic")
    refused = MoneyDeposited(account_id=stream_id, amount=Decimal(1), data={"blob": object()})
    events = [*deposits(stream_id, 2), refused]
    with CaptureQueriesContext(connection) as queries, pytest.raises(TypeError) as caught:
        store.save(stream_id, events)
    assert "MoneyDeposited" in str(caught.value)
    assert "object" in str(caught.value)
    assert len(queries) == 0
    assert_nothing_stored(stream_id)


@pytest.mark.parametrize(
    ("where", "fields"),
    [
        ("event_id", {"id": "x" * 256}),
        ("correlation_id", {"correlation_id": "c" * 300}),
        ("causation_id", {"causation_id": "c" * 300}),
    ],
)
def test_a_value_too_long_for_its_column_stores_nothing(where: str, fields: dict[str, Any]) -> None:
    """The same clear error on every database (SQLite would otherwise store it)."""
    store = DjangoEventStore(insert_batch_size=2)
    stream_id = new_id("atomic")
    too_long = MoneyDeposited(account_id=stream_id, amount=Decimal(1), **fields)
    events = [*deposits(stream_id, 2), too_long]
    with pytest.raises(ValueError, match=rf"event 3 .*MoneyDeposited.*{where}.*at most 255"):
        store.save(stream_id, events)
    assert_nothing_stored(stream_id)


def test_a_stream_id_too_long_is_refused() -> None:
    stream_id = "s" * 256
    with pytest.raises(ValueError, match="at most 255"):
        DjangoEventStore().save(stream_id, deposits(stream_id, 1))
    assert_nothing_stored(stream_id)


def test_a_wrong_expected_version_stores_nothing() -> None:
    store = DjangoEventStore()
    stream_id = new_id("atomic")
    store.save(stream_id, deposits(stream_id, 2))
    before = StreamRecord.objects.get(pk=stream_id)
    with pytest.raises(ConcurrencyError, match="expected version 1, actual version 2"):
        store.save(stream_id, deposits(stream_id, 3), expected_version=1)
    assert [r.version for r in stored_rows(stream_id)] == [1, 2]
    after = StreamRecord.objects.get(pk=stream_id)
    assert (after.version, after.last_position) == (2, before.last_position)


@pytest.mark.django_db(transaction=True)
def test_a_save_rolled_back_by_the_caller_leaves_nothing_and_sends_nothing(
    committed: list[dict[str, Any]],
) -> None:
    store = DjangoEventStore()
    stream_id = new_id("rollback")

    def view() -> None:
        with transaction.atomic():
            store.save(stream_id, deposits(stream_id, 3), aggregate_type="BankAccount")
            assert store.stream_version(stream_id) == 3  # visible inside the transaction
            raise RuntimeError("view failed")

    with pytest.raises(RuntimeError, match="view failed"):
        view()
    assert_nothing_stored(stream_id)
    assert committed == []


@pytest.mark.django_db(transaction=True)
def test_a_committed_save_sends_events_committed_once_after_commit(
    committed: list[dict[str, Any]],
) -> None:
    store = DjangoEventStore()
    stream_id = new_id("signal")
    events = deposits(stream_id, 3)
    with transaction.atomic():
        store.save(stream_id, events)
        assert committed == []  # not before the commit: a rollback could still come
    assert len(committed) == 1
    sent = committed[0]
    assert sent["sender"] is DjangoEventStore
    assert sent["stream_id"] == stream_id
    assert sent["using"] == "default"
    rows = stored_rows(stream_id)
    assert all(isinstance(s, StoredEvent) for s in sent["events"])
    assert [(s.position, s.stream_id, s.version) for s in sent["events"]] == [
        (r.position, stream_id, r.version) for r in rows
    ]
    assert [s.event for s in sent["events"]] == events

    # Autocommit (no surrounding atomic): sent once as well.
    store.save(stream_id, deposits(stream_id, 1))
    assert len(committed) == 2
    assert [s.version for s in committed[1]["events"]] == [4]


@pytest.mark.django_db(transaction=True)
def test_a_refused_save_inside_a_transaction_leaves_the_transaction_usable(
    committed: list[dict[str, Any]],
) -> None:
    """The caller can catch ConcurrencyError and go on: only the refused save is undone."""
    store = DjangoEventStore()
    first, second = new_id("outer"), new_id("outer")
    with transaction.atomic():
        store.save(first, deposits(first, 1), expected_version=0)
        with pytest.raises(ConcurrencyError):
            store.save(first, deposits(first, 1), expected_version=0)
        store.save(second, deposits(second, 2), expected_version=0)
    assert (store.stream_version(first), store.stream_version(second)) == (1, 2)
    assert [c["stream_id"] for c in committed] == [first, second]


# -- (e) decoding: upcasting on every read path, unknown types, bad data -----------------


def test_upcasting_on_every_read_path() -> None:
    store = DjangoEventStore()
    async_store = DjangoAsyncEventStore()
    parcel_id = new_id("parcel")
    old = ParcelWeighedV1(parcel_id=parcel_id, grams=1500, correlation_id="order-7")
    store.save(parcel_id, [old])
    [row] = stored_rows(parcel_id)
    assert (row.schema_version, row.data) == (1, {"parcel_id": parcel_id, "grams": 1500})

    def check(event: Event) -> None:
        assert isinstance(event, ParcelWeighed)
        assert event.kilograms == Decimal("1.5")
        assert (event.id, event.timestamp, event.correlation_id) == (
            old.id,
            old.timestamp,
            "order-7",
        )

    # Without UPCASTERS the stored shape comes back as it was stored.
    assert type(store.load(parcel_id)[0]) is ParcelWeighedV1

    with with_upcasters():
        check(store.load(parcel_id)[0])
        check(next(store.iter_stream(parcel_id)).event)
        check(store.read_all(after_position=row.position - 1, limit=1)[0].event)
        check(async_to_sync(async_store.load)(parcel_id)[0])
        check(async_to_sync(async_store.read_all)(row.position - 1, 1)[0].event)

        repo: AggregateRepository[Parcel] = AggregateRepository(event_store=store)
        assert repo.load(Parcel, parcel_id).kilograms == Decimal("1.5")
        async_repo: AggregateRepository[Parcel] = AggregateRepository(event_store=async_store)
        assert async_to_sync(async_repo.load_async)(Parcel, parcel_id).kilograms == Decimal("1.5")
    # History itself is never rewritten.
    assert EventRecord.objects.get(pk=row.pk).schema_version == 1


def test_an_upcaster_that_awaits_io_works_on_the_async_paths() -> None:
    store = DjangoEventStore()
    async_store = DjangoAsyncEventStore()
    parcel_id = new_id("parcel")
    store.save(parcel_id, [ParcelLabelledV1(parcel_id=parcel_id)])
    with with_upcasters():
        [event] = async_to_sync(async_store.load)(parcel_id)
        assert isinstance(event, ParcelLabelled)
        assert event.label == f"label-of-{parcel_id}"
        async_repo: AggregateRepository[Parcel] = AggregateRepository(event_store=async_store)
        parcel = async_to_sync(async_repo.load_async)(Parcel, parcel_id)
        assert parcel.label == f"label-of-{parcel_id}"
        # The sync path says why it cannot, instead of returning the old shape.
        with pytest.raises(UpcastError, match="awaits I/O"):
            store.load(parcel_id)


def test_an_unknown_stored_type_names_the_type_and_the_stream() -> None:
    store = DjangoEventStore()
    stream_id = new_id("unknown")
    position = insert_row(stream_id, "NoSuchType", {"x": 1})
    readers: list[Callable[[], object]] = [
        lambda: store.load(stream_id),
        lambda: store.read_all(after_position=position - 1),
        lambda: async_to_sync(DjangoAsyncEventStore().load)(stream_id),
    ]
    for read in readers:
        with pytest.raises(UnknownEventTypeError) as caught:
            read()
        assert "'NoSuchType'" in str(caught.value)
        assert repr(stream_id) in str(caught.value)
        assert (caught.value.event_type, caught.value.stream_id, caught.value.version) == (
            "NoSuchType",
            stream_id,
            1,
        )


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        pytest.param({"parcel_id": "p", "grams": "heavy"}, "grams", id="string-for-int"),
        pytest.param({"parcel_id": "p"}, "grams", id="missing-field"),
        pytest.param([1, 2, 3], "JSON objects", id="json-list"),
    ],
)
def test_undecodable_data_names_stream_version_and_type(data: Any, detail: str) -> None:
    store = DjangoEventStore()
    stream_id = new_id("bad")
    position = insert_row(stream_id, "BehaviourParcelWeighed", data, schema_version=1)
    readers: list[Callable[[], object]] = [
        lambda: store.load(stream_id),
        lambda: list(store.iter_stream(stream_id)),
        lambda: store.read_all(after_position=position - 1),
        lambda: async_to_sync(DjangoAsyncEventStore().read_all)(position - 1),
    ]
    for read in readers:
        with pytest.raises(EventDecodeError) as caught:
            read()
        message = str(caught.value)
        assert f"stream {stream_id!r}" in message
        assert "version 1" in message
        assert "type 'BehaviourParcelWeighed'" in message
        assert detail in message


# -- (f) stored events are append-only ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_stored_events_are_append_only() -> None:
    store = DjangoEventStore()
    stream_id = new_id("history")
    events = deposits(stream_id, 3)

    # Nothing the store does rewrites or removes a stored row.
    def snapshot_of_rows() -> list[tuple[Any, ...]]:
        return [
            (r.position, r.version, r.event_id, r.data, r.metadata, r.timestamp, r.recorded_at)
            for r in stored_rows(stream_id)
        ]

    store.save(stream_id, events, expected_version=0)
    before = snapshot_of_rows()
    with CaptureQueriesContext(connection) as captured:
        store.save(stream_id, events, expected_version=0)  # an idempotent retry
        with pytest.raises(ConcurrencyError):
            store.save(stream_id, deposits(stream_id, 1), expected_version=0)
        store.save(stream_id, deposits(stream_id, 1), expected_version=3)
        store.load(stream_id)
        store.read_all()
    issued = [q["sql"] for q in captured.captured_queries]
    assert not [sql for sql in issued if is_event_write(sql)]
    assert snapshot_of_rows()[:3] == before
    # What refuses everyone else's changes, path by path: tests/django/test_append_only.py.


# -- (g) timestamps and metadata --------------------------------------------------------


def test_timestamps_come_back_aware_utc_with_microseconds() -> None:
    store = DjangoEventStore()
    stream_id = new_id("time")
    local = timezone(timedelta(hours=5, minutes=30))
    moment = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=local)
    event = AccountOpened(account_id=stream_id, owner="Ada", initial_deposit=1.0, timestamp=moment)
    store.save(stream_id, [event])

    [loaded] = store.load(stream_id)
    [from_log] = [s.event for s in store.read_all() if s.stream_id == stream_id]
    [row] = stored_rows(stream_id)
    for stamp in (loaded.timestamp, from_log.timestamp, row.timestamp, row.recorded_at):
        assert stamp.utcoffset() == timedelta(0)
    for stamp in (loaded.timestamp, from_log.timestamp, row.timestamp):
        assert stamp == moment
        assert stamp.microsecond == 123456
        assert (stamp.hour, stamp.minute) == (18, 29)  # 23:59 at +05:30 is 18:29 UTC


def test_metadata_round_trips_and_ids_fill_their_indexed_columns() -> None:
    store = DjangoEventStore()
    stream_id = new_id("meta")
    correlation = new_id("corr")
    first = MoneyDeposited(
        account_id=stream_id,
        amount=Decimal("2.00"),
        correlation_id=correlation,
        causation_id="command-1",
        trace_id="trace-1",
        subject=f"accounts/{stream_id}",
        source="https://bank.example/api",
        dataschema="https://bank.example/schemas/deposit",
    )
    second = MoneyDeposited.caused_by(first, account_id=stream_id, amount=Decimal(3))
    plain = MoneyDeposited(account_id=stream_id, amount=Decimal(4))
    store.save(stream_id, [first, second, plain])

    assert store.load(stream_id) == [first, second, plain]
    rows = stored_rows(stream_id)
    assert [(r.correlation_id, r.causation_id) for r in rows] == [
        (correlation, "command-1"),
        (correlation, first.id),
        (None, None),
    ]
    # What the admin's "correlation chain" and search rely on.
    assert set(
        EventRecord.objects.filter(correlation_id=correlation).values_list("event_id", flat=True)
    ) == {first.id, second.id}
    assert EventRecord.objects.get(causation_id=first.id).event_id == second.id


# -- (h) reading the log ------------------------------------------------------------------


def test_read_all_is_capped_by_max_read_all_limit() -> None:
    store = DjangoEventStore()
    async_store = DjangoAsyncEventStore()
    start = store.head_position()
    stream_id = new_id("log")
    store.save(stream_id, deposits(stream_id, 12))
    rows = stored_rows(stream_id)
    assert store.head_position() == rows[-1].position
    assert async_to_sync(async_store.head_position)() == rows[-1].position

    with orchestrix(MAX_READ_ALL_LIMIT=5):
        assert len(store.read_all(after_position=start, limit=1000)) == 5
        assert len(async_to_sync(async_store.read_all)(start, 1000)) == 5
        assert len(store.read_all(after_position=start, limit=3)) == 3
        pages: list[list[StoredEvent]] = []
        after = start
        while page := store.read_all(after_position=after, limit=1000):
            pages.append(page)
            after = page[-1].position
    assert [len(p) for p in pages] == [5, 5, 2]
    read = [s for p in pages for s in p]
    assert [(s.position, s.version) for s in read] == [(r.position, r.version) for r in rows]


def test_iter_stream_streams_a_long_stream_in_order() -> None:
    store = DjangoEventStore()
    stream_id = new_id("long")
    events = deposits(stream_id, 5000)
    store.save(stream_id, events)
    with orchestrix(READ_CHUNK_SIZE=700):
        iterator = store.iter_stream(stream_id)
        assert not isinstance(iterator, list | tuple)
        first = next(iterator)
        assert (first.version, first.event.id) == (1, events[0].id)
        rest = list(iterator)
        tail = list(store.iter_stream(stream_id, from_version=4990))
    assert [s.version for s in rest] == list(range(2, 5001))
    assert [s.event.id for s in rest] == [e.id for e in events[1:]]
    assert all(a.position < b.position for a, b in itertools.pairwise(rest))
    assert [s.version for s in tail] == list(range(4991, 5001))


@pytest.mark.django_db(transaction=True)
def test_iter_stream_can_be_consumed_while_the_caller_writes() -> None:
    """A replay that appends as it reads (a migration script, say) sees a consistent stream."""
    store = DjangoEventStore()
    source, target = new_id("source"), new_id("target")
    store.save(source, deposits(source, 50))
    with orchestrix(READ_CHUNK_SIZE=10):
        for stored in store.iter_stream(source):
            copy = MoneyDeposited(account_id=target, amount=stored.event.amount)  # type: ignore[attr-defined]
            store.save(target, [copy], expected_version=stored.version - 1)
    assert [e.amount for e in store.load(target)] == [e.amount for e in store.load(source)]  # type: ignore[attr-defined]


@pytest.mark.django_db(transaction=True)
def test_a_failing_signal_receiver_never_fails_the_committed_save(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from orchestrix_django.signals import events_committed

    received: list[str] = []

    def broken(**kwargs: object) -> None:
        raise RuntimeError("receiver bug")

    def working(stream_id: str, **kwargs: object) -> None:
        received.append(stream_id)

    events_committed.connect(broken, dispatch_uid="test-broken")
    events_committed.connect(working, dispatch_uid="test-working")
    try:
        store = DjangoEventStore()
        store.save("robust-1", [MoneyDeposited(account_id="robust-1", amount=Decimal(1))])
    finally:
        events_committed.disconnect(dispatch_uid="test-broken")
        events_committed.disconnect(dispatch_uid="test-working")
    assert len(store.load("robust-1")) == 1
    assert received == ["robust-1"]
    assert any("receiver bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
