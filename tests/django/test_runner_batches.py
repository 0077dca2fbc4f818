"""The Django runner's batch path: each batch starts from the checkpoint row it locks, applies
only the events after it, and moves the checkpoint, its event id and its count past each event
once."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal

import pytest

from orchestrix_django.models import EventRecord
from orchestrix_django.projections import catch_up, get_projection
from orchestrix_django.storage import DjangoEventStore, DjangoProjectionStateStore
from tests.django.testapp import projections as testapp_projections
from tests.django.testapp.events import AccountOpened, MoneyDeposited
from tests.django.testapp.models import AppliedEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_failures() -> Iterator[None]:
    testapp_projections.FAILING_AMOUNTS.clear()
    yield
    testapp_projections.FAILING_AMOUNTS.clear()


def open_account(account_id: str, deposits: int) -> None:
    DjangoEventStore().save(
        account_id,
        [
            AccountOpened(account_id=account_id, owner="Ann", initial_deposit=1.0),
            *(MoneyDeposited(account_id=account_id, amount=Decimal(n)) for n in range(deposits)),
        ],
    )


def log() -> list[tuple[int, str]]:
    return list(EventRecord.objects.order_by("position").values_list("position", "event_id"))


def applied() -> list[str]:
    return list(
        AppliedEvent.objects.filter(projection="fragile")
        .order_by("id")
        .values_list("event_id", flat=True)
    )


def test_batches_move_the_checkpoint_its_event_and_its_count_past_each_event_once() -> None:
    open_account("RB-1", 9)  # 10 events: test-fragile reads 4 per batch
    fragile = get_projection("test-fragile")
    states = DjangoProjectionStateStore()
    result = catch_up(fragile)
    assert (result.batches, result.applied) == (3, 10)
    state = states.load_state("test-fragile")
    assert state is not None
    assert (state.last_processed_position, state.last_processed_event_id) == log()[-1]
    assert state.events_processed == 10
    open_account("RB-2", 2)
    assert catch_up(fragile).applied == 3
    state = states.load_state("test-fragile")
    assert state is not None
    assert (state.last_processed_position, state.last_processed_event_id) == log()[-1]
    assert state.events_processed == 13
    assert applied() == [event_id for _, event_id in log()]
    assert fragile.get_state() == state


def test_each_batch_starts_from_the_checkpoint_row_it_locks() -> None:
    """Another runner moved the row on meanwhile: this one goes on from there, not from its own."""
    open_account("RB-3", 9)
    fragile = get_projection("test-fragile")
    states = DjangoProjectionStateStore()
    assert catch_up(fragile, max_batches=1).applied == 4
    assert fragile.get_state().last_processed_position == log()[3][0]
    moved_by_another = log()[5]
    before = states.load_state("test-fragile")
    assert before is not None
    states.save_state(
        dataclasses.replace(
            before,
            last_processed_position=moved_by_another[0],
            last_processed_event_id=moved_by_another[1],
            events_processed=6,
        )
    )
    assert catch_up(fragile).applied == 4
    everything = [event_id for _, event_id in log()]
    assert applied() == everything[:4] + everything[6:]
    state = states.load_state("test-fragile")
    assert state is not None
    assert (state.last_processed_position, state.last_processed_event_id) == log()[-1]
    assert state.events_processed == 10
