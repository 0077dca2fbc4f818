"""Upcasting, snapshots and replays in the example project."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from django.db import models

from example_project.banking.aggregates import SNAPSHOT_EVERY, Account, repository
from example_project.banking.events import MoneyDeposited, MoneyDepositedV1
from example_project.banking.models import AccountSummary, LedgerEntry, TransferSummary
from example_project.orders.models import OrderSummary, ProductStock
from orchestrix.core.eventsourcing.aggregate import AggregateRepository
from orchestrix.core.messaging.message import Event
from orchestrix_django.models import EventRecord, SnapshotRecord
from orchestrix_django.projections import catch_up, projections, reset_projection
from orchestrix_django.storage.events import DjangoEventStore
from tests.example.conftest import DemoRun

pytestmark = pytest.mark.django_db


# -- upcasting -----------------------------------------------------------------------


def test_the_demo_stored_version_1_deposits_and_every_read_upcasts_them(demo: DemoRun) -> None:
    legacy = EventRecord.objects.filter(event_type="MoneyDeposited", schema_version=1)
    assert legacy.count() > 0
    row = legacy.first()
    assert row is not None
    assert set(row.data) == {"account_id", "amount_cents"}  # stored as the first release did

    events = DjangoEventStore().load(row.stream_id)
    deposits = [e for e in events if e.type == "MoneyDeposited"]
    assert deposits
    assert all(type(e) is MoneyDeposited for e in deposits)
    first = next(e for e in deposits if e.id == row.event_id)
    assert isinstance(first, MoneyDeposited)
    assert first.amount == Decimal(row.data["amount_cents"]) / 100
    assert first.currency == "EUR"

    # The aggregate and the read model agree on the upcast amounts.
    account = repository().load(Account, row.stream_id)
    assert AccountSummary.objects.get(pk=row.stream_id).balance == account.balance
    ledger = LedgerEntry.objects.get(event_id=row.event_id)
    assert ledger.amount == first.amount
    # History itself is never rewritten.
    assert EventRecord.objects.get(pk=row.pk).schema_version == 1


def test_a_version_1_event_is_upcast_on_load(demo: DemoRun) -> None:
    store = DjangoEventStore()
    store.save(
        "ACC-UPCAST-TEST", [MoneyDepositedV1(account_id="ACC-UPCAST-TEST", amount_cents=1234)]
    )
    [event] = store.load("ACC-UPCAST-TEST")
    assert isinstance(event, MoneyDeposited)
    assert (event.amount, event.currency) == (Decimal("12.34"), "EUR")


# -- snapshots -----------------------------------------------------------------------


class _NoSnapshots:
    """The event store without its snapshots: loading replays every event."""

    def __init__(self, store: DjangoEventStore) -> None:
        self.store = store

    def save(
        self, aggregate_id: str, events: Sequence[Event], expected_version: int | None = None
    ) -> None:
        self.store.save(aggregate_id, events, expected_version)

    def load(self, aggregate_id: str, from_version: int = 0) -> list[Event]:
        return self.store.load(aggregate_id, from_version)


def test_long_lived_accounts_have_snapshots_and_load_from_them(demo: DemoRun) -> None:
    snapshots = SnapshotRecord.objects.filter(aggregate_id__endswith="-PAYROLL") | (
        SnapshotRecord.objects.filter(aggregate_id__endswith="-TREASURY")
    )
    assert snapshots.exists()
    for snapshot in snapshots:
        assert snapshot.version % SNAPSHOT_EVERY == 0
        assert snapshot.aggregate_type == "Account"
        with_snapshot = repository().load(Account, snapshot.aggregate_id)
        without: AggregateRepository[Account] = AggregateRepository(
            event_store=_NoSnapshots(DjangoEventStore())
        )
        replayed = without.load(Account, snapshot.aggregate_id)
        assert with_snapshot == replayed
        assert with_snapshot.version >= snapshot.version
        summary = AccountSummary.objects.get(pk=snapshot.aggregate_id)
        assert (summary.balance, summary.version) == (replayed.balance, replayed.version)


# -- replays ---------------------------------------------------------------------------

#: Each read model, and the fields that identify its rows (not the surrogate ids).
READ_MODELS: list[tuple[type[models.Model], list[str]]] = [
    (AccountSummary, ["account_id"]),
    (LedgerEntry, ["event_id"]),
    (TransferSummary, ["transfer_id"]),
    (ProductStock, ["sku"]),
    (OrderSummary, ["order_id"]),
]


def _rows(model: type[models.Model], order: list[str]) -> list[dict[str, Any]]:
    fields = [f.attname for f in model._meta.concrete_fields if f.attname != "id"]
    return list(model._default_manager.order_by(*order).values(*fields))


def test_projections_equal_a_clean_replay(demo: DemoRun) -> None:
    before = {model: _rows(model, order) for model, order in READ_MODELS}
    assert all(before.values())
    for projection in projections().values():
        reset_projection(projection)
    assert not AccountSummary.objects.exists()
    for projection in projections().values():
        result = catch_up(projection)
        assert result.stopped is None and result.lag == 0
    after = {model: _rows(model, order) for model, order in READ_MODELS}
    for model, _ in READ_MODELS:
        assert after[model] == before[model], model.__name__
